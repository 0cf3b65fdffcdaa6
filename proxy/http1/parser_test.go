package http1

import (
	"fmt"
	"strings"
	"testing"
)

// headResult is everything Feed decides about a head.
type headResult struct {
	n       int
	err     error
	endErr  bool
	done    bool
	framing Framing
	length  int64
	upgrade bool
	connect bool
	minor   int
	kept    string // the kept method, target and fields (see kept)
}

// kept renders what p keeps of a head, to compare the fast path's storage with the state
// machine's.
func kept(p *Parser) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%q %q", p.Method(), p.Target())
	for i := 0; i < p.NumFields(); i++ {
		n, v := p.Field(i)
		fmt.Fprintf(&sb, " %q:%q", n, v)
	}
	return sb.String()
}

// feedPieces feeds in to a fresh parser cut at the given offsets (ascending) and collects the
// result, with n counted from the start of in.
func feedPieces(lim Limits, in string, cuts ...int) (headResult, *Parser) {
	p := new(Parser)
	p.Init(lim, true)
	return feedParser(p, in, cuts), p
}

// feedParser feeds in to p (initialised by the caller) cut at the given offsets (ascending)
// and collects the result, with n counted from the start of in.
func feedParser(p *Parser, in string, cuts []int) headResult {
	var r headResult
	prev := 0
	for _, c := range append(cuts, len(in)) {
		n, err := p.Feed([]byte(in[prev:c]))
		r.n += n
		if err != nil {
			r.err = err
			break
		}
		if p.Done() {
			break
		}
		prev = c
	}
	r.endErr, r.done = p.EndError(), p.Done()
	if r.done {
		r.framing, r.length, r.upgrade, r.connect, r.minor = p.Framing(), p.ContentLength(), p.Upgrade(), p.Connect(), p.Minor()
		if p.flags&fKeep != 0 {
			r.kept = kept(p)
		}
	}
	return r
}

const host = "Host: example.com\r\n"

func TestParserAccepts(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		framing Framing
		length  int64
		upgrade bool
		connect bool
		minor   int
	}{
		{"minimal", "GET / HTTP/1.1\r\n" + host + "\r\n", FramingNone, -1, false, false, 1},
		// RFC 9112 section 2.2: empty lines before the request line are ignored; Envoy's
		// parsers skip any CR and LF there.
		{"leading crlf", "\r\nGET / HTTP/1.1\r\n" + host + "\r\n", FramingNone, -1, false, false, 1},
		{"leading empty lines, bare lf and cr", "\r\n\n\r\r\nGET / HTTP/1.1\r\n" + host + "\r\n", FramingNone, -1, false, false, 1},
		{"http/1.0 no host", "GET /index.html HTTP/1.0\r\n\r\n", FramingNone, -1, false, false, 0},
		{"htab in value", "GET / HTTP/1.1\r\n" + host + "X-A: a\tb\r\n\r\n", FramingNone, -1, false, false, 1},
		{"ows around value", "GET / HTTP/1.1\r\n" + host + "X-A: \t a b \t \r\n\r\n", FramingNone, -1, false, false, 1},
		{"no ows", "GET / HTTP/1.1\r\nHost:example.com\r\n\r\n", FramingNone, -1, false, false, 1},
		{"empty value", "GET / HTTP/1.1\r\n" + host + "X-Empty:\r\nX-Blank: \t\r\n\r\n", FramingNone, -1, false, false, 1},
		{"obs-text value", "GET / HTTP/1.1\r\n" + host + "X-A: caf\xc3\xa9 \xff\r\n\r\n", FramingNone, -1, false, false, 1},
		{"absolute-form", "GET http://example.com:8080/a/b?c=d HTTP/1.1\r\n" + host + "\r\n", FramingNone, -1, false, false, 1},
		{"absolute-form no path", "GET https://example.com HTTP/1.1\r\n" + host + "\r\n", FramingNone, -1, false, false, 1},
		{"absolute-form query only", "GET http://u@example.com?x HTTP/1.1\r\n" + host + "\r\n", FramingNone, -1, false, false, 1},
		{"options asterisk", "OPTIONS * HTTP/1.1\r\n" + host + "\r\n", FramingNone, -1, false, false, 1},
		{"connect", "CONNECT example.com:443 HTTP/1.1\r\n" + host + "\r\n", FramingNone, -1, false, true, 1},
		{"connect length 0", "CONNECT [::1]:443 HTTP/1.1\r\n" + host + "Content-Length: 0\r\n\r\n", FramingNone, 0, false, true, 1},
		{"custom method", "M-SEARCH /x HTTP/1.1\r\n" + host + "\r\n", FramingNone, -1, false, false, 1},
		{"query and encoded", "GET /a%20b/../c?x=1&y=%2F;z HTTP/1.1\r\n" + host + "\r\n", FramingNone, -1, false, false, 1},
		{"content-length", "POST / HTTP/1.1\r\n" + host + "Content-Length: 5\r\n\r\n", FramingLength, 5, false, false, 1},
		{"content-length ows", "POST / HTTP/1.1\r\n" + host + "content-length: \t 12 \t\r\n\r\n", FramingLength, 12, false, false, 1},
		{"content-length zero", "POST / HTTP/1.1\r\n" + host + "Content-Length: 0\r\n\r\n", FramingNone, 0, false, false, 1},
		{"content-length leading zeros", "POST / HTTP/1.1\r\n" + host + "Content-Length: 007\r\n\r\n", FramingLength, 7, false, false, 1},
		{"content-length max", "POST / HTTP/1.1\r\n" + host + "Content-Length: 9223372036854775807\r\n\r\n", FramingLength, 1<<63 - 1, false, false, 1},
		{"content-length http/1.0", "POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\n", FramingLength, 3, false, false, 0},
		{"chunked", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n", FramingChunked, -1, false, false, 1},
		{"chunked case and ows", "POST / HTTP/1.1\r\n" + host + "transfer-encoding:  ChUnKeD \t\r\n\r\n", FramingChunked, -1, false, false, 1},
		{"websocket upgrade", "GET /ws HTTP/1.1\r\n" + host + "Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n", FramingNone, -1, true, false, 1},
		{"upgrade with body", "POST /ws HTTP/1.1\r\n" + host + "Upgrade: foo\r\nConnection: UPGRADE\r\nContent-Length: 2\r\n\r\n", FramingLength, 2, true, false, 1},
		{"h2c upgrade ignored", "GET / HTTP/1.1\r\n" + host + "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: H2C \r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n", FramingNone, -1, false, false, 1},
		{"upgrade without connection", "GET / HTTP/1.1\r\n" + host + "Upgrade: websocket\r\n\r\n", FramingNone, -1, false, false, 1},
		{"long names", "GET / HTTP/1.1\r\n" + host + "X-" + strings.Repeat("n", 100) + ": v\r\n\r\n", FramingNone, -1, false, false, 1},
		{"content-length-ish names", "POST / HTTP/1.1\r\n" + host + "Content-Lengths: x\r\nX-Content-Length: y\r\nContent-Length: 1\r\n\r\n", FramingLength, 1, false, false, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := feedPieces(Limits{}, tc.in)
			if r.err != nil || !r.done || r.n != len(tc.in) {
				t.Fatalf("Feed = %d of %d, done %v, err %v", r.n, len(tc.in), r.done, r.err)
			}
			if r.framing != tc.framing || r.length != tc.length || r.upgrade != tc.upgrade || r.connect != tc.connect || r.minor != tc.minor {
				t.Fatalf("got framing %v length %d upgrade %v connect %v minor %d", r.framing, r.length, r.upgrade, r.connect, r.minor)
			}
			checkSplits(t, Limits{}, tc.in, r)
		})
	}
}

// checkSplits feeds in cut at every offset and byte by byte, and wants the same result as whole.
func checkSplits(t *testing.T, lim Limits, in string, whole headResult) {
	t.Helper()
	for c := 1; c < len(in); c++ {
		if r, _ := feedPieces(lim, in, c); r != whole {
			t.Fatalf("cut at %d: %+v, whole: %+v", c, r, whole)
		}
	}
	cuts := make([]int, 0, len(in))
	for c := 1; c < len(in); c++ {
		cuts = append(cuts, c)
	}
	if r, _ := feedPieces(lim, in, cuts...); r != whole {
		t.Fatalf("byte by byte: %+v, whole: %+v", r, whole)
	}
}

func TestParserRejects(t *testing.T) {
	long := strings.Repeat("a", 200)
	small := Limits{MaxRequestLineBytes: 40, MaxHeaderBytes: 120, MaxHeaderCount: 3}
	cases := []struct {
		name string
		lim  Limits
		in   string
		want *Error
		at   int // offset of the offending byte; -1: do not check
	}{
		// Request line.
		{"leading crlf then space", Limits{}, "\r\n GET / HTTP/1.1\r\n\r\n", ErrInvalidMethod, 2},
		{"leading empty lines over the head limit", Limits{MaxHeaderBytes: 20}, strings.Repeat("\r\n", 10) + "GET / HTTP/1.1\r\n\r\n", ErrHeadersTooLarge, 20},
		{"leading space", Limits{}, " GET / HTTP/1.1\r\n\r\n", ErrInvalidMethod, 0},
		{"method not a token", Limits{}, "G(T / HTTP/1.1\r\n\r\n", ErrInvalidMethod, 1},
		{"method then tab", Limits{}, "GET\t/ HTTP/1.1\r\n\r\n", ErrInvalidMethod, 3},
		{"two spaces", Limits{}, "GET  / HTTP/1.1\r\n\r\n", ErrInvalidURL, 4},
		{"space in target", Limits{}, "GET /a b HTTP/1.1\r\n\r\n", ErrInvalidVersion, 7},
		{"ctl in target", Limits{}, "GET /\x01 HTTP/1.1\r\n\r\n", ErrInvalidURL, 5},
		{"nul in target", Limits{}, "GET /\x00 HTTP/1.1\r\n\r\n", ErrInvalidURL, 5},
		{"del in target", Limits{}, "GET /\x7f HTTP/1.1\r\n\r\n", ErrInvalidURL, 5},
		{"obs-text in target", Limits{}, "GET /\xff HTTP/1.1\r\n\r\n", ErrInvalidURL, 5},
		{"tab in target", Limits{}, "GET /\t HTTP/1.1\r\n\r\n", ErrInvalidURL, 5},
		{"asterisk not options", Limits{}, "GET * HTTP/1.1\r\n\r\n", ErrInvalidURL, 4},
		{"h2 preface", Limits{}, h2Preface, ErrInvalidURL, 4},
		{"asterisk then path", Limits{}, "OPTIONS *a HTTP/1.1\r\n\r\n", ErrInvalidURL, 9},
		{"relative target", Limits{}, "GET a HTTP/1.1\r\n\r\n", ErrInvalidURL, 5},
		{"scheme not alpha", Limits{}, "GET 1http://a/ HTTP/1.1\r\n\r\n", ErrInvalidURL, 4},
		{"scheme one slash", Limits{}, "GET http:/a HTTP/1.1\r\n\r\n", ErrInvalidURL, 10},
		{"empty host", Limits{}, "GET http:///a HTTP/1.1\r\n\r\n", ErrInvalidURL, 11},
		{"empty host no path", Limits{}, "GET http:// HTTP/1.1\r\n\r\n", ErrInvalidURL, 11},
		{"double at", Limits{}, "GET http://a@@b/ HTTP/1.1\r\n\r\n", ErrInvalidURL, 13},
		{"bad host char", Limits{}, "GET http://a\"b/ HTTP/1.1\r\n\r\n", ErrInvalidURL, 12},
		{"connect path", Limits{}, "CONNECT /x HTTP/1.1\r\n\r\n", ErrInvalidURL, 8},
		{"connect slash in authority", Limits{}, "CONNECT a:1/x HTTP/1.1\r\n\r\n", ErrInvalidURL, 11},
		{"http/0.9", Limits{}, "GET /\r\n\r\n", ErrInvalidVersion, 5},
		{"lower-case version", Limits{}, "GET / http/1.1\r\n\r\n", ErrInvalidVersion, 6},
		{"http/1.2", Limits{}, "GET / HTTP/1.2\r\n\r\n", ErrInvalidVersion, 13},
		{"http/2.0", Limits{}, "GET / HTTP/2.0\r\n\r\n", ErrInvalidVersion, 11},
		{"http/1.10", Limits{}, "GET / HTTP/1.10\r\n\r\n", ErrInvalidVersion, 14},
		{"space after version", Limits{}, "GET / HTTP/1.1 \r\n\r\n", ErrInvalidVersion, 14},
		// Line endings.
		{"bare lf request line", Limits{}, "GET / HTTP/1.1\nHost: a\r\n\r\n", ErrBareLF, 14},
		{"bare lf field", Limits{}, "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", ErrBareLF, 23},
		{"bare lf empty value", Limits{}, "GET / HTTP/1.1\r\nX:\n\r\n", ErrBareLF, 18},
		{"bare lf end", Limits{}, "GET / HTTP/1.1\r\nHost: a\r\n\n", ErrBareLF, 25},
		{"bare cr request line", Limits{}, "GET / HTTP/1.1\rHost: a\r\n\r\n", ErrBareCR, 15},
		{"bare cr in value", Limits{}, "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", ErrBareCR, 21},
		{"bare cr end", Limits{}, "GET / HTTP/1.1\r\nHost: a\r\n\rX", ErrBareCR, 26},
		// Field lines.
		{"obs-fold space", Limits{}, "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", ErrObsFold, 22},
		{"obs-fold tab", Limits{}, "GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n", ErrObsFold, 22},
		{"space before first field", Limits{}, "GET / HTTP/1.1\r\n Host: a\r\n\r\n", ErrObsFold, 16},
		{"space before colon", Limits{}, "GET / HTTP/1.1\r\nHost : a\r\n\r\n", ErrHeaderName, 20},
		{"tab before colon", Limits{}, "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", ErrHeaderName, 20},
		{"empty name", Limits{}, "GET / HTTP/1.1\r\n: a\r\n\r\n", ErrHeaderName, 16},
		{"name not a token", Limits{}, "GET / HTTP/1.1\r\nX(y): a\r\n\r\n", ErrHeaderName, 17},
		{"name with space", Limits{}, "GET / HTTP/1.1\r\nX y: a\r\n\r\n", ErrHeaderName, 17},
		{"no colon", Limits{}, "GET / HTTP/1.1\r\nHost\r\n\r\n", ErrHeaderName, 20},
		{"nul in value", Limits{}, "GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", ErrHeaderValue, 20},
		{"nul first in value", Limits{}, "GET / HTTP/1.1\r\nX: \x00\r\n\r\n", ErrHeaderValue, 19},
		{"ctl in value", Limits{}, "GET / HTTP/1.1\r\nX: a\x01\r\n\r\n", ErrHeaderValue, 20},
		{"vt in value", Limits{}, "GET / HTTP/1.1\r\nX: a\x0bb\r\n\r\n", ErrHeaderValue, 20},
		{"del in value", Limits{}, "GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n", ErrHeaderValue, 20},
		{"nul in length", Limits{}, "GET / HTTP/1.1\r\nContent-Length: 1\x00\r\n\r\n", ErrHeaderValue, 33},
		{"duplicate host", Limits{}, "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", ErrDuplicateHost, 29},
		// Content-Length.
		{"duplicate length same", Limits{}, "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", ErrDuplicateLength, 50},
		{"duplicate length differing", Limits{}, "POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\n", ErrDuplicateLength, 50},
		{"length list", Limits{}, "POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n", ErrInvalidLength, 34},
		{"length list no space", Limits{}, "POST / HTTP/1.1\r\nContent-Length: 5,6\r\n\r\n", ErrInvalidLength, 34},
		{"length sign minus", Limits{}, "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", ErrInvalidLength, 33},
		{"length sign plus", Limits{}, "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", ErrInvalidLength, 33},
		{"length hex", Limits{}, "POST / HTTP/1.1\r\nContent-Length: 0x5\r\n\r\n", ErrInvalidLength, 34},
		{"length inner space", Limits{}, "POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n", ErrInvalidLength, 35},
		{"length empty", Limits{}, "POST / HTTP/1.1\r\nContent-Length: \r\n\r\n", ErrInvalidLength, 34},
		{"length letters", Limits{}, "POST / HTTP/1.1\r\nContent-Length: 5a\r\n\r\n", ErrInvalidLength, 34},
		{"length overflow", Limits{}, "POST / HTTP/1.1\r\nContent-Length: 9223372036854775808\r\n\r\n", ErrLengthOverflow, 51},
		{"length huge", Limits{}, "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", ErrLengthOverflow, 51},
		// Transfer-Encoding.
		{"cl then te", Limits{}, "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", ErrLengthAndTE, 65},
		{"te then cl", Limits{}, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", ErrLengthAndTE, 65},
		{"cl and bad te", Limits{}, "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: xchunked\r\n\r\n", ErrLengthAndTE, 66},
		{"te xchunked", Limits{}, "POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n", ErrUnsupportedTE, 47},
		{"te chunkedx", Limits{}, "POST / HTTP/1.1\r\nTransfer-Encoding: chunkedx\r\n\r\n", ErrUnsupportedTE, 47},
		{"te chunked chunked", Limits{}, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", ErrUnsupportedTE, 55},
		{"te identity chunked", Limits{}, "POST / HTTP/1.1\r\nTransfer-Encoding: identity, chunked\r\n\r\n", ErrUnsupportedTE, 56},
		{"te chunked identity", Limits{}, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n", ErrUnsupportedTE, 56},
		{"te with parameter", Limits{}, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked;q=1\r\n\r\n", ErrUnsupportedTE, 50},
		{"te identity", Limits{}, "POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n", ErrUnsupportedTE, 47},
		{"te gzip", Limits{}, "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", ErrUnsupportedTE, 43},
		{"te empty", Limits{}, "POST / HTTP/1.1\r\nTransfer-Encoding:\r\n\r\n", ErrUnsupportedTE, 38},
		{"te twice", Limits{}, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", ErrUnsupportedTE, 74},
		{"te quoted", Limits{}, "POST / HTTP/1.1\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", ErrUnsupportedTE, 48},
		{"te space before colon", Limits{}, "POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n", ErrHeaderName, 34},
		{"te obs-fold", Limits{}, "POST / HTTP/1.1\r\nTransfer-Encoding:\r\n chunked\r\n\r\n", ErrObsFold, 37},
		{"te vertical tab", Limits{}, "POST / HTTP/1.1\r\nTransfer-Encoding:\x0bchunked\r\n\r\n", ErrHeaderValue, 35},
		{"te http/1.0", Limits{}, "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", ErrTEInHTTP10, 46},
		{"te bad http/1.0", Limits{}, "POST / HTTP/1.0\r\nTransfer-Encoding: gzip\r\n\r\n", ErrTEInHTTP10, 43},
		// CONNECT.
		{"connect with body", Limits{}, "CONNECT a:443 HTTP/1.1\r\nContent-Length: 5\r\n\r\n", ErrConnectBody, 44},
		{"connect chunked", Limits{}, "CONNECT a:443 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", ErrUnsupportedTE, 53},
		// Limits.
		{"request line too long", small, "GET /" + long + " HTTP/1.1\r\n\r\n", ErrHeadersTooLarge, 40},
		{"request line exactly", Limits{MaxRequestLineBytes: 14}, "GET / HTTP/1.11", ErrInvalidVersion, 14},
		{"request line one over", Limits{MaxRequestLineBytes: 13}, "GET / HTTP/1.1\r\n\r\n", ErrHeadersTooLarge, 13},
		{"head too large", small, "GET / HTTP/1.1\r\nX: " + long + "\r\n\r\n", ErrHeadersTooLarge, 120},
		{"head too large at end", Limits{MaxHeaderBytes: 26}, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", ErrHeadersTooLarge, 26},
		{"too many headers", small, "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", ErrTooManyHeaders, 34},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := feedPieces(tc.lim, tc.in)
			if r.err != tc.want {
				t.Fatalf("err = %v, want %v (n %d)", r.err, tc.want, r.n)
			}
			if tc.at >= 0 && r.n != tc.at {
				t.Fatalf("error at %d (%q), want %d", r.n, tc.in[:r.n], tc.at)
			}
			checkSplits(t, tc.lim, tc.in, r)
		})
	}
}

func TestParserExactLimits(t *testing.T) {
	in := "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n"
	lim := Limits{MaxRequestLineBytes: 14, MaxHeaderBytes: len(in), MaxHeaderCount: 2}
	if r, _ := feedPieces(lim, in); r.err != nil || !r.done {
		t.Fatalf("at the limits: %+v", r)
	}
	lim.MaxHeaderBytes--
	if r, _ := feedPieces(lim, in); r.err != ErrHeadersTooLarge {
		t.Fatalf("one byte over: %+v", r)
	}
}

func TestParserStopsAfterHead(t *testing.T) {
	head := "POST / HTTP/1.1\r\n" + host + "Content-Length: 3\r\n\r\n"
	p := new(Parser)
	p.Init(Limits{}, false)
	n, err := p.Feed([]byte(head + "abcGET / HTTP/1.1\r\n"))
	if err != nil || n != len(head) || !p.Done() {
		t.Fatalf("Feed = %d, %v, done %v; want %d", n, err, p.Done(), len(head))
	}
	if n, err := p.Feed([]byte("more")); n != 0 || err != nil {
		t.Fatalf("Feed after done = %d, %v", n, err)
	}
	p.Reset()
	if _, err := p.Feed([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil || !p.Done() || p.ContentLength() != -1 {
		t.Fatalf("after Reset: err %v done %v length %d", err, p.Done(), p.ContentLength())
	}
}

func TestParserErrorIsSticky(t *testing.T) {
	p := new(Parser)
	p.Init(Limits{}, false)
	if _, err := p.Feed([]byte("GET / HTTP/1.1\r\nX: \x00")); err != ErrHeaderValue {
		t.Fatalf("err = %v", err)
	}
	if n, err := p.Feed([]byte("\r\n\r\n")); n != 0 || err != ErrHeaderValue {
		t.Fatalf("after error: %d, %v", n, err)
	}
}

func TestParserKeepsHead(t *testing.T) {
	in := "PATCH http://example.com/a?b HTTP/1.1\r\nHost: example.com\r\nX-Empty:\r\nX-Ows: \t v  a \t\r\nCONTENT-length: 3\r\n\r\n"
	r, p := feedPieces(Limits{}, in, 7, 30, 61, 62)
	if r.err != nil || !r.done {
		t.Fatal(r)
	}
	for i := 0; i < 2; i++ { // twice: storage is reused after Reset
		if string(p.Method()) != "PATCH" || string(p.Target()) != "http://example.com/a?b" {
			t.Fatalf("method %q target %q", p.Method(), p.Target())
		}
		want := [][2]string{{"Host", "example.com"}, {"X-Empty", ""}, {"X-Ows", "v  a"}, {"CONTENT-length", "3"}}
		if p.NumFields() != len(want) {
			t.Fatalf("%d fields", p.NumFields())
		}
		for j, w := range want {
			if n, v := p.Field(j); string(n) != w[0] || string(v) != w[1] {
				t.Fatalf("field %d = %q: %q, want %q", j, n, v, w)
			}
		}
		p.Reset()
		if _, err := p.Feed([]byte(in)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestParserNoAllocs(t *testing.T) {
	in := []byte("POST /api/v1/items?id=42 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: test\r\n" +
		"Accept: */*\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nContent-Length: 42\r\n\r\n")
	for _, keep := range []bool{false, true} {
		p := new(Parser)
		p.Init(Limits{}, keep)
		allocs := testing.AllocsPerRun(100, func() {
			p.Reset()
			if _, err := p.Feed(in[:20]); err != nil {
				t.Fatal(err)
			}
			if _, err := p.Feed(in[20:]); err != nil || !p.Done() {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("keep=%v: %v allocations per head", keep, allocs)
		}
	}
}
