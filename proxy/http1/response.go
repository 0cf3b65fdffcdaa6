package http1

import (
	"encoding/binary"
	"math/bits"
)

// Framing says how the body of a request is delimited (RFC 9112 section 6.3).
type Framing uint8

const (
	// FramingNone: the request has no body.
	FramingNone Framing = iota
	// FramingLength: the body is ContentLength bytes (more than zero).
	FramingLength
	// FramingChunked: the body is chunked (Transfer-Encoding: chunked); validate it with Chunked.
	FramingChunked
)

// String names the framing for logs and test failures.
func (f Framing) String() string {
	switch f {
	case FramingLength:
		return "length"
	case FramingChunked:
		return "chunked"
	case FramingUntilClose:
		return "until-close"
	}
	return "none"
}

// FramingUntilClose: a response body delimited by the end of the connection (no
// Content-Length, no Transfer-Encoding); the connection cannot be reused.
const FramingUntilClose Framing = FramingChunked + 1

// Rejections of a response head. The other errors a ResponseParser returns are the request
// head's (ErrBareLF, ErrHeaderValue, ErrDuplicateLength, ErrLengthAndTE...). A client answers
// any of them downstream as Envoy does an upstream protocol error: 502.
var (
	ErrInvalidStatus = newError(502, "upstream_reset_before_response_started{protocol_error}", "HPE_INVALID_STATUS")
)

type rstate uint8

const (
	rVersion   rstate = iota // "HTTP/1." and the minor digit
	rSP1                     // SP after the version
	rCode                    // three digits
	rAfterCode               // SP, or CR (no reason phrase)
	rReason                  // reason-phrase
	rLineLF                  // LF of the status line
	rFields                  // field lines and the empty line (fields, a Parser)
	rDone
	rFailed
)

// ResponseParser parses one HTTP/1.1 response head at a time, fed in pieces of any size, as
// strictly as Parser parses requests (response smuggling and desync need two parsers that
// disagree as much as request smuggling does):
//
//	status-line = ("HTTP/1.0" / "HTTP/1.1") SP 3DIGIT [ SP reason-phrase ] CRLF
//
// followed by field lines with Parser's rules and limits (bare CR or LF, obs-fold, invalid
// names, CTLs in values are errors), then the framing checks of RFC 9112 section 6.3 with
// Envoy's strictness: no duplicate or invalid Content-Length, no Content-Length with
// Transfer-Encoding, Transfer-Encoding only exactly "chunked" and never in HTTP/1.0. The status
// line is bounded by Limits.MaxRequestLineBytes and the field section by MaxHeaderBytes and
// MaxHeaderCount. The status code must be 100 to 599.
//
// The zero ResponseParser is not ready: call Init. Not safe for concurrent use.
type ResponseParser struct {
	st     rstate
	minor  uint8
	status int
	line   int
	err    *Error
	lim    Limits
	fields Parser
}

// Init makes p ready for a response head with the given limits.
func (p *ResponseParser) Init(lim Limits) {
	p.lim = lim.normalized()
	p.fields.Init(p.lim, true)
	p.Reset()
}

// Reset makes p ready for the next response head, keeping its limits and storage. (p.err is
// read only in rFailed: it is left, not cleared with a write barrier's code.)
func (p *ResponseParser) Reset() {
	p.st, p.minor, p.status, p.line = rVersion, 0, 0, 0
	p.fields.reset(sFieldStart, fKeep|fTrailers|fBodySum)
}

// Done reports whether the head is complete.
func (p *ResponseParser) Done() bool { return p.st == rDone }

// Status returns the status code of a complete head.
func (p *ResponseParser) Status() int { return p.status }

// Minor returns the HTTP minor version: 0 or 1.
func (p *ResponseParser) Minor() int { return int(p.minor) }

// NumFields returns the number of header fields.
func (p *ResponseParser) NumFields() int { return p.fields.NumFields() }

// Field returns field i's name and value, aliasing p's storage until the next Reset.
func (p *ResponseParser) Field(i int) (name, value []byte) { return p.fields.Field(i) }

// Feed parses the next bytes of the head and returns how many it consumed; when the head
// completes, the bytes after it are not consumed. After an error, Feed returns the same
// error until Reset.
func (p *ResponseParser) Feed(b []byte) (n int, err error) {
	switch p.st {
	case rDone:
		return 0, nil
	case rFailed:
		return 0, p.err
	}
	i := 0
	if p.st == rVersion && p.line == 0 {
		i = p.fastStatusLine(b)
	}
	var e *Error
	if p.st < rFields && i < len(b) {
		i, e = p.statusLine(b, i)
	}
	if e == nil && p.st == rFields && i < len(b) {
		k, err := p.fields.Feed(b[i:])
		i += k
		if err != nil {
			e = fieldsError(err)
		} else if p.fields.Done() {
			p.st = rDone
		}
	}
	if e != nil {
		return i, p.fail(e)
	}
	return i, nil
}

// fieldsError is the response head's error for its fields' parser's err: the limits are the
// head's, not a trailer section's. Out of Feed: rare.
//
//go:noinline
func fieldsError(err error) *Error {
	e := err.(*Error)
	switch e {
	case ErrTrailersTooLarge:
		e = ErrHeadersTooLarge
	case ErrTooManyTrailers:
		e = ErrTooManyHeaders
	}
	return e
}

// fail ends p with e, which Feed returns until Reset. Out of Feed: rare.
//
//go:noinline
func (p *ResponseParser) fail(e *Error) error {
	p.st, p.err = rFailed, e
	return e
}

// statusLine is Feed's state machine for a status line that fastStatusLine did not take (cut
// by the end of a read, or unusual, or invalid): it steps through b from i, byte by byte,
// until the line ends or an error, and returns where it stopped. Out of Feed: rare.
//
//go:noinline
func (p *ResponseParser) statusLine(b []byte, i int) (int, *Error) {
	var e *Error
	for i < len(b) && p.st < rFields {
		c := b[i]
		if p.st != rLineLF {
			// The limit is the line without its CRLF, as a request line's: the CR that ends
			// it is counted here and uncounted below.
			if p.line >= p.lim.MaxRequestLineBytes && c != '\r' {
				e = ErrHeadersTooLarge
				break
			}
			p.line++
		}
		switch p.st {
		case rVersion:
			const prefix = "HTTP/1."
			k := p.line - 1
			switch {
			case k < len(prefix) && c == prefix[k]:
			case k == len(prefix) && (c == '0' || c == '1'):
				p.minor = c - '0'
				p.st = rSP1
			default:
				e = ErrInvalidVersion
			}
		case rSP1:
			if c != ' ' {
				e = ErrInvalidVersion
				break
			}
			p.st = rCode
		case rCode:
			if c < '0' || c > '9' {
				e = ErrInvalidStatus
				break
			}
			p.status = p.status*10 + int(c-'0')
			if p.status >= 100 {
				if p.status > 599 {
					e = ErrInvalidStatus
					break
				}
				p.st = rAfterCode
			} else if p.status == 0 {
				e = ErrInvalidStatus // a leading zero
			}
		case rAfterCode:
			switch c {
			case ' ':
				p.st = rReason
			case '\r':
				p.line--
				p.st = rLineLF
			case '\n':
				e = ErrBareLF
			default:
				e = ErrInvalidStatus
			}
		case rReason:
			switch {
			case c == '\r':
				p.line--
				p.st = rLineLF
			case c == '\n':
				e = ErrBareLF
			case charClass[c]&cValue == 0:
				e = ErrInvalidStatus
			}
		case rLineLF:
			if c != '\n' {
				e = ErrBareCR
				break
			}
			p.st = rFields
		}
		if e != nil {
			break
		}
		i++
	}
	return i, e
}

// Body decides the framing of a complete head's body (RFC 9112 section 6.3) for a response
// to a HEAD request (head) or a CONNECT request (connect); length is the Content-Length for
// FramingLength. Tunnel reports that the connection switches protocols after the head (101,
// or a 2xx answer to CONNECT): its bytes are then not HTTP. An invalid framing field is an
// error even where the status says there is no body.
func (p *ResponseParser) Body(head, connect bool) (f Framing, length int64, tunnel bool, err error) {
	length = -1
	fp := &p.fields
	var te bool
	if fp.flags&(fBodySum|fHasTE|fLenErr) == fBodySum {
		// The fast path took every field and summed them up: no error, no Transfer-Encoding.
		if fp.flags&fHasLength != 0 {
			length = fp.length
		}
	} else {
		if length, te, err = p.bodyFields(); err != nil {
			return FramingNone, 0, false, err
		}
	}
	if p.status == 200 && length > 0 && !te && !head && !connect { // most responses
		return FramingLength, length, false, nil
	}
	return p.framing(head, connect, length, te)
}

// framing is Body's decision once the framing fields are known (length: -1 for none; te: a
// valid Transfer-Encoding). Out of Body: most responses are a 200 with a Content-Length.
//
//go:noinline
func (p *ResponseParser) framing(head, connect bool, length int64, te bool) (Framing, int64, bool, error) {
	switch s := p.status; {
	case s == 101 || connect && s/100 == 2:
		return FramingNone, 0, true, nil
	case head || s/100 == 1 || s == 204 || s == 304:
		return FramingNone, length, false, nil
	case te:
		return FramingChunked, -1, false, nil
	case length > 0:
		return FramingLength, length, false, nil
	case length == 0:
		return FramingNone, 0, false, nil
	}
	return FramingUntilClose, -1, false, nil
}

// bodyFields is Body's look at the framing fields when the fast path did not sum them up,
// or summed up an error or a Transfer-Encoding: the Content-Length (-1 for none), whether
// there is a valid Transfer-Encoding, or the head's framing error. Out of Body: rare.
//
//go:noinline
func (p *ResponseParser) bodyFields() (length int64, te bool, err error) {
	length = -1
	fp := &p.fields
	var teBad bool
	if fp.flags&fBodySum != 0 {
		if fp.flags&fLenErr != 0 {
			return 0, false, fp.lenErr
		}
		if fp.flags&fHasLength != 0 {
			length = fp.length
		}
		te, teBad = fp.flags&fHasTE != 0, fp.flags&fTEBad != 0
	} else {
		for _, f := range fp.fields {
			name := fp.buf[f.name.off:f.name.end]
			if len(name) != len("content-length") && len(name) != len("transfer-encoding") {
				continue
			}
			value := fp.buf[f.value.off:f.value.end]
			switch kindOf(name) {
			case kContentLength:
				if length >= 0 {
					return 0, false, ErrDuplicateLength
				}
				n, e := parseLength(value)
				if e != nil {
					return 0, false, e
				}
				length = n
			case kTransferEncoding:
				teBad = teBad || te || !equalFold(value, "chunked") // ASCII case only, as Envoy
				te = true
			}
		}
	}
	if te {
		switch {
		case p.minor == 0:
			return 0, false, ErrTEInHTTP10
		case length >= 0:
			return 0, false, ErrLengthAndTE
		case teBad:
			return 0, false, ErrUnsupportedTE
		}
	}
	return length, te, nil
}

// maxSafeDigits is the most decimal digits that cannot overflow an int64.
const maxSafeDigits = 18

// shortLength parses a Content-Length value of 1 to 18 digits (which cannot overflow); ok is
// false for any other value, which parseLength then judges.
func shortLength(v []byte) (n int64, ok bool) {
	for _, c := range v {
		d := c - '0' // a byte below '0' wraps around
		if d > 9 {
			return 0, false
		}
		n = n*10 + int64(d)
	}
	return n, len(v) > 0 && len(v) <= maxSafeDigits
}

// parseLength parses a Content-Length value: 1*DIGIT.
func parseLength(v []byte) (int64, *Error) {
	if n, ok := shortLength(v); ok {
		return n, nil
	}
	if len(v) == 0 {
		return 0, ErrInvalidLength
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, ErrInvalidLength
		}
		d := int64(c - '0')
		if n > (1<<63-1-d)/10 {
			return 0, ErrLengthOverflow
		}
		n = n*10 + d
	}
	return n, nil
}

// bodyField sums up a response's framing field (kind, and its value without surrounding OWS)
// for Body, as Body's own loop over the fields would find it: the first invalid or repeated
// Content-Length is Body's error, and fields after it no longer matter.
func (p *Parser) bodyField(kind fieldKind, v []byte) {
	if p.flags&fLenErr != 0 {
		return
	}
	switch kind {
	case kContentLength:
		if e := p.setLength(v); e != nil {
			p.setLenErr(e)
		}
	case kTransferEncoding:
		p.setTE(v)
	}
}

// setLenErr keeps e, a response's first invalid Content-Length's error, for Body. Out of
// bodyField: rare.
//
//go:noinline
func (p *Parser) setLenErr(e *Error) {
	p.lenErr = e
	p.flags |= fLenErr
}

// setLength applies a Content-Length field's value v (without surrounding OWS): the error of
// a repeated or invalid one. One copy for the request head's framingField and the response
// head's bodyField: a proxied exchange runs both.
//
//go:noinline
func (p *Parser) setLength(v []byte) *Error {
	if p.flags&fHasLength != 0 {
		return ErrDuplicateLength
	}
	n, ok := shortLength(v)
	if !ok {
		var e *Error
		if n, e = parseLength(v); e != nil {
			return e
		}
	}
	p.length = n
	p.flags |= fHasLength
	return nil
}

// setTE applies a Transfer-Encoding field's value v (without surrounding OWS): only a single
// "chunked" (ASCII case only, as Envoy) is valid; Envoy joins repeated fields, and
// "chunked,chunked" is not "chunked".
//
//go:noinline
func (p *Parser) setTE(v []byte) {
	if p.flags&fHasTE != 0 || !equalFold(v, "chunked") {
		p.flags |= fTEBad
	}
	p.flags |= fHasTE
}

// fastStatusLine consumes a complete, valid status line at the start of b, as Feed's state
// machine would, and returns its length with CRLF; 0 when b does not start with one (the
// state machine then judges the line byte by byte).
func (p *ResponseParser) fastStatusLine(b []byte) int {
	const version = "HTTP/1."
	if len(b) < len("HTTP/1.1 200\r\n") || string(b[:len(version)]) != version {
		return 0
	}
	minor := b[7]
	d0, d1, d2 := b[9]-'0', b[10]-'0', b[11]-'0' // a byte below '0' wraps around
	if minor != '0' && minor != '1' || b[8] != ' ' || d0 < 1 || d0 > 5 || d1 > 9 || d2 > 9 {
		return 0
	}
	k := 12
	if b[k] == ' ' {
		k++
		// A reason phrase within the word after the SP (as "OK") ends at its first CTL
		// or DEL (ctlMask); a longer one, or one with an HTAB, is left to valueRun.
		if len(b)-k >= 8 {
			m := ctlMask(binary.LittleEndian.Uint64(b[k:]))
			if i := bits.TrailingZeros64(m) >> 3; m != 0 && b[k+i] != '\t' {
				k += i
			} else {
				k += valueRun(b[k:])
			}
		} else {
			k += valueRun(b[k:])
		}
	}
	// The limit is the line without its CRLF, as the state machine counts it.
	if k+1 >= len(b) || b[k] != '\r' || b[k+1] != '\n' || k > p.lim.MaxRequestLineBytes {
		return 0
	}
	p.minor, p.status, p.line, p.st = minor-'0', int(d0)*100+int(d1)*10+int(d2), k, rFields
	return k + 2
}
