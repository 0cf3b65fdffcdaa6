package http1

import (
	"fmt"
	"strings"
	"testing"
)

// reviewCase is a head with the decision Envoy's rules call for.
type reviewCase struct {
	in      string
	err     *Error
	framing Framing
	length  int64
	upgrade bool
}

// checkCase feeds a head whole, byte by byte and cut before every line's CR, LF and the byte
// after it (a CRLF cut in the middle), and wants the expected decision each time.
func checkCase(t *testing.T, lim Limits, c reviewCase) {
	t.Helper()
	whole, _ := feedPieces(lim, c.in)
	var err *Error
	if whole.err != nil {
		err = whole.err.(*Error)
	}
	if err != c.err || c.err == nil && (!whole.done || whole.framing != c.framing || whole.length != c.length || whole.upgrade != c.upgrade) {
		t.Errorf("%.80q: %+v, want err %v framing %v length %d upgrade %v", c.in, whole, c.err, c.framing, c.length, c.upgrade)
		return
	}
	if r, _ := feedPieces(lim, c.in, bytewise(c.in)...); r != whole {
		t.Errorf("%.80q: byte by byte %+v, whole %+v", c.in, r, whole)
	}
	for k := strings.Index(c.in, "\r\n"); k >= 0; {
		for _, cut := range []int{k, k + 1, k + 2} {
			if cut > 0 && cut < len(c.in) {
				if r, _ := feedPieces(lim, c.in, cut); r != whole {
					t.Errorf("%.80q: cut at %d %+v, whole %+v", c.in, cut, r, whole)
				}
			}
		}
		next := strings.Index(c.in[k+2:], "\r\n")
		if next < 0 {
			break
		}
		k += 2 + next
	}
}

func post(fields ...string) string {
	return "POST / HTTP/1.1\r\nHost: a\r\n" + strings.Join(fields, "\r\n") + "\r\n\r\n"
}

// TestReviewFramingCases checks Content-Length, Transfer-Encoding, Host, Upgrade and
// Connection against Envoy's rules, fed whole and in pieces.
func TestReviewFramingCases(t *testing.T) {
	cl := func(v string) string { return post("Content-Length:" + v) }
	cases := []reviewCase{
		{cl("5"), nil, FramingLength, 5, false},
		{cl("0"), nil, FramingNone, 0, false},
		{cl("007"), nil, FramingLength, 7, false},
		{cl(" \t 5 \t "), nil, FramingLength, 5, false},
		{cl("+5"), ErrInvalidLength, 0, 0, false},
		{cl("-5"), ErrInvalidLength, 0, 0, false},
		{cl("5 5"), ErrInvalidLength, 0, 0, false},
		{cl("5, 5"), ErrInvalidLength, 0, 0, false},
		{cl("5,5"), ErrInvalidLength, 0, 0, false},
		{cl(""), ErrInvalidLength, 0, 0, false},
		{cl(" "), ErrInvalidLength, 0, 0, false},
		{cl("0x5"), ErrInvalidLength, 0, 0, false},
		{cl("\xef\xbc\x95"), ErrInvalidLength, 0, 0, false}, // FULLWIDTH DIGIT FIVE
		{cl("999999999999999999"), nil, FramingLength, 999999999999999999, false},
		{cl("9223372036854775807"), nil, FramingLength, 1<<63 - 1, false},
		{cl("0009223372036854775807"), nil, FramingLength, 1<<63 - 1, false},
		{cl("9223372036854775808"), ErrLengthOverflow, 0, 0, false},
		{cl("0009223372036854775808"), ErrLengthOverflow, 0, 0, false},
		{cl("10000000000000000000"), ErrLengthOverflow, 0, 0, false},
		{cl("99999999999999999999"), ErrLengthOverflow, 0, 0, false},
		{cl("18446744073709551621"), ErrLengthOverflow, 0, 0, false}, // 2^64+5: wraps to 5 without the check
		{cl("0000000000000000000000000000000000005"), nil, FramingLength, 5, false},
		{post("Content-Length: 5", "Content-Length: 5"), ErrDuplicateLength, 0, 0, false},
		{post("Content-Length: 5", "content-length: 6"), ErrDuplicateLength, 0, 0, false},
		{post("Content-Length: 5", "X: 1", "CONTENT-LENGTH: 5"), ErrDuplicateLength, 0, 0, false},
		{post("Content-Length: 5", "Transfer-Encoding: chunked"), ErrLengthAndTE, 0, 0, false},
		{post("Transfer-Encoding: chunked", "Content-Length: 5"), ErrLengthAndTE, 0, 0, false},
		{post("Transfer-Encoding: chunked"), nil, FramingChunked, -1, false},
		{post("transfer-encoding: CHUNKED\t "), nil, FramingChunked, -1, false},
		{post("Transfer-Encoding: chunked , chunked"), ErrUnsupportedTE, 0, 0, false},
		{post("Transfer-Encoding: chunked,chunked"), ErrUnsupportedTE, 0, 0, false},
		{post("Transfer-Encoding: gzip, chunked"), ErrUnsupportedTE, 0, 0, false},
		{post("Transfer-Encoding: chunked", "Transfer-Encoding: chunked"), ErrUnsupportedTE, 0, 0, false},
		{post("Transfer-Encoding: gzip", "Transfer-Encoding: chunked"), ErrUnsupportedTE, 0, 0, false},
		{post("Transfer-Encoding: chun\u212aed"), ErrUnsupportedTE, 0, 0, false},
		{post("Transfer-Encoding: \u212a"), ErrUnsupportedTE, 0, 0, false},
		{post("Transfer-Encoding:"), ErrUnsupportedTE, 0, 0, false},
		{post("Transfer-Encoding: identity"), ErrUnsupportedTE, 0, 0, false},
		{"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", ErrTEInHTTP10, 0, 0, false},
		{"POST / HTTP/1.0\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", ErrTEInHTTP10, 0, 0, false},
		{"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", ErrDuplicateHost, 0, 0, false},
		{"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", ErrDuplicateHost, 0, 0, false},
		{"GET / HTTP/1.1\r\nHost:\r\nHost:\r\n\r\n", ErrDuplicateHost, 0, 0, false},
		{"GET / HTTP/1.1\r\n\r\n", nil, FramingNone, -1, false},
		{"GET / HTTP/1.1\r\nHost:\r\n\r\n", nil, FramingNone, -1, false},
		{"GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", nil, FramingNone, -1, true},
		{"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: keep-alive, upgrade\r\n\r\n", nil, FramingNone, -1, true},
		{"GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n", nil, FramingNone, -1, false},
		{"GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: H2C \t\r\n\r\n", nil, FramingNone, -1, false},
		{"GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nUpgrade: websocket\r\n\r\n", nil, FramingNone, -1, true},
		{"GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade:\r\n\r\n", nil, FramingNone, -1, true},
		{"GET / HTTP/1.1\r\nConnection: upgradex\r\nUpgrade: websocket\r\n\r\n", nil, FramingNone, -1, true},
		{"GET / HTTP/1.1\r\nConnection: upgrad\r\nUpgrade: websocket\r\n\r\n", nil, FramingNone, -1, false},
		{"GET / HTTP/1.1\r\nConnection: close\r\nUpgrade: websocket\r\n\r\n", nil, FramingNone, -1, false},
		{"GET / HTTP/1.1\r\nConnection: up\xc3\xa9grade\r\nUpgrade: websocket\r\n\r\n", nil, FramingNone, -1, false},
		{"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nContent-Length: 0\r\n\r\n", nil, FramingNone, 0, false},
		{"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nContent-Length: 1\r\n\r\n", ErrConnectBody, 0, 0, false},
		{"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nTransfer-Encoding: chunked\r\n\r\n", ErrUnsupportedTE, 0, 0, false},
	}
	for _, c := range cases {
		checkCase(t, Limits{}, c)
	}
}

// TestReviewSyntaxCases checks request lines and field lines Envoy refuses or accepts.
func TestReviewSyntaxCases(t *testing.T) {
	ok := func(in string) reviewCase { return reviewCase{in, nil, FramingNone, -1, false} }
	bad := func(in string, err *Error) reviewCase { return reviewCase{in, err, 0, 0, false} }
	g := func(fields ...string) string {
		return "GET / HTTP/1.1\r\n" + strings.Join(fields, "\r\n") + "\r\n\r\n"
	}
	cases := []reviewCase{
		ok("GET /a/b?c=d&e=%20 HTTP/1.1\r\n\r\n"),
		ok("get / HTTP/1.1\r\n\r\n"),
		ok("FOO / HTTP/1.0\r\n\r\n"),
		ok(strings.Repeat("M", 1000) + " / HTTP/1.1\r\n\r\n"),
		ok("GET http://a.example:80/b?c HTTP/1.1\r\n\r\n"),
		ok("OPTIONS * HTTP/1.1\r\n\r\n"),
		ok("CONNECT a.example:443 HTTP/1.1\r\n\r\n"),
		bad("GET * HTTP/1.1\r\n\r\n", ErrInvalidURL),
		bad("CONNECT / HTTP/1.1\r\n\r\n", ErrInvalidURL),
		bad("GET /\x80 HTTP/1.1\r\n\r\n", ErrInvalidURL),
		bad("GET /\x7f HTTP/1.1\r\n\r\n", ErrInvalidURL),
		bad("GET /\x00 HTTP/1.1\r\n\r\n", ErrInvalidURL),
		bad("GET /a\tb HTTP/1.1\r\n\r\n", ErrInvalidURL),
		bad("GET / HTTP/1.2\r\n\r\n", ErrInvalidVersion),
		bad("GET / HTTP/1.1 \r\n\r\n", ErrInvalidVersion),
		bad("GET / HTTP/1.1\n\r\n", ErrBareLF),
		bad("GET / HTTP/1.1\r\r\n", ErrBareCR),
		bad("GET /\r\n\r\n", ErrInvalidVersion),
		bad("G\x80T / HTTP/1.1\r\n\r\n", ErrInvalidMethod),
		bad(" GET / HTTP/1.1\r\n\r\n", ErrInvalidMethod),
		ok("\r\nGET / HTTP/1.1\r\n\r\n"), // empty lines before a request line are skipped
		ok(g("X: \x80\xff caf\xc3\xa9")),
		ok(g("X:")),
		ok(g("X: \t ")),
		ok(g("X:\tv\t")),
		ok(g("X: a\tb")),
		ok(g("X: "+strings.Repeat("v", 8191), "Y: "+strings.Repeat("w", 8192), "Z: "+strings.Repeat("z", 8193))),
		ok(g(strings.Repeat("n", 64)+": v", strings.Repeat("N", 8)+":"+strings.Repeat("v", 16))),
		bad(g("X: a\x00b"), ErrHeaderValue),
		bad(g("X: a\x7fb"), ErrHeaderValue),
		bad(g("X: "+strings.Repeat("v", 15)+"\x7f"), ErrHeaderValue),
		bad(g("X: "+strings.Repeat("v", 16)+"\x01"), ErrHeaderValue),
		bad(g("X: a\rb"), ErrBareCR),
		bad(g("X: a\nb"), ErrBareLF),
		bad(g("X: a", " b"), ErrObsFold),
		bad(g("X: a", "\tb"), ErrObsFold),
		bad(g("X : a"), ErrHeaderName),
		bad(g("X\t: a"), ErrHeaderName),
		bad(g(": a"), ErrHeaderName),
		bad(g("X\x80: a"), ErrHeaderName),
		bad(g("X"), ErrHeaderName),
		bad(g("X@: a"), ErrHeaderName),
		bad("GET / HTTP/1.1\r\nX: a\n\r\n", ErrBareLF),
		bad("GET / HTTP/1.1\r\nX: a\r\r\n", ErrBareCR),
		bad("GET / HTTP/1.1\r\nX: a\r\n\n", ErrBareLF),
		bad("GET / HTTP/1.1\r\nX: a\r\n\rX", ErrBareCR),
	}
	for _, c := range cases {
		checkCase(t, Limits{}, c)
	}
}

// TestReviewDefaultLimits builds heads of exactly the default size and field count, and one
// past each, so that the fast path runs to the limit within one Feed.
func TestReviewDefaultLimits(t *testing.T) {
	line := "GET / HTTP/1.1\r\n"
	fields := func(n int) string {
		var sb strings.Builder
		for i := 0; i < n; i++ {
			fmt.Fprintf(&sb, "X-%03d: v\r\n", i)
		}
		return sb.String()
	}
	checkCase(t, Limits{}, reviewCase{line + fields(DefaultMaxHeaderCount) + "\r\n", nil, FramingNone, -1, false})
	checkCase(t, Limits{}, reviewCase{line + fields(DefaultMaxHeaderCount+1) + "\r\n", ErrTooManyHeaders, 0, 0, false})
	// One field padded to make the head exactly DefaultMaxHeaderBytes, then one byte more.
	pad := DefaultMaxHeaderBytes - len(line) - len("X: \r\n") - len("\r\n")
	exact := line + "X: " + strings.Repeat("v", pad) + "\r\n\r\n"
	checkCase(t, Limits{}, reviewCase{exact, nil, FramingNone, -1, false})
	checkCase(t, Limits{}, reviewCase{exact + "GET", nil, FramingNone, -1, false})
	over := line + "X: " + strings.Repeat("v", pad+1) + "\r\n\r\n"
	checkCase(t, Limits{}, reviewCase{over, ErrHeadersTooLarge, 0, 0, false})
	// Cut before the empty line's LF, the last byte the limit allows: waiting, not refused.
	cut := line + "X: " + strings.Repeat("v", pad) + "\r\n\r"
	if whole, _ := feedPieces(Limits{}, cut); whole.err != nil || whole.done || whole.n != len(cut) {
		t.Errorf("cut before the last LF: %+v", whole)
	}
	// A request line of exactly the default limit, and one more.
	target := "/" + strings.Repeat("t", DefaultMaxHeaderBytes-len("GET  HTTP/1.1")-1-len("\r\n\r\n"))
	checkCase(t, Limits{}, reviewCase{"GET " + target + " HTTP/1.1\r\n\r\n", nil, FramingNone, -1, false})
	checkCase(t, Limits{}, reviewCase{"GET " + target + "t HTTP/1.1\r\n\r\n", ErrHeadersTooLarge, 0, 0, false})
}
