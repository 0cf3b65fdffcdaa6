package http1

// Feed's fast path. A head usually arrives whole in one read, so most lines are complete in
// the bytes Feed is given. For those, fastLines checks each line as a whole, with run scans
// (targetRun, valueRun) and one table loop per name, instead of stepping the state machine
// byte by byte, and keeps the lines with one copy.
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
	base := int32(len(p.buf))
	k := 0
	if p.st == sMethod {
		if k = p.fastRequestLine(b, base); k == 0 {
			return 0
		}
	}
	keep, framing := p.flags&fKeep != 0, p.flags&fTrailers == 0
	nf, maxf := 0, p.lim.MaxHeaderCount-p.nfields
	for k < len(b) && nf < maxf {
		// field-line = token ":" OWS value OWS CRLF, the value checked a word at a time.
		n := k
		for n < len(b) && isToken(b[n]) {
			n++
		}
		if n == k || n == len(b) || b[n] != ':' {
			break
		}
		vs := n + 1
		for vs < len(b) && isOWS(b[vs]) {
			vs++
		}
		end := vs + valueRun(b[vs:])
		if end+1 >= len(b) || b[end] != '\r' || b[end+1] != '\n' {
			break
		}
		ve := end
		for ve > vs && isOWS(b[ve-1]) {
			ve--
		}
		if framing && n-k < 64 && framingLens>>(n-k)&1 != 0 {
			if kind := kindOf(b[k:n]); kind != kOther && !p.framingField(kind, b[vs:ve]) {
				break
			}
		}
		if keep {
			p.fields = append(p.fields, field{name: span{base + int32(k), base + int32(n)},
				value: span{base + int32(vs), base + int32(ve)}})
		}
		nf++
		k = end + 2
	}
	p.nfields += nf
	// The empty line that ends the head, unless the head as a whole is wrong (the state
	// machine reports that error at the LF).
	if k+1 < len(b) && b[k] == '\r' && b[k+1] == '\n' && (!framing || p.endHead() == nil) {
		p.st = sDone
		k += 2
	}
	if keep {
		p.buf = append(p.buf, b[:k]...)
	}
	return k
}

// fastRequestLine consumes a complete, valid request line with an origin-form target at the
// start of b, which p's buffer will keep from offset base, and returns its length with CRLF;
// 0 when the line is not one of those.
func (p *Parser) fastRequestLine(b []byte, base int32) int {
	m := tokenRun(b)
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
		if p.flags&fHasLength != 0 || len(v) == 0 {
			return false
		}
		var n int64
		for _, c := range v {
			if c < '0' || c > '9' {
				return false
			}
			d := int64(c - '0')
			if len(v) > maxSafeDigits && n > (1<<63-1-d)/10 {
				return false
			}
			n = n*10 + d
		}
		p.length = n
		p.flags |= fHasLength
	case kTransferEncoding:
		if !equalFold(v, "chunked") || p.flags&fHasTE != 0 {
			p.flags |= fTEBad // Envoy joins repeated fields: "chunked,chunked" is not "chunked"
		}
		p.flags |= fHasTE
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

// framingLens has bit n set when a framing field's name has n bytes (see kindOf).
const framingLens = 1<<len("content-length") | 1<<len("transfer-encoding") | 1<<len("connection") |
	1<<len("upgrade") | 1<<len("host")

// kindOf says which framing field, if any, a field name (a token) is, ignoring ASCII case.
func kindOf(name []byte) fieldKind {
	var want string
	var kind fieldKind
	switch len(name) {
	case len("content-length"):
		want, kind = "content-length", kContentLength
	case len("transfer-encoding"):
		want, kind = "transfer-encoding", kTransferEncoding
	case len("connection"):
		want, kind = "connection", kConnection
	case len("upgrade"):
		want, kind = "upgrade", kUpgrade
	case len("host"):
		want, kind = "host", kHost
	default:
		return kOther
	}
	if tokenIs(name, want) {
		return kind
	}
	return kOther
}

// tokenIs reports whether the token t equals want, a string of at least four lower-case
// letters and '-', ignoring ASCII case. It compares words with bit 0x20 set in every byte of
// t: a token byte with that bit set equals a lower-case letter only when it is that letter in
// either case, and '-' only when it is '-' (0x0d, the other byte that would, is no token).
func tokenIs(t []byte, want string) bool {
	n := len(want)
	if len(t) != n {
		return false
	}
	if n < 8 { // two words of four bytes, overlapping
		const fold = 0x20202020
		return load32(t)|fold == load32s(want) && load32(t[n-4:])|fold == load32s(want[n-4:])
	}
	const fold = ones * 0x20
	for i := 0; i < n-8; i += 8 {
		if load64(t[i:])|fold != load64s(want[i:]) {
			return false
		}
	}
	return load64(t[n-8:])|fold == load64s(want[n-8:])
}

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
