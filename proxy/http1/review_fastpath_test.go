package http1

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
)

// Adversarial review of the fast path (fast.go), the word scans (chars.go) and the response
// parser's Body. The byte-by-byte feed never takes the fast path, so it is the reference for
// whole and cut feeds; classify's kindOf and Body are checked against independent ASCII-fold
// references, since the byte-by-byte path shares them.

// asciiFoldEq reports whether a equals the lower-case b ignoring ASCII case only.
func asciiFoldEq(a []byte, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if lower(a[i]) != b[i] {
			return false
		}
	}
	return true
}

// TestReviewKindOfExhaustive checks kindOf (and so classify and Body) against an ASCII-fold
// comparison: every case permutation of each framing name, and every single-byte substitution
// with any token byte at every position.
func TestReviewKindOfExhaustive(t *testing.T) {
	wants := []struct {
		s    string
		kind fieldKind
	}{
		{"content-length", kContentLength}, {"transfer-encoding", kTransferEncoding},
		{"connection", kConnection}, {"upgrade", kUpgrade}, {"host", kHost},
	}
	check := func(name []byte) {
		t.Helper()
		want := kOther
		for _, w := range wants {
			if asciiFoldEq(name, w.s) {
				want = w.kind
			}
		}
		if got := kindOf(name); got != want {
			t.Fatalf("kindOf(%q) = %d, want %d", name, got, want)
		}
	}
	for _, w := range wants {
		n := len(w.s)
		for mask := 0; mask < 1<<n; mask++ {
			b := []byte(w.s)
			for i := 0; i < n; i++ {
				if mask>>i&1 != 0 && 'a' <= b[i] && b[i] <= 'z' {
					b[i] -= 'a' - 'A'
				}
			}
			check(b)
		}
		for pos := 0; pos < n; pos++ {
			for c := 0; c < 256; c++ {
				if !isToken(byte(c)) {
					continue
				}
				b := []byte(w.s)
				b[pos] = byte(c)
				check(b)
				b = []byte(strings.ToUpper(w.s))
				b[pos] = byte(c)
				check(b)
			}
		}
	}
	// Token names of every other length near the framing lengths.
	for n := 1; n <= 24; n++ {
		check(bytes.Repeat([]byte{'-'}, n))
		check(bytes.Repeat([]byte{'`'}, n))
		check(bytes.Repeat([]byte{'~'}, n))
	}
}

// reviewReqLines are request lines (without CRLF) the fast path takes, leaves or must refuse.
var reviewReqLines = []string{
	"GET / HTTP/1.1", "GET /a?b=c HTTP/1.0", "get / HTTP/1.1", "OPTIONS * HTTP/1.1",
	"OPTIONS / HTTP/1.1", "OPTIONSX / HTTP/1.1", "CONNECT a:443 HTTP/1.1", "CONNECT / HTTP/1.1",
	"CONNECTX / HTTP/1.1", "connect a:1 HTTP/1.1", "POST http://a/b HTTP/1.1", "GET /\x80 HTTP/1.1",
	"GET /\xff\xfe HTTP/1.1", "GET /a\tb HTTP/1.1", "GET /a\x00 HTTP/1.1", "GET /\x7f HTTP/1.1",
	"GET / HTTP/1.1 ", "GET  / HTTP/1.1", "GET / HTTP/1.2", "GET / HTTP/2.0", "GET / http/1.1",
	" GET / HTTP/1.1", "GET / HTTP/1.", "GET / HTTP/1.1x", "GET /", "GET / ", "GET", "/ HTTP/1.1",
	"ABCDEFGHIJKLMNOPQRST / HTTP/1.1", "ABCDEFGHIJKLMNOPQRSTU / HTTP/1.1", "M / HTTP/1.1",
	"G\x80T / HTTP/1.1", "GET /" + strings.Repeat("p", 7) + " HTTP/1.1",
	"GET /" + strings.Repeat("p", 8) + " HTTP/1.1", "GET /" + strings.Repeat("p", 15) + "\x80 HTTP/1.1",
	"GET /" + strings.Repeat("q", 300) + " HTTP/1.1", "GET ////?#%zz HTTP/1.1", "GET * HTTP/1.1",
	"GET /a HTTP/1.1\r", "GET /a HTTP/1.0\n", "GET\t/ HTTP/1.1", "GET /a\rHTTP/1.1",
}

// reviewNames are field names: framing names in several cases, near misses of the same
// length, non-tokens, and lengths around 8, 20 and 64.
var reviewNames = []string{
	"Host", "host", "HOST", "hOsT", "Hosu", "Hos", "Hosts", "`ost",
	"Content-Length", "content-length", "CONTENT-LENGTH", "Content-Lengtx", "Content_Length", "Content\rLength",
	"Transfer-Encoding", "transfer-encoding", "TRANSFER-ENCODING", "Transfer-Encodinf", "Transfer\rEncoding",
	"Connection", "connection", "Connectio", "X-23456789", "Upgrade", "UPGRADE", "Upgradf", "Upgrade2",
	"X", "x-a", "Ab\x80c", "A\x00", "A b", "A\tb", "\xff", strings.Repeat("n", 8), strings.Repeat("n", 20),
	strings.Repeat("n", 21), strings.Repeat("N", 63), strings.Repeat("N", 64), strings.Repeat("N", 68),
	"", "A@b", "A(b", "A/b", "A{b", "A;b",
}

// reviewSeps come between the name and the value.
var reviewSeps = []string{":", ": ", ":\t", ": \t ", " :", "\t:", "", "::"}

// reviewValues are field values: framing values accepted and refused, OWS, controls,
// obs-text and lengths around the word size.
var reviewValues = []string{
	"", "a", " a ", "a\t", "\ta", "a b", "a\tb", "a\x00b", "a\x7fb", "a\rb", "a\nb", "a\x01", "\x1f",
	"caf\xc3\xa9", "\x80\xff\xfe", "\xff", "a\x7f", strings.Repeat("v", 7), strings.Repeat("v", 8),
	strings.Repeat("v", 9), strings.Repeat("v", 15), strings.Repeat("v", 16) + "\t", strings.Repeat("v", 16) + "\x7f",
	strings.Repeat("v", 15) + "\x00", strings.Repeat("v", 23) + " ", strings.Repeat("\t", 9), strings.Repeat(" ", 8),
	strings.Repeat("v", 8191), strings.Repeat("v", 8192), strings.Repeat("v", 8193),
	"0", "5", "05", "+5", "-5", " 5 ", "5 ", "5\t", "5 5", "5, 5", "5,5", "0x5", "5.0", "\xef\xbc\x95",
	"123456789012345678", "999999999999999999", "9223372036854775807", "9223372036854775808",
	"99999999999999999999", "00000000000000000000000000005", "0000000000000000009223372036854775807",
	"00000000000000000009223372036854775808", "18446744073709551616",
	"chunked", "Chunked", "CHUNKED ", "chunked\t ", "chunked , chunked", "chunked,chunked", "gzip, chunked",
	"chunked, gzip", "chun\u212aed", "chunke", "chunkedx", " chunked", "identity",
	"h2c", "H2C ", "h2c2", "websocket", "h2c, websocket",
	"upgrade", "Upgrade", "keep-alive, UPGRADE", "upgradeX", "xupgrade", "upgrad", "uupgrade", "up grade", "close",
}

// reviewEOLs end a field line.
var reviewEOLs = []string{"\r\n", "\r\n", "\r\n", "\r\n", "\r\n", "\r\n", "\n", "\r", "\r\r\n", "\n\r"}

// reviewEnds end a head (what follows the last field line).
var reviewEnds = []string{"\r\n", "\r\n", "\r\n", "\r\n", "\r\nGET / HTTP/1.1\r\n\r\n", "\r\nxyz", "\n", "\r", "", "\r\r\n", " \r\n"}

func pick(rng *rand.Rand, s []string) string { return s[rng.IntN(len(s))] }

// reviewField makes one field line with its line end.
func reviewField(rng *rand.Rand, framingOnly bool) string {
	prefix := ""
	if rng.IntN(40) == 0 {
		prefix = pick(rng, []string{" ", "\t"}) // obs-fold
	}
	name := pick(rng, reviewNames)
	if framingOnly || rng.IntN(3) == 0 {
		name = pick(rng, reviewNames[:19])
	}
	sep := ":"
	if rng.IntN(4) == 0 {
		sep = pick(rng, reviewSeps)
	}
	val := pick(rng, reviewValues)
	if rng.IntN(3) == 0 {
		val = pick(rng, []string{"", " ", "\t", " \t"}) + val + pick(rng, []string{"", " ", "\t", " \t "})
	}
	eol := "\r\n"
	if rng.IntN(6) == 0 {
		eol = pick(rng, reviewEOLs)
	}
	return prefix + name + sep + val + eol
}

// reviewHead makes a request head (or trailer section when trailers) with its line ends.
func reviewHead(rng *rand.Rand, trailers bool) (head string, ends []int) {
	var sb strings.Builder
	if !trailers {
		line := "GET / HTTP/1.1"
		if rng.IntN(3) == 0 {
			line = pick(rng, reviewReqLines)
		}
		sb.WriteString(line)
		if rng.IntN(10) == 0 {
			sb.WriteString(pick(rng, reviewEOLs))
		} else {
			sb.WriteString("\r\n")
		}
		ends = append(ends, sb.Len())
	}
	nf := rng.IntN(7)
	for i := 0; i < nf; i++ {
		sb.WriteString(reviewField(rng, rng.IntN(2) == 0))
		ends = append(ends, sb.Len())
	}
	sb.WriteString(pick(rng, reviewEnds))
	return sb.String(), ends
}

// reviewResult is everything observable of a Parser after a feed.
type reviewResult struct {
	headResult
	nfields int
}

// reviewFeed feeds in to p (initialised by the caller) cut at cuts and collects the result.
func reviewFeed(p *Parser, in string, cuts []int) reviewResult {
	r := reviewResult{headResult: feedParser(p, in, cuts)}
	r.nfields = p.NumFields()
	return r
}

func bytewise(in string) []int {
	cuts := make([]int, 0, len(in))
	for c := 1; c < len(in); c++ {
		cuts = append(cuts, c)
	}
	return cuts
}

func randomCuts(rng *rand.Rand, in string) []int {
	var cuts []int
	for c := 0; c < len(in); {
		c += 1 + rng.IntN(1+rng.IntN(24))
		if c < len(in) {
			cuts = append(cuts, c)
		}
	}
	return cuts
}

// reviewLimits are limits that end at, just before and just after each line end.
func reviewLimits(rng *rand.Rand, ends []int, nfields int) []Limits {
	lims := []Limits{{}, {MaxHeaderCount: max(1, nfields)}, {MaxHeaderCount: nfields + 1}}
	if nfields > 1 {
		lims = append(lims, Limits{MaxHeaderCount: nfields - 1})
	}
	for i, e := range ends {
		lims = append(lims, Limits{MaxHeaderBytes: e}, Limits{MaxHeaderBytes: e - 1}, Limits{MaxHeaderBytes: e + 1},
			Limits{MaxHeaderBytes: e + 2}, Limits{MaxHeaderBytes: e + 1 + rng.IntN(3)})
		if i == 0 {
			lims = append(lims, Limits{MaxRequestLineBytes: e - 2}, Limits{MaxRequestLineBytes: e - 3},
				Limits{MaxRequestLineBytes: e - 1}, Limits{MaxRequestLineBytes: e})
		}
	}
	return lims
}

// checkReview compares whole, byte by byte, random cuts, without keep and on a reused parser.
func checkReview(t *testing.T, rng *rand.Rand, in string, lim Limits, trailers bool, prev string) reviewResult {
	t.Helper()
	fresh := func() *Parser {
		p := new(Parser)
		p.Init(lim, true)
		if trailers {
			p.ResetTrailers()
		}
		return p
	}
	whole := reviewFeed(fresh(), in, nil)
	if r := reviewFeed(fresh(), in, bytewise(in)); r != whole {
		t.Fatalf("%q %+v trailers %v:\nbyte by byte %+v\nwhole        %+v", in, lim, trailers, r, whole)
	}
	for k := 0; k < 3; k++ {
		cuts := randomCuts(rng, in)
		if r := reviewFeed(fresh(), in, cuts); r != whole {
			t.Fatalf("%q %+v trailers %v cuts %v:\ncut   %+v\nwhole %+v", in, lim, trailers, cuts, r, whole)
		}
	}
	// Reused storage: a previous head on the same parser, then Reset.
	p := fresh()
	p.Feed([]byte(prev))
	if trailers {
		p.ResetTrailers()
	} else {
		p.Reset()
	}
	if r := reviewFeed(p, in, nil); r != whole {
		t.Fatalf("%q %+v after %q:\nreused %+v\nwhole  %+v", in, lim, prev, r, whole)
	}
	// Without keep: the same decisions.
	q := new(Parser)
	q.Init(lim, false)
	if trailers {
		q.ResetTrailers()
	}
	r := reviewFeed(q, in, nil)
	r.kept = whole.kept
	if r != whole {
		t.Fatalf("%q %+v trailers %v:\nno keep %+v\nwhole   %+v", in, lim, trailers, r, whole)
	}
	return whole
}

// checkKeptFields compares the kept head of an accepted head with an independent split of
// its lines: method and target around the request line's spaces; the name before the colon,
// the value without surrounding OWS.
func checkKeptFields(t *testing.T, in string, whole reviewResult, trailers bool) {
	t.Helper()
	if !whole.done {
		return
	}
	lines := strings.Split(in[:whole.n-2], "\r\n")
	lines = lines[:len(lines)-1]
	var sb strings.Builder
	if trailers {
		sb.WriteString(`"" ""`)
	} else {
		l := lines[0]
		fmt.Fprintf(&sb, "%q %q", l[:strings.IndexByte(l, ' ')], l[strings.IndexByte(l, ' ')+1:strings.LastIndexByte(l, ' ')])
		lines = lines[1:]
	}
	for _, l := range lines {
		c := strings.IndexByte(l, ':')
		fmt.Fprintf(&sb, " %q:%q", l[:c], strings.Trim(l[c+1:], " \t"))
	}
	if whole.kept != sb.String() {
		t.Fatalf("%q: kept %s, lines say %s", in, whole.kept, sb.String())
	}
}

// TestReviewGeneratedHeads generates heads from tricky pieces and checks that every feed
// agrees with the byte-by-byte one under limits ending at every line, with and without keep,
// on fresh and reused parsers; that accepted heads keep exactly their lines' names and
// values; and that net/http, where it accepts an accepted head, sees the same framing.
func TestReviewGeneratedHeads(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	iters := 4000
	if testing.Short() {
		iters = 500
	}
	prev := benchRequest
	accepted := 0
	for it := 0; it < iters; it++ {
		trailers := it%5 == 4
		in, ends := reviewHead(rng, trailers)
		nf := len(ends)
		if !trailers {
			nf--
		}
		for _, lim := range reviewLimits(rng, ends, nf) {
			whole := checkReview(t, rng, in, lim, trailers, prev)
			if lim == (Limits{}) {
				checkKeptFields(t, in, whole, trailers)
				if whole.done {
					accepted++
				}
				if !trailers && whole.done {
					checkNetHTTPFraming(t, in[:whole.n], whole)
				}
			}
		}
		prev = in
	}
	t.Logf("%d heads, %d accepted", iters, accepted)
}

func checkNetHTTPFraming(t *testing.T, head string, whole reviewResult) {
	t.Helper()
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(head)))
	if err != nil {
		return
	}
	chunked := len(req.TransferEncoding) == 1 && req.TransferEncoding[0] == "chunked"
	switch whole.framing {
	case FramingChunked:
		if !chunked || req.ContentLength != -1 {
			t.Fatalf("%q: chunked head, net/http sees TE %q length %d", head, req.TransferEncoding, req.ContentLength)
		}
	case FramingLength:
		if chunked || req.ContentLength != whole.length {
			t.Fatalf("%q: length %d, net/http sees TE %q length %d", head, whole.length, req.TransferEncoding, req.ContentLength)
		}
	default:
		if chunked || req.ContentLength > 0 {
			t.Fatalf("%q: no body, net/http sees TE %q length %d", head, req.TransferEncoding, req.ContentLength)
		}
	}
}

// reviewStatusLines are status lines (without CRLF).
var reviewStatusLines = []string{
	"HTTP/1.1 200 OK", "HTTP/1.0 200 OK", "HTTP/1.1 200", "HTTP/1.1 200 ", "HTTP/1.1 204 No Content",
	"HTTP/1.1 304 Not Modified", "HTTP/1.1 101 Switching Protocols", "HTTP/1.1 100 Continue", "HTTP/1.1 199 x",
	"HTTP/1.1 599 \t\xffx", "HTTP/1.1 404 caf\xc3\xa9", "HTTP/1.1 600 OK", "HTTP/1.1 099 OK", "HTTP/1.1 000 OK",
	"HTTP/1.1 1000 OK", "HTTP/1.1 20 OK", "HTTP/1.1 20x OK", "HTTP/1.1 2:0 OK", "HTTP/1.1 200 O\x7fK",
	"HTTP/1.1 200 O\x00K", "HTTP/1.1  200 OK", "HTTP/1.1 200\tOK", "HTTP/1.2 200 OK", "HTTP/2.0 200 OK",
	"http/1.1 200 OK", "HTTP/1.1 200 OK\r", "HTTP/1.1 200 OK\n", "HTTP/1.1", "HTTP/1.1 ", "HTTP/1.1 2",
	"HTTP/1.1 200 " + strings.Repeat("r", 8), "HTTP/1.1 200 " + strings.Repeat("r", 16) + "\x01",
	"HTTP/1.1 200 " + strings.Repeat("r", 300), "HTTP/1.1 500 \xa0", "HTTP/1.1 200 OK ",
	"HTTP/1.1 /00 OK", "HTTP/1.1 2\xb0\xb0 OK", "HTTP/1.1 \xb200 OK",
}

// refBody is an independent reading of ResponseParser.Body's rules from the kept fields.
func refBody(p *ResponseParser, head, connect bool) (Framing, int64, bool, error) {
	length := int64(-1)
	te, teBad := false, false
	for i := 0; i < p.NumFields(); i++ {
		name, value := p.Field(i)
		switch {
		case asciiFoldEq(name, "content-length"):
			if length >= 0 {
				return FramingNone, 0, false, ErrDuplicateLength
			}
			if len(value) == 0 {
				return FramingNone, 0, false, ErrInvalidLength
			}
			for _, c := range value {
				if c < '0' || c > '9' {
					return FramingNone, 0, false, ErrInvalidLength
				}
			}
			digits := strings.TrimLeft(string(value), "0")
			if len(digits) > 19 || len(digits) == 19 && digits > "9223372036854775807" {
				return FramingNone, 0, false, ErrLengthOverflow
			}
			length = 0
			for _, c := range []byte(digits) {
				length = length*10 + int64(c-'0')
			}
		case asciiFoldEq(name, "transfer-encoding"):
			teBad = teBad || te || !asciiFoldEq(value, "chunked")
			te = true
		}
	}
	if te {
		switch {
		case p.Minor() == 0:
			return FramingNone, 0, false, ErrTEInHTTP10
		case length >= 0:
			return FramingNone, 0, false, ErrLengthAndTE
		case teBad:
			return FramingNone, 0, false, ErrUnsupportedTE
		}
	}
	switch s := p.Status(); {
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

// reviewRespFeed feeds a response head cut at cuts, as a client does (again after a Feed that
// stops early), and renders the result with every Body variant.
func reviewRespFeed(lim Limits, in string, cuts []int) (string, *ResponseParser) {
	p := new(ResponseParser)
	p.Init(lim)
	n, prev := 0, 0
	var err error
	for _, c := range append(cuts, len(in)) {
		for prev < c && !p.Done() {
			var k int
			k, err = p.Feed([]byte(in[prev:c]))
			n += k
			if err != nil || k == 0 {
				break
			}
			prev += k
		}
		if err != nil || p.Done() {
			break
		}
		prev = c
	}
	s := responseResult(p, n, err)
	if err == nil && p.Done() {
		for _, hc := range [][2]bool{{true, false}, {false, true}} {
			f, l, tun, berr := p.Body(hc[0], hc[1])
			s += fmt.Sprintf(" | %v %d %v %v", f, l, tun, berr)
		}
	}
	return s, p
}

// TestReviewGeneratedResponses generates response heads and checks that whole, byte-by-byte and
// cut feeds agree under limits around the status line and every field line, and that Body
// agrees with an independent reading of its rules.
func TestReviewGeneratedResponses(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	iters := 3000
	if testing.Short() {
		iters = 400
	}
	accepted := 0
	for it := 0; it < iters; it++ {
		var sb strings.Builder
		line := "HTTP/1.1 200 OK"
		if rng.IntN(2) == 0 {
			line = pick(rng, reviewStatusLines)
		}
		sb.WriteString(line + "\r\n")
		ends := []int{sb.Len()}
		for nf := rng.IntN(6); nf > 0; nf-- {
			sb.WriteString(reviewField(rng, rng.IntN(2) == 0))
			ends = append(ends, sb.Len())
		}
		sb.WriteString(pick(rng, reviewEnds))
		in := sb.String()
		lims := []Limits{{}, {MaxRequestLineBytes: ends[0] - 3}, {MaxRequestLineBytes: ends[0] - 2},
			{MaxRequestLineBytes: ends[0] - 1}, {MaxRequestLineBytes: ends[0]}, {MaxHeaderCount: 1}, {MaxHeaderCount: 2}}
		for _, e := range ends[1:] {
			fs := e - ends[0] // the field section's own size
			lims = append(lims, Limits{MaxHeaderBytes: fs}, Limits{MaxHeaderBytes: fs + 1}, Limits{MaxHeaderBytes: fs + 2}, Limits{MaxHeaderBytes: fs - 1})
		}
		for _, lim := range lims {
			if lim.MaxHeaderBytes < 0 {
				continue
			}
			whole, p := reviewRespFeed(lim, in, nil)
			if r, _ := reviewRespFeed(lim, in, bytewise(in)); r != whole {
				t.Fatalf("%q %+v:\nbyte by byte %s\nwhole        %s", in, lim, r, whole)
			}
			for k := 0; k < 2; k++ {
				cuts := randomCuts(rng, in)
				if r, _ := reviewRespFeed(lim, in, cuts); r != whole {
					t.Fatalf("%q %+v cuts %v:\ncut   %s\nwhole %s", in, lim, cuts, r, whole)
				}
			}
			if p.Done() {
				if lim == (Limits{}) {
					accepted++
				}
				for _, hc := range [][2]bool{{false, false}, {true, false}, {false, true}} {
					f, l, tun, err := p.Body(hc[0], hc[1])
					rf, rl, rtun, rerr := refBody(p, hc[0], hc[1])
					if f != rf || l != rl || tun != rtun || err != rerr {
						t.Fatalf("%q: Body(%v, %v) = %v %d %v %v, reference %v %d %v %v", in, hc[0], hc[1], f, l, tun, err, rf, rl, rtun, rerr)
					}
				}
			}
		}
	}
	t.Logf("%d responses, %d accepted", iters, accepted)
}

// reviewFramingLines are valid field lines of the framing fields, to combine.
var reviewFramingLines = []string{
	"Content-Length: 5", "content-length:0", "CONTENT-LENGTH: 05 ", "Content-Length: 9223372036854775807",
	"Content-Length: 9223372036854775808", "Content-Length: 5, 5", "Content-Length: +5",
	"Transfer-Encoding: chunked", "transfer-encoding:CHUNKED\t", "Transfer-Encoding: gzip, chunked",
	"Transfer-Encoding: chunked , chunked", "Transfer-Encoding: chun\u212aed", "Transfer-Encoding:",
	"Host: a", "host: b", "Host:", "Connection: upgrade", "connection: Keep-Alive, UPGRADE", "Connection: close",
	"Upgrade: h2c", "upgrade: H2C ", "Upgrade: websocket", "Upgrade:", "X-Other: 1",
}

// TestReviewFramingCombinations feeds every pair, and random triples, of framing field lines
// after several request lines, whole and byte by byte, with and without keep.
func TestReviewFramingCombinations(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	lines := []string{"GET / HTTP/1.1", "POST /p HTTP/1.0", "CONNECT a:443 HTTP/1.1", "OPTIONS * HTTP/1.1", "PUT / HTTP/1.1"}
	check := func(in string) {
		whole := checkReview(t, rng, in, Limits{}, false, benchRequest)
		checkKeptFields(t, in, whole, false)
		if whole.done {
			checkNetHTTPFraming(t, in[:whole.n], whole)
		}
		// As a trailer section: no framing semantics at all.
		tr := in[strings.Index(in, "\r\n")+2:]
		if w := checkReview(t, rng, tr, Limits{}, true, "A: 1\r\n\r\n"); !w.done {
			t.Fatalf("trailers %q refused: %+v", tr, w)
		}
	}
	for _, rl := range lines {
		for _, a := range reviewFramingLines {
			for _, b := range reviewFramingLines {
				check(rl + "\r\n" + a + "\r\n" + b + "\r\n\r\n")
			}
		}
	}
	for k := 0; k < 3000; k++ {
		in := pick(rng, lines) + "\r\n"
		for n := 3 + rng.IntN(3); n > 0; n-- {
			in += pick(rng, reviewFramingLines) + "\r\n"
		}
		check(in + "\r\n")
	}
}

// TestReviewResponseFramingCombinations checks Body against the reference for every pair of
// framing field lines after status lines of each kind, fed whole and byte by byte.
func TestReviewResponseFramingCombinations(t *testing.T) {
	statuses := []string{"HTTP/1.1 200 OK", "HTTP/1.0 200 OK", "HTTP/1.1 204 No Content", "HTTP/1.1 304 Not Modified",
		"HTTP/1.1 101 Switching Protocols", "HTTP/1.1 100 Continue", "HTTP/1.1 404", "HTTP/1.1 200 \xff"}
	for _, sl := range statuses {
		for _, a := range reviewFramingLines {
			for _, b := range reviewFramingLines {
				in := sl + "\r\n" + a + "\r\n" + b + "\r\n\r\n"
				whole, p := reviewRespFeed(Limits{}, in, nil)
				if r, _ := reviewRespFeed(Limits{}, in, bytewise(in)); r != whole {
					t.Fatalf("%q:\nbyte by byte %s\nwhole        %s", in, r, whole)
				}
				if !p.Done() {
					t.Fatalf("%q refused: %s", in, whole)
				}
				for _, hc := range [][2]bool{{false, false}, {true, false}, {false, true}} {
					f, l, tun, err := p.Body(hc[0], hc[1])
					rf, rl, rtun, rerr := refBody(p, hc[0], hc[1])
					if f != rf || l != rl || tun != rtun || err != rerr {
						t.Fatalf("%q: Body(%v, %v) = %v %d %v %v, reference %v %d %v %v", in, hc[0], hc[1], f, l, tun, err, rf, rl, rtun, rerr)
					}
				}
			}
		}
	}
}
