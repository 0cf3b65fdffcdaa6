package http1

type cstate uint8

const (
	cSize          cstate = iota // chunk-size: 1 to 16 HEXDIG
	cExtName0                    // after ";": BWS, then a name
	cExtName                     // chunk-ext-name
	cExtAfterName                // BWS after a name: "=", ";" or CR
	cExtValue0                   // after "=": BWS, then a token or quoted-string
	cExtToken                    // token value
	cExtQuoted                   // inside a quoted-string
	cExtQuotedPair               // after a backslash in a quoted-string
	cExtAfterValue               // BWS after a value: ";" or CR
	cSizeLF                      // after the size line's CR
	cData                        // chunk-data
	cDataCR                      // CR after the data
	cDataLF                      // LF after the data
	cTrailers                    // trailer section (a Parser), then the final CRLF
	cDone
	cFailed
)

// Chunked validates (and delimits the data of) a chunked request body, fed in pieces of any
// size, as strictly as Envoy (RFC 9112 section 7.1):
//
//	chunk      = chunk-size [ chunk-ext ] CRLF chunk-data CRLF   ; chunk-size: 1*16HEXDIG
//	chunk-ext  = *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )
//	last-chunk = 1*("0") [ chunk-ext ] CRLF, then trailer fields (validated like header
//	             fields, with the same limits) and CRLF
//
// Whitespace is not allowed between the size and the first ";" (net/http refuses it), and a
// size line is at most 4095 bytes (net/http's limit). Every violation is a 400, except a
// trailer section over the limits (431). The zero Chunked is not ready: call Reset. Not safe
// for concurrent use.
type Chunked struct {
	st    cstate
	ndig  uint8
	line  uint16 // bytes of the current size line, without CRLF
	n     uint64 // size being parsed, then data bytes left in the chunk
	err   *Error
	trail *Parser
}

// Reset makes c ready for a new body. The trailer section is parsed with trailers (with its
// limits), which Chunked resets when the last chunk arrives; it may be the Parser that parsed
// the head once the head is no longer needed.
func (c *Chunked) Reset(trailers *Parser) {
	*c = Chunked{trail: trailers}
}

// Done reports whether the body is complete (the final CRLF was consumed).
func (c *Chunked) Done() bool { return c.st == cDone }

// Feed validates the next bytes of the body and returns how many it consumed; when the body
// completes, the bytes after it are not consumed. On error, n is the offset of the offending
// byte (b[:n] validated) and later calls return the same error.
func (c *Chunked) Feed(b []byte) (n int, err error) {
	for n < len(b) && c.st != cDone {
		k, _, err := c.Next(b[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// extStep is the size line's extension grammar after a name, a token value or the white space
// after either: the state that ch leads to from st, or false where ch may not stand there.
func extStep(st cstate, ch byte) (cstate, bool) {
	switch {
	case isToken(ch) && (st == cExtName || st == cExtToken):
		return st, true
	case isOWS(ch) && st == cExtName:
		return cExtAfterName, true
	case isOWS(ch) && st == cExtToken:
		return cExtAfterValue, true
	case isOWS(ch):
		return st, true
	case ch == '=' && (st == cExtName || st == cExtAfterName):
		return cExtValue0, true
	case ch == ';':
		return cExtName0, true
	case ch == '\r':
		return cSizeLF, true
	}
	return st, false
}

// Next consumes a prefix of b and returns its length. When the prefix ends with chunk data,
// data is that data (a subslice of b) so that a codec can decode the body; framing bytes are
// validated and consumed without being returned. Next returns after each run of data, so call
// it until b is used up or Done.
func (c *Chunked) Next(b []byte) (n int, data []byte, err error) {
	switch c.st {
	case cDone:
		return 0, nil, nil
	case cFailed:
		return 0, nil, c.err
	}
	i := 0
	var e *Error
loop:
	for i < len(b) {
		ch := b[i]
		if c.st <= cExtAfterValue { // a byte of the size line
			if ch != '\r' {
				if c.line >= maxChunkLine {
					e = ErrChunkSize
					break loop
				}
				c.line++
			}
		}
		switch c.st {
		case cSize:
			switch {
			case charClass[ch]&cHex != 0:
				if c.ndig == 16 { // more would overflow 64 bits (net/http's limit too)
					e = ErrChunkSize
					break loop
				}
				c.ndig++
				c.n = c.n<<4 | hexVal(ch)
			case ch == ';' && c.ndig > 0:
				c.st = cExtName0
			case ch == '\r' && c.ndig > 0:
				c.st = cSizeLF
			default:
				e = ErrChunkSize
				break loop
			}
		case cExtName0:
			switch {
			case isOWS(ch):
			case isToken(ch):
				c.st = cExtName
			default:
				e = ErrChunkExtension
				break loop
			}
		case cExtName, cExtToken, cExtAfterName, cExtAfterValue:
			st, ok := extStep(c.st, ch)
			if !ok {
				e = ErrChunkExtension
				break loop
			}
			c.st = st
		case cExtValue0:
			switch {
			case isOWS(ch):
			case ch == '"':
				c.st = cExtQuoted
			case isToken(ch):
				c.st = cExtToken
			default:
				e = ErrChunkExtension
				break loop
			}
		case cExtQuoted:
			switch {
			case ch == '"':
				c.st = cExtAfterValue
			case ch == '\\':
				c.st = cExtQuotedPair
			case charClass[ch]&cQdtext == 0:
				e = ErrChunkExtension
				break loop
			}
		case cExtQuotedPair:
			if charClass[ch]&cValue == 0 { // HTAB, SP, VCHAR, obs-text
				e = ErrChunkExtension
				break loop
			}
			c.st = cExtQuoted
		case cSizeLF:
			if ch != '\n' {
				e = ErrBareCR
				break loop
			}
			c.line, c.ndig = 0, 0
			if c.n == 0 {
				c.trail.ResetTrailers()
				c.st = cTrailers
			} else {
				c.st = cData
			}
		case cData:
			k := len(b) - i
			if uint64(k) > c.n {
				k = int(c.n)
			}
			c.n -= uint64(k)
			if c.n == 0 {
				c.st = cDataCR
			}
			return i + k, b[i : i+k], nil
		case cDataCR:
			if ch != '\r' {
				e = ErrChunkData
				break loop
			}
			c.st = cDataLF
		case cDataLF:
			if ch != '\n' {
				e = ErrChunkData
				break loop
			}
			c.st = cSize
		case cTrailers:
			k, err := c.trail.Feed(b[i:])
			i += k
			if err != nil {
				e = err.(*Error)
				break loop
			}
			if c.trail.Done() {
				c.st = cDone
				return i, nil, nil
			}
			continue
		}
		i++
	}
	if e != nil {
		c.st, c.err = cFailed, e
		return i, nil, e
	}
	return i, nil, nil
}
