package http1

import (
	"encoding/binary"
	"math/bits"
)

// Feed's fast path. A head usually arrives whole in one read, so most lines are complete in
// the bytes Feed is given. For those, fastLines checks each line as a whole, with scans of
// eight bytes at a time (tokenRun, targetRun, valueRun; the name's and value's scans inlined
// in its loop), instead of stepping the state machine byte by byte, and keeps the lines with
// one copy.
//
// The fast path only ever accepts: it consumes a line only when the line is complete in b,
// within every limit, and valid, and then leaves the Parser exactly as the state machine
// would (the same method, target, fields, framing and flags). A line it cannot accept — cut
// by the end of b, over a limit, invalid, or unusual (a target not in origin form, CONNECT) —
// it leaves untouched for the state machine, which then reports the same error at the same
// byte as it would have without a fast path.

// fastLines consumes the complete, valid lines at the start of b: the request line when p is
// at the start of a request head, then field lines while p is at the start of one, then the
// empty line (p is then Done). b must end within the head's size limit (Feed's end). It
// returns the number of bytes consumed.
func (p *Parser) fastLines(b []byte) int {
	k := 0
	if p.st == sMethod {
		if k = p.fastRequestLine(b, int32(len(p.buf))); k == 0 {
			return 0
		}
	}
	// Few values live across the loop (the rest are read from p where needed): the loop
	// would otherwise keep most of them on the stack.
	// The loop ends at the count limit, or where a kept field would grow p.fields: that
	// line is left to the state machine, whose append grows them (seldom: the storage is
	// reused).
	most := p.lim.MaxHeaderCount
	if p.flags&fKeep != 0 {
		most = min(most, p.nfields+cap(p.fields)-len(p.fields))
	}
lines:
	for p.nfields < most {
		// field-line = token ":" OWS value OWS CRLF, the name and value checked a word at a
		// time. A well-known name is checked and ended by its words (names.go); any other
		// name's bytes are scanned up to its first byte that is no letter or '-' (tokenRun,
		// inlined), a digit or another tchar one byte at a time.
		n, kind := k, kUnknown
		if len(b)-k >= 16 {
			if kn := knownField(binary.LittleEndian.Uint64(b[k:]), binary.LittleEndian.Uint64(b[k+8:])); kn != nil {
				n, kind = k+kn.n, kn.kind
			}
		}
		if n == k {
			if k < len(b) && b[k] == '\r' {
				break // the empty line, or not a field line
			}
			for {
				if len(b)-n < 8 {
					n += tokenRun(b[n:])
					break
				}
				m := nameMask(binary.LittleEndian.Uint64(b[n:]))
				if m == 0 {
					n += 8
					continue
				}
				n += bits.TrailingZeros64(m) >> 3
				if charClass[b[n]]&cToken == 0 {
					break
				}
				n++
			}
			if n == k || len(b)-n < 2 || b[n] != ':' {
				break
			}
		}
		vs := n + 1
		for vs < len(b) && (b[vs] == ' ' || b[vs] == '\t') {
			vs++
		}
		// The value's bytes up to its first CTL or DEL (valueRun, inlined): the line ends
		// there if it is CR LF.
		end := vs
	value:
		for {
			var m uint64
			if r := len(b) - end; r >= 8 {
				m = ctlMask(binary.LittleEndian.Uint64(b[end:]))
			} else if len(b) >= 8 {
				// The last r bytes, from the word that ends b: the zero bytes shifted in
				// above them are marked, as the end of b ends the run.
				m = ctlMask(binary.LittleEndian.Uint64(b[len(b)-8:]) >> (64 - 8*r))
			} else {
				end += valueRun(b[end:])
				if len(b)-end < 2 || binary.LittleEndian.Uint16(b[end:]) != '\r'|'\n'<<8 {
					break lines
				}
				break
			}
			if m == 0 {
				end += 8
				continue
			}
			end += bits.TrailingZeros64(m) >> 3
			if end+1 >= len(b) {
				break lines // the line is not complete in b
			}
			switch b[end] {
			case '\t':
				end++
			case '\r':
				if b[end+1] != '\n' {
					break lines
				}
				break value
			default:
				break lines
			}
		}
		ve := end
		for ve > vs && isOWS(b[ve-1]) {
			ve--
		}
		if kind != kOther && p.lens != 0 { // a name to classify, in a head or a response
			if kind == kUnknown {
				kind = kOther
				if l := uint(n - k); l < 32 && p.lens>>l&1 != 0 {
					kind = kindOf(b[k:n])
				}
			}
			if kind != kOther {
				switch {
				case p.flags&fTrailers != 0:
					p.bodyField(kind, b[vs:ve]) // a response's
				case kind == kHost: // framingField's, without the call
					if p.flags&fHost != 0 {
						break lines
					}
					p.flags |= fHost
				case !p.framingField(kind, b[vs:ve]):
					break lines
				}
			}
		}
		if p.flags&fKeep != 0 {
			// Resliced in place (the loop's bound leaves room): no store of the slice's
			// pointer (and its write barrier's code), nor growth, in the loop.
			base, i := int32(len(p.buf)), len(p.fields)
			p.fields = p.fields[:i+1]
			p.fields[i] = field{name: span{base + int32(k), base + int32(n)},
				value: span{base + int32(vs), base + int32(ve)}}
		}
		p.nfields++
		k = end + 2
	}
	// The empty line that ends the head, unless the head as a whole is wrong (the state
	// machine reports that error at the LF).
	if len(b)-k >= 2 && binary.LittleEndian.Uint16(b[k:]) == '\r'|'\n'<<8 &&
		(p.flags&fTrailers != 0 || p.endHead() == nil) {
		p.st = sDone
		k += 2
	}
	if p.flags&fKeep != 0 {
		// Resliced in place when the storage has room (the usual case, first in source
		// order: the layout's), grown out of line (keep) when not.
		if i := len(p.buf); cap(p.buf)-i >= k {
			p.buf = p.buf[:i+k]
			copy(p.buf[i:], b[:k])
		} else {
			p.keep(b[:k])
		}
	}
	return k
}

// keep appends b to p.buf, growing it. Out of line: the storage is reused, and once grown it
// seldom needs more.
//
//go:noinline
func (p *Parser) keep(b []byte) { p.buf = append(p.buf, b...) }

// fastRequestLine consumes a complete, valid request line with an origin-form target at the
// start of b, which p's buffer will keep from offset base, and returns its length with CRLF;
// 0 when the line is not one of those.
func (p *Parser) fastRequestLine(b []byte, base int32) int {
	m := 0
	if len(b) >= 8 { // the usual methods, by their word
		switch w := binary.LittleEndian.Uint64(b); {
		case uint32(w) == 'G'|'E'<<8|'T'<<16|' '<<24:
			m = 3
		case w&(1<<40-1) == 'P'|'O'<<8|'S'<<16|'T'<<24|' '<<32:
			m = 4
		}
	}
	if m == 0 {
		m = tokenRun(b)
	}
	if m == 0 || m+2 > len(b) || b[m] != ' ' || b[m+1] != '/' {
		return 0
	}
	t := m + 1 + targetRun(b[m+1:])
	const version = " HTTP/1."
	if len(b)-t < len(version)+3 || string(b[t:t+len(version)]) != version {
		return 0
	}
	minor, cr, lf := b[t+8], b[t+9], b[t+10]
	if minor != '0' && minor != '1' || cr != '\r' || lf != '\n' || t+9 > p.lim.MaxRequestLineBytes {
		return 0
	}
	switch string(b[:m]) {
	case "CONNECT":
		return 0 // its target is an authority: the state machine rejects "/"
	case "OPTIONS":
		p.mkind = mOptions
	}
	p.method = span{base, base + int32(m)}
	p.target = span{base + int32(m) + 1, base + int32(t)}
	p.minor = minor - '0'
	p.lineLen = t + 9
	p.st = sFieldStart
	return t + 11
}

// framingField applies a complete framing field (kind, and its value without surrounding OWS)
// as the state machine would at the field's LF, and reports true; when the state machine
// would reject the field, it changes nothing and reports false.
func (p *Parser) framingField(kind fieldKind, v []byte) bool {
	switch kind {
	case kContentLength:
		return p.setLength(v) == nil
	case kTransferEncoding:
		p.setTE(v)
	case kUpgrade:
		if !equalFold(v, "h2c") {
			p.flags |= fUpgradeOffer
		}
	case kConnection:
		if containsFold(v, "upgrade") {
			p.flags |= fConnUpgrade
		}
	case kHost:
		if p.flags&fHost != 0 {
			return false
		}
		p.flags |= fHost
	}
	return true
}

// endHead applies the checks Envoy's codec makes once the headers are complete
// (ConnectionImpl::onHeadersCompleteImpl), in its order, and decides the framing.
func (p *Parser) endHead() *Error {
	connect := p.mkind == mConnect
	if connect && p.flags&fHasLength != 0 && p.length != 0 {
		return ErrConnectBody
	}
	if p.flags&fHasTE != 0 {
		// RFC 9112 section 6.1: HTTP/1.0 framing with Transfer-Encoding is faulty. net/http
		// ignores Transfer-Encoding in HTTP/1.0 requests, so this must never pass.
		if p.minor == 0 {
			return ErrTEInHTTP10
		}
		if p.flags&fHasLength != 0 {
			return ErrLengthAndTE
		}
		if p.flags&fTEBad != 0 || connect {
			return ErrUnsupportedTE
		}
		p.framing = FramingChunked
		return nil
	}
	if p.flags&fHasLength != 0 && p.length > 0 {
		p.framing = FramingLength
	}
	return nil
}

// bodyLens has bit n set when the name of a field Body looks at (a response's Content-Length
// and Transfer-Encoding) has n bytes.
const bodyLens = 1<<len("content-length") | 1<<len("transfer-encoding")

// framingLens has bit n set when a framing field's name has n bytes (see kindOf).
const framingLens = 1<<len("content-length") | 1<<len("transfer-encoding") | 1<<len("connection") |
	1<<len("upgrade") | 1<<len("host")

// kindOf says which framing field, if any, a field name (a token) is, ignoring ASCII case.
// It compares words with bit 0x20 set in every byte of the name: a token byte with that bit
// set equals a lower-case letter only when it is that letter in either case, and '-' only
// when it is '-' (0x0d, the other byte that would, is no token). Names of eight bytes or more
// are told apart by their first word before the rest is compared.
func kindOf(name []byte) fieldKind {
	n := len(name)
	if n < 4 || n >= 32 || framingLens>>n&1 == 0 {
		return kOther
	}
	if n < 8 { // "host", "upgrade": two words of four bytes, overlapping
		const fold = 0x20202020
		w, v := load32(name)|fold, load32(name[n-4:])|fold
		switch {
		case n == 4 && w == wHost:
			return kHost
		case n == 7 && w == wUpgr && v == wRade:
			return kUpgrade
		}
		return kOther
	}
	const fold = ones * 0x20
	w := load64(name) | fold
	switch {
	case n == 14 && w == wContent:
		if load64(name[6:])|fold == wTLength {
			return kContentLength
		}
	case n == 17 && w == wTransfer:
		if load64(name[8:])|fold == wEncodin && name[16]|0x20 == 'g' {
			return kTransferEncoding
		}
	case n == 10 && w == wConnecti:
		if load64(name[2:])|fold == wNnection {
			return kConnection
		}
	}
	return kOther
}

// The words kindOf compares.
var (
	wHost, wUpgr, wRade  = load32s("host"), load32s("upgr"), load32s("rade")
	wContent, wTLength   = load64s("content-"), load64s("t-length")
	wTransfer, wEncodin  = load64s("transfer"), load64s("-encodin")
	wConnecti, wNnection = load64s("connecti"), load64s("nnection")
)

// equalFold reports whether b equals the lower-case ASCII string s, ignoring the case of ASCII
// letters only (as Envoy's comparisons: no Unicode folding, so "\u212a" is not "k").
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		if lower(b[i]) != s[i] {
			return false
		}
	}
	return true
}

// containsFold reports whether b contains the lower-case ASCII string s, ignoring the case of
// ASCII letters only.
func containsFold(b []byte, s string) bool {
	for i := 0; i+len(s) <= len(b); i++ {
		if lower(b[i]) == s[0] && equalFold(b[i:i+len(s)], s) {
			return true
		}
	}
	return false
}
