package http1

type pstate uint8

const (
	sMethod pstate = iota
	sTargetStart
	sTargetPath      // origin-form, or the path and query of an absolute-form target
	sTargetAsterisk  // after "*" (OPTIONS)
	sTargetScheme    // scheme of an absolute-form target
	sTargetSlash1    // after "scheme:"
	sTargetSlash2    // after "scheme:/"
	sTargetHost      // authority of an absolute-form target
	sTargetAuthority // authority-form target (CONNECT)
	sVersion         // "HTTP/1." and the minor digit
	sVersionCR       // after the version: CR
	sLineLF          // after the request line's CR: LF
	sFieldStart      // start of a field line, or the CR of the empty line
	sName            // field name
	sValueOWS        // OWS after the colon
	sValue           // field value
	sFieldLF         // after a field line's CR: LF
	sHeadLF          // after the empty line's CR: LF
	sDone
	sFailed
)

type fieldKind uint8

const (
	kOther fieldKind = iota
	kContentLength
	kTransferEncoding
	kConnection
	kUpgrade
	kHost
	kUnknown // not classified yet (fastLines)
)

const (
	mOther uint8 = iota
	mConnect
	mOptions
)

// Parser flags.
const (
	fKeep         = 1 << iota // keep method, target and fields
	fTrailers                 // parsing a trailer section: no request line, no framing fields
	fHasLength                // a Content-Length field was seen
	fHasTE                    // a Transfer-Encoding field was seen
	fTEBad                    // Transfer-Encoding is not exactly one field "chunked"
	fConnUpgrade              // a Connection field mentions "upgrade"
	fUpgradeOffer             // an Upgrade field whose value is not "h2c"
	fHost                     // a Host field was seen
	fErrAtEnd                 // the error was found at the end of the head (see Feed)
	fBodySum                  // a response's fields, all through fastLines so far: it sums up Body's framing fields
	fLenErr                   // (fBodySum) lenErr holds the first invalid Content-Length's error
)

type span struct{ off, end int32 }

type field struct{ name, value span }

// Parser parses one HTTP/1.1 request head at a time, fed in pieces of any size, with the
// strictness of Envoy's codec (RFC 9112):
//
//	request-line = method SP request-target SP ("HTTP/1.0" / "HTTP/1.1") CRLF
//	field-line   = token ":" OWS value OWS CRLF
//
// It rejects bare LF and bare CR anywhere, obs-fold, whitespace before the colon, invalid
// name tokens, CTL characters other than HTAB in values, duplicate or invalid Content-Length
// (even repeated with the same value, as Envoy's balsa parser), a second Host field,
// Content-Length with Transfer-Encoding, and any Transfer-Encoding but exactly one "chunked"
// (501, as Envoy). The request target must be origin-form, absolute-form, "*" (OPTIONS only)
// or authority-form (CONNECT only), with Envoy's (http-parser's) character sets.
//
// A Parser does not allocate once its storage has grown: with Init(lim, true) it keeps the
// method, target and fields in one buffer reused by the next request; with keep false it
// keeps only what framing needs. The zero Parser is not ready: call Init. A Parser is not safe
// for concurrent use.
type Parser struct {
	lim  Limits
	name [20]byte // the first bytes of the current method or field name (read up to nlen)
	// Kept head (fKeep): the method, target and field lines, and the fields' spans in them.
	buf    []byte
	fields []field
	// err is the error of a failed head (read only in sFailed); lenErr a response's first
	// invalid Content-Length (read only with fLenErr). Out of headState, which then holds no
	// pointer: reset neither stores one (a write barrier's code) nor clears them.
	err, lenErr *Error
	headState
}

// headState is the Parser's state for one head: reset zeroes it in one go.
type headState struct {
	st      pstate
	flags   uint16
	mkind   uint8
	kind    fieldKind
	minor   uint8
	vs      uint8 // matcher state of the current framing field's value
	framing Framing
	prevAt  bool // the previous authority byte was '@'
	nlen    int  // length of the current method or field name
	lineLen int  // request-line bytes so far (without CRLF)
	size    int  // head bytes so far
	nfields int
	hostLen int   // authority bytes of an absolute-form target so far
	length  int64 // Content-Length

	// Kept head (fKeep).
	method, target span
	cur            field
	vlast          int32 // end of the current value without trailing OWS

	// A response's framing fields as Body would find them (fBodySum): length and the flags
	// fHasLength, fHasTE and fTEBad, or (fLenErr) the first invalid Content-Length's error.
	lens uint32 // bit n set: the fast path classifies names of n bytes (framingLens, bodyLens or none)
}

// Init makes p ready for a request with the given limits; keep says whether p keeps the
// method, target and fields for Method, Target and Field. Its storage is reused.
func (p *Parser) Init(lim Limits, keep bool) {
	p.lim = lim.normalized()
	p.flags = 0
	if keep {
		p.flags = fKeep
	}
	p.Reset()
}

// Reset makes p ready for the next request head, keeping its limits and storage.
func (p *Parser) Reset() {
	p.reset(sMethod, p.flags&fKeep)
}

// ResetTrailers makes p ready for the trailer section of a chunked body: field lines and the
// empty line, with the same syntax rules and limits as a head but no framing semantics.
func (p *Parser) ResetTrailers() {
	p.reset(sFieldStart, p.flags&fKeep|fTrailers)
}

// reset makes p ready for a head (or trailer section) that starts in state st. Out of line:
// the callers' Reset methods are inlined in the codec's loops, where a copy of the zeroing
// at each would cost more code lines than the call.
//
//go:noinline
func (p *Parser) reset(st pstate, flags uint16) {
	var lens uint32
	switch {
	case flags&fTrailers == 0:
		lens = framingLens
	case flags&fBodySum != 0:
		lens = bodyLens
	}
	p.headState = headState{st: st, flags: flags, lens: lens}
	p.buf, p.fields = p.buf[:0], p.fields[:0]
}

// Done reports whether the head (or trailer section) is complete.
func (p *Parser) Done() bool { return p.st == sDone }

// Framing returns the body framing of a complete head.
func (p *Parser) Framing() Framing { return p.framing }

// ContentLength returns the Content-Length of a complete head, -1 when it has none.
func (p *Parser) ContentLength() int64 {
	if p.flags&fHasLength == 0 {
		return -1
	}
	return p.length
}

// Upgrade reports whether a complete head asks to switch protocols: a Connection field that
// mentions "upgrade" and an Upgrade field other than "h2c" (Envoy, and the proxy's router,
// ignore an h2c upgrade offer). It errs on the side of yes, so that a caller that tunnels
// after an upgrade never parses tunnel bytes as requests.
func (p *Parser) Upgrade() bool {
	return p.flags&(fConnUpgrade|fUpgradeOffer) == fConnUpgrade|fUpgradeOffer
}

// Connect reports whether the request method is CONNECT.
func (p *Parser) Connect() bool { return p.mkind == mConnect }

// Minor returns the HTTP minor version: 0 or 1.
func (p *Parser) Minor() int { return int(p.minor) }

// Method returns the kept method (nil unless Init was called with keep).
func (p *Parser) Method() []byte { return p.slice(p.method) }

// Target returns the kept request target (nil unless Init was called with keep).
func (p *Parser) Target() []byte { return p.slice(p.target) }

// NumFields returns the number of fields of the head (or trailer section) so far.
func (p *Parser) NumFields() int { return p.nfields }

// Field returns the kept name (as received) and value (without surrounding OWS) of field i.
// The slices alias p's storage and are valid until the next Reset.
func (p *Parser) Field(i int) (name, value []byte) {
	// Without fKeep there are no fields (p.fields is empty): no need to test the flag.
	f := &p.fields[i]
	return p.buf[f.name.off:f.name.end:f.name.end], p.buf[f.value.off:f.value.end:f.value.end]
}

func (p *Parser) slice(s span) []byte {
	if p.flags&fKeep == 0 {
		return nil
	}
	return p.buf[s.off:s.end:s.end]
}

// Feed parses the next bytes of the head. It consumes bytes until the head is complete or b
// is used up and returns how many it consumed: when the head completes (Done), the bytes
// after it are not consumed. Once the head is complete, Feed consumes nothing.
//
// On error, n is the offset in b of the offending byte: b[:n] validated. An error that
// concerns the head as a whole (framing fields, and a bare CR after the empty line's CR) is
// found at the LF that ends the head; then n is the offset of that LF and EndError reports
// true. After an error, Feed returns the same error until Reset.
func (p *Parser) Feed(b []byte) (n int, err error) {
	// A head (or the rest of one) that starts at a line and is whole in b costs one call to
	// fastLines; anything else goes on in feed, where fastLines stopped.
	if p.st == sFieldStart || p.st == sMethod && p.nlen == 0 {
		end := len(b)
		if rem := p.lim.MaxHeaderBytes - p.size; rem < end {
			end = rem
		}
		if end > 0 {
			n := p.fastLines(b[:end]) // whole lines at once (see fast.go)
			if p.st == sDone {
				p.size += n
				return n, nil
			}
			return p.feed(b, n, n)
		}
	}
	return p.feed(b, 0, -1)
}

// feed is Feed from b[i:], the byte-at-a-time state machine with fastLines at the start of
// each line but at fastAt, where fastLines last stopped (no second try at the same line).
func (p *Parser) feed(b []byte, i, fastAt int) (n int, err error) {
	switch p.st {
	case sDone:
		return 0, nil
	case sFailed:
		return 0, p.err
	}
	end := len(b)
	if rem := p.lim.MaxHeaderBytes - p.size; rem < end {
		end = rem
	}
	keep := p.flags&fKeep != 0
	var e *Error
loop:
	for i < end {
		if (p.st == sFieldStart || p.st == sMethod && p.nlen == 0) && i != fastAt {
			n := p.fastLines(b[i:end]) // whole lines at once (see fast.go)
			i += n
			if p.st == sDone {
				p.size += i
				return i, nil
			}
			if fastAt = i; n > 0 {
				continue
			}
		}
		c := b[i]
		switch p.st {
		case sMethod:
			if (c == '\r' || c == '\n') && p.nlen == 0 && p.flags&fTrailers == 0 {
				// Empty lines before a request line are ignored (RFC 9112 section 2.2: a
				// server SHOULD ignore at least one), as Envoy's parsers skip any CR and LF
				// there; they count toward the head's size.
				i++
				continue
			}
			if p.flags&fTrailers == 0 {
				// Fast path: the method's token bytes, within the request line's limit.
				j := i
				stop := min(end, i+p.lim.MaxRequestLineBytes-p.lineLen)
				for j < stop && isToken(b[j]) {
					if p.nlen < len(p.name) {
						p.name[p.nlen] = b[j]
					}
					p.nlen++
					j++
				}
				p.lineRun(b[i:j], keep)
				i = j
				if i == end {
					continue
				}
				c = b[i]
			}
			if isToken(c) {
				if e = p.lineByte(); e != nil {
					break loop
				}
				if p.nlen < len(p.name) {
					p.name[p.nlen] = c
				}
				p.nlen++
				if keep {
					p.buf = append(p.buf, c)
				}
				i++
				continue
			}
			if c != ' ' || p.nlen == 0 {
				e = ErrInvalidMethod
				break loop
			}
			if e = p.lineByte(); e != nil {
				break loop
			}
			switch string(p.name[:min(p.nlen, len(p.name))]) {
			case "CONNECT":
				p.mkind = mConnect
			case "OPTIONS":
				p.mkind = mOptions
			}
			if p.nlen > len(p.name) {
				p.mkind = mOther
			}
			p.method.end = int32(len(p.buf))
			p.target = span{off: int32(len(p.buf))}
			p.st = sTargetStart
			i++
			continue

		case sTargetStart:
			switch {
			case p.mkind == mConnect:
				if charClass[c]&cHost == 0 {
					e = ErrInvalidURL
					break loop
				}
				p.st = sTargetAuthority
				p.prevAt = c == '@'
			case c == '/':
				p.st = sTargetPath
			case c == '*':
				if p.mkind != mOptions {
					e = ErrInvalidURL
					break loop
				}
				p.st = sTargetAsterisk
			case isAlpha(c):
				p.st = sTargetScheme
			default:
				e = ErrInvalidURL
				break loop
			}

		case sTargetPath:
			// Fast path: the rest of the path and query.
			stop := min(end, i+p.lim.MaxRequestLineBytes-p.lineLen)
			j := i + targetRun(b[i:stop])
			p.lineRun(b[i:j], keep)
			i = j
			if i == end {
				continue
			}
			if c = b[i]; charClass[c]&cTarget != 0 {
				e = ErrHeadersTooLarge // the request line is too long
				break loop
			}
			if e = p.endTarget(c); e != nil {
				break loop
			}
			i++
			continue

		case sTargetAsterisk:
			if e = p.endTarget(c); e != nil {
				break loop
			}
			i++
			continue

		case sTargetScheme:
			switch {
			case c == ':':
				p.st = sTargetSlash1
			case charClass[c]&cScheme == 0:
				e = ErrInvalidURL
				break loop
			}

		case sTargetSlash1, sTargetSlash2:
			if c != '/' {
				e = ErrInvalidURL
				break loop
			}
			if p.st == sTargetSlash1 {
				p.st = sTargetSlash2
			} else {
				p.st, p.hostLen, p.prevAt = sTargetHost, 0, false
			}

		case sTargetHost, sTargetAuthority:
			if charClass[c]&cHost != 0 {
				if c == '@' && p.prevAt { // http-parser's quirk, kept by Envoy: no "@@"
					e = ErrInvalidURL
					break loop
				}
				p.prevAt = c == '@'
				p.hostLen++
				break
			}
			if p.st == sTargetHost && (c == '/' || c == '?') && p.hostLen > 0 {
				p.st = sTargetPath
				break
			}
			if p.st == sTargetHost && p.hostLen == 0 {
				e = ErrInvalidURL
				break loop
			}
			if e = p.endTarget(c); e != nil {
				break loop
			}
			i++
			continue

		case sVersion:
			const prefix = "HTTP/1."
			if p.nlen == 0 && end-i >= len(prefix)+1 && string(b[i:i+len(prefix)]) == prefix &&
				(b[i+len(prefix)] == '0' || b[i+len(prefix)] == '1') &&
				p.lineLen+len(prefix)+1 <= p.lim.MaxRequestLineBytes {
				// Fast path: the whole version at once.
				if keep {
					p.buf = append(p.buf, b[i:i+len(prefix)+1]...)
				}
				p.minor = b[i+len(prefix)] - '0'
				p.lineLen += len(prefix) + 1
				p.nlen = len(prefix) + 1
				p.st = sVersionCR
				i += len(prefix) + 1
				continue
			}
			k := p.nlen // bytes of the version matched so far
			switch {
			case k < len(prefix) && c == prefix[k]:
			case k == len(prefix) && (c == '0' || c == '1'):
				p.minor = c - '0'
				p.st = sVersionCR
			case c == '\n':
				e = ErrBareLF
				break loop
			default:
				e = ErrInvalidVersion
				break loop
			}
			p.nlen++

		case sVersionCR:
			switch c {
			case '\r':
				p.st = sLineLF
				i++
				continue
			case '\n':
				e = ErrBareLF
			default:
				e = ErrInvalidVersion
			}
			break loop

		case sLineLF:
			if c != '\n' {
				e = ErrBareCR
				break loop
			}
			p.st = sFieldStart
			i++
			continue

		case sFieldStart:
			switch {
			case c == '\r':
				p.st = sHeadLF
				i++
				continue
			case c == '\n':
				e = ErrBareLF
			case isOWS(c):
				e = ErrObsFold
			case isToken(c):
				p.flags &^= fBodySum // a field the fast path did not sum up
				if p.nfields >= p.lim.MaxHeaderCount {
					e = ErrTooManyHeaders
					if p.flags&fTrailers != 0 {
						e = ErrTooManyTrailers
					}
					break loop
				}
				p.nlen = 0
				p.cur.name.off = int32(len(p.buf))
				p.st = sName
				continue
			default:
				e = ErrHeaderName
			}
			break loop

		case sName:
			j := i
			for j < end && isToken(b[j]) {
				j++
			}
			if p.nlen < len(p.name) {
				copy(p.name[p.nlen:], b[i:j]) // classify compares it without case
			}
			p.nlen += j - i
			if keep {
				p.buf = append(p.buf, b[i:j]...)
			}
			i = j
			if i == end {
				continue
			}
			if b[i] != ':' { // whitespace before the colon, no colon, or not a token
				e = ErrHeaderName
				break loop
			}
			p.cur.name.end = int32(len(p.buf))
			if e = p.classify(); e != nil {
				break loop
			}
			p.st = sValueOWS
			i++
			continue

		case sValueOWS:
			switch {
			case isOWS(c):
				i++
				continue
			case c == '\r':
				p.cur.value = span{int32(len(p.buf)), int32(len(p.buf))}
				p.vlast = p.cur.value.end
				p.st = sFieldLF
				i++
				continue
			case charClass[c]&cValue != 0:
				p.cur.value.off = int32(len(p.buf))
				p.vlast = p.cur.value.off
				p.st = sValue
				continue
			case c == '\n':
				e = ErrBareLF
			default:
				e = ErrHeaderValue
			}
			break loop

		case sValue:
			j := i
			if p.kind == kOther {
				j += valueRun(b[i:end])
			} else {
				for j < end && charClass[b[j]]&cValue != 0 {
					if e = p.valueByte(b[j]); e != nil {
						i = j
						break loop
					}
					j++
				}
			}
			if keep && j > i {
				p.buf = append(p.buf, b[i:j]...)
				for k := len(p.buf); k > int(p.vlast); k-- {
					if !isOWS(p.buf[k-1]) {
						p.vlast = int32(k)
						break
					}
				}
			}
			i = j
			if i == end {
				continue
			}
			switch b[i] {
			case '\r':
				p.cur.value.end = p.vlast
				p.buf = p.buf[:p.vlast]
				p.st = sFieldLF
				i++
				continue
			case '\n':
				e = ErrBareLF
			default:
				e = ErrHeaderValue
			}
			break loop

		case sFieldLF:
			if c != '\n' {
				e = ErrBareCR
				break loop
			}
			if e = p.endField(); e != nil {
				break loop
			}
			p.st = sFieldStart
			i++
			continue

		case sHeadLF:
			if c != '\n' {
				e = ErrBareCR
				p.flags |= fErrAtEnd
				break loop
			}
			if p.flags&fTrailers == 0 {
				if e = p.endHead(); e != nil {
					p.flags |= fErrAtEnd
					break loop
				}
			}
			p.st = sDone
			i++
			p.size += i
			return i, nil
		}
		// States that consume one request-line byte fall through to here.
		if e = p.lineByte(); e != nil {
			break loop
		}
		if keep {
			p.buf = append(p.buf, c)
		}
		i++
	}
	p.size += i
	if e == nil {
		if i == len(b) {
			return i, nil
		}
		e = ErrHeadersTooLarge // end < len(b): the head outgrew MaxHeaderBytes
		if p.flags&fTrailers != 0 {
			e = ErrTrailersTooLarge
		}
	}
	p.st, p.err = sFailed, e
	return i, e
}

// EndError reports whether the error Feed returned concerns the head as a whole, found at the
// LF that ends it (see Feed): the head's last two bytes, its empty line, are part of the error.
func (p *Parser) EndError() bool { return p.st == sFailed && p.flags&fErrAtEnd != 0 }

// lineRun accounts a run of request-line bytes that the fast paths checked against the line's
// limit, keeping them when keep is set.
func (p *Parser) lineRun(run []byte, keep bool) {
	if keep {
		p.buf = append(p.buf, run...)
	}
	p.lineLen += len(run)
}

// lineByte accounts one more byte of the request line.
func (p *Parser) lineByte() *Error {
	if p.flags&fTrailers != 0 || p.st > sVersionCR {
		return nil
	}
	if p.lineLen >= p.lim.MaxRequestLineBytes {
		return ErrHeadersTooLarge
	}
	p.lineLen++
	return nil
}

// endTarget handles the byte c that ends a request target: SP.
func (p *Parser) endTarget(c byte) *Error {
	if c != ' ' {
		if c == '\r' || c == '\n' {
			return ErrInvalidVersion // HTTP/0.9 style "GET /": no version
		}
		return ErrInvalidURL
	}
	if p.lineLen >= p.lim.MaxRequestLineBytes {
		return ErrHeadersTooLarge
	}
	p.lineLen++
	p.target.end = int32(len(p.buf))
	p.st, p.nlen = sVersion, 0
	return nil
}

// classify looks at a complete field name (its first bytes in p.name).
func (p *Parser) classify() *Error {
	p.kind, p.vs = kOther, 0
	if p.flags&fTrailers != 0 {
		return nil
	}
	if p.nlen > len(p.name) {
		return nil // longer than any framing field's name
	}
	switch p.kind = kindOf(p.name[:p.nlen]); p.kind {
	case kContentLength:
		if p.flags&fHasLength != 0 {
			return ErrDuplicateLength
		}
		p.length = 0
	case kHost:
		if p.flags&fHost != 0 {
			return ErrDuplicateHost
		}
	}
	return nil
}

// valueByte follows the value of a framing field, one byte at a time (after the leading OWS).
// p.vs is, for Content-Length: 0 before the first digit, 1 in digits, 2 in trailing OWS; for
// Transfer-Encoding and Upgrade: how many bytes of "chunked" / "h2c" matched, that plus one
// in trailing OWS, 255 on a mismatch; for Connection: how many bytes of "upgrade" matched.
func (p *Parser) valueByte(c byte) *Error {
	switch p.kind {
	case kContentLength:
		switch {
		case '0' <= c && c <= '9' && p.vs < 2:
			d := int64(c - '0')
			if p.length > (1<<63-1-d)/10 {
				return ErrLengthOverflow
			}
			p.length = p.length*10 + d
			p.vs = 1
		case isOWS(c) && p.vs > 0:
			p.vs = 2
		default:
			return ErrInvalidLength
		}
	case kTransferEncoding:
		p.vs = matchExact(p.vs, c, "chunked")
	case kUpgrade:
		p.vs = matchExact(p.vs, c, "h2c")
	case kConnection:
		const token = "upgrade"
		if p.vs < uint8(len(token)) {
			switch {
			case lower(c) == token[p.vs]:
				p.vs++
			case lower(c) == token[0]:
				p.vs = 1
			default:
				p.vs = 0
			}
			if p.vs == uint8(len(token)) {
				p.flags |= fConnUpgrade
			}
		}
	}
	return nil
}

// endField completes a field line at its LF.
func (p *Parser) endField() *Error {
	switch p.kind {
	case kContentLength:
		if p.vs == 0 {
			return ErrInvalidLength // empty value
		}
		p.flags |= fHasLength
	case kTransferEncoding:
		if p.vs != 7 && p.vs != 8 || p.flags&fHasTE != 0 {
			p.flags |= fTEBad // Envoy joins repeated fields: "chunked,chunked" is not "chunked"
		}
		p.flags |= fHasTE
	case kUpgrade:
		if p.vs != 3 && p.vs != 4 {
			p.flags |= fUpgradeOffer
		}
	case kHost:
		p.flags |= fHost
	}
	if p.flags&fKeep != 0 {
		p.fields = append(p.fields, p.cur)
	}
	p.nfields++
	return nil
}
