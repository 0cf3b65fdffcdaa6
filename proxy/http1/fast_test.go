package http1

import (
	"fmt"
	"strings"
	"testing"
)

// fastHeads are heads whose lines start, end or fail at the fast path's boundaries: every
// framing field accepted and refused, OWS, empty values, HTAB and obs-text, targets it leaves
// to the state machine, and limits reached exactly at a line's end.
var fastHeads = []string{
	benchRequest,
	"GET / HTTP/1.0\r\n\r\n",
	"GET /a?b=c HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Ows: \t v \t a \t\r\nX-Tab:\tv\r\nX-Obs: caf\xc3\xa9\xff\r\n\r\n",
	"OPTIONS / HTTP/1.1\r\nHost: a\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
	"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
	"CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET http://a/b HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /\x7f HTTP/1.1\r\n\r\n",
	"GET / HTTP/1.2\r\n\r\n",
	"GET / HTTP/1.1\n\r\n",
	"GET / HTTP/1.1\r\r\n",
	"GET / HTTP/1.1 \r\n\r\n",
	"GET  / HTTP/1.1\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0012 \t\r\n\r\n",
	"POST / HTTP/1.1\r\nCONTENT-LENGTH:9223372036854775807\r\n\r\n",
	"POST / HTTP/1.1\r\nContent-Length: 9223372036854775808\r\n\r\n",
	"POST / HTTP/1.1\r\nContent-Length: 999999999999999999\r\n\r\n",
	"POST / HTTP/1.1\r\nContent-Length: 0000000000000000001\r\n\r\n",
	"POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
	"POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n",
	"POST / HTTP/1.1\r\nContent-Length: \r\n\r\n",
	"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
	"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
	"POST / HTTP/1.1\r\nTransfer-Encoding: ChunkeD \r\n\r\n",
	"POST / HTTP/1.1\r\nTransfer-Encoding: chun\xe2\x84\xaaed\r\n\r\n",
	"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
	"POST / HTTP/1.1\r\nTransfer-Encoding:\r\n\r\n",
	"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
	"GET / HTTP/1.1\r\nConnection: keep-alive, uPGRADE\r\nUpgrade: websocket\r\n\r\n",
	"GET / HTTP/1.1\r\nConnection: uupgradx, upgrade\r\nUpgrade: H2C\t\r\n\r\n",
	"GET / HTTP/1.1\r\nConnection: upgrad\r\nUpgrade: h2c2\r\n\r\n",
	"GET / HTTP/1.1\r\nUpgrade:\r\nConnection: Upgrade\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nHOST: a\r\n\r\n",
	"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\x00\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n",
	"GET / HTTP/1.1\r\nX-" + strings.Repeat("n", 40) + ": " + strings.Repeat("v", 40) + "\r\n\r\n",
	"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\n\rX",
	"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\n\r\n",
}

// TestFastPathSplits feeds every fastHeads head whole, cut at every offset, cut at every pair
// of offsets and byte by byte (which never takes the fast path), under limits that end at
// every line, and wants the same result, error offset and kept head each time.
func TestFastPathSplits(t *testing.T) {
	for _, in := range fastHeads {
		lims := []Limits{{}, {MaxHeaderCount: 3}, {MaxHeaderCount: 1}}
		for k := strings.Index(in, "\r\n"); k >= 0 && k < len(in); {
			lims = append(lims, Limits{MaxRequestLineBytes: k}, Limits{MaxRequestLineBytes: k - 1},
				Limits{MaxHeaderBytes: k + 2}, Limits{MaxHeaderBytes: k + 1}, Limits{MaxHeaderBytes: k + 3})
			next := strings.Index(in[k+2:], "\r\n")
			if next < 0 {
				break
			}
			k += 2 + next
		}
		for _, lim := range lims {
			whole, _ := feedPieces(lim, in)
			checkSplits(t, lim, in, whole)
			for a := 1; a < len(in) && len(in) < 120; a++ {
				for b := a + 1; b < len(in); b++ {
					if r, _ := feedPieces(lim, in, a, b); r != whole {
						t.Fatalf("%q, %+v: cut at %d and %d: %+v, whole %+v", in, lim, a, b, r, whole)
					}
				}
			}
			// Without keep, the same decisions.
			p := new(Parser)
			p.Init(lim, false)
			n, err := p.Feed([]byte(in))
			if n != whole.n || err != whole.err || p.Done() != whole.done ||
				whole.done && (p.Framing() != whole.framing || p.ContentLength() != whole.length || p.Upgrade() != whole.upgrade) {
				t.Fatalf("%q, %+v: without keep %d %v, whole %+v", in, lim, n, err, whole)
			}
		}
	}
}

// TestFastPathKelvin checks that the framing values compare ASCII case only: U+212A KELVIN
// SIGN folds to "k" in Unicode, not in Envoy.
func TestFastPathKelvin(t *testing.T) {
	r, _ := feedPieces(Limits{}, "POST / HTTP/1.1\r\nTransfer-Encoding: chun\u212aed\r\n\r\n")
	if r.err != ErrUnsupportedTE {
		t.Fatalf("request: %+v", r)
	}
	p, _, err := feedResponse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chun\u212aed\r\n\r\n", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := p.Body(false, false); err != ErrUnsupportedTE {
		t.Fatalf("response: %v", err)
	}
}

// TestTrailerSplits feeds trailer sections (ResetTrailers) whole and cut at every offset.
func TestTrailerSplits(t *testing.T) {
	sections := []string{
		"\r\n",
		"A: 1\r\nB: 2\r\n\r\n",
		"Content-Length: 5\r\nContent-Length: x\r\nHost: a\r\nHost: b\r\nTransfer-Encoding: gzip\r\n\r\n",
		"A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n",
		"A: \x01\r\n\r\n",
		"A: 1\r\n B\r\n\r\n",
		"A: 1\r\n\n",
	}
	feed := func(lim Limits, in string, cuts ...int) string {
		p := new(Parser)
		p.Init(lim, true)
		p.ResetTrailers()
		n, prev := 0, 0
		for _, c := range append(cuts, len(in)) {
			k, err := p.Feed([]byte(in[prev:c]))
			n += k
			if err != nil {
				return fmt.Sprintf("n %d err %v", n, err)
			}
			if p.Done() {
				break
			}
			prev = c
		}
		return fmt.Sprintf("n %d done %v %s", n, p.Done(), kept(p))
	}
	for _, in := range sections {
		for _, lim := range []Limits{{}, {MaxHeaderCount: 3}, {MaxHeaderBytes: 12}} {
			whole := feed(lim, in)
			for c := 1; c < len(in); c++ {
				if r := feed(lim, in, c); r != whole {
					t.Fatalf("%q %+v: cut at %d: %s, whole %s", in, lim, c, r, whole)
				}
			}
		}
	}
}

// feedResponseCuts feeds in to a fresh ResponseParser with limits lim, cut at the given offsets
// (ascending), and renders the result (responseResult), with n counted from the start of in.
func feedResponseCuts(lim Limits, in string, cuts ...int) string {
	p := new(ResponseParser)
	p.Init(lim)
	n, prev := 0, 0
	for _, c := range append(cuts, len(in)) {
		for prev < c && !p.Done() { // Feed stops after the head, and may stop after its status line
			k, err := p.Feed([]byte(in[prev:c]))
			n += k
			if err != nil {
				return responseResult(p, n, err)
			}
			if k == 0 {
				break
			}
			prev += k
		}
		prev = c
	}
	return responseResult(p, n, nil)
}

// responseResult renders everything a ResponseParser decides about a response head.
func responseResult(p *ResponseParser, n int, err error) string {
	if err != nil {
		return fmt.Sprintf("n %d err %v", n, err)
	}
	f, length, tunnel, berr := p.Body(false, false)
	s := fmt.Sprintf("n %d done %v status %d minor %d body %v %d %v %v", n, p.Done(), p.Status(), p.Minor(), f, length, tunnel, berr)
	for i := 0; i < p.NumFields(); i++ {
		name, value := p.Field(i)
		s += fmt.Sprintf(" %q:%q", name, value)
	}
	return s
}

// TestResponseFastPathSplits feeds response heads whole and cut at every offset, under line
// limits around the status line's length, and wants the same result each time.
func TestResponseFastPathSplits(t *testing.T) {
	heads := []string{
		benchResponse,
		"HTTP/1.0 404 \r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200\r\n\r\n",
		"HTTP/1.1 599 \t\xffx\r\nA:\r\n\r\n",
		"HTTP/1.1 600 OK\r\n\r\n",
		"HTTP/1.1 099 OK\r\n\r\n",
		"HTTP/1.1 1000 OK\r\n\r\n",
		"HTTP/1.1 20x OK\r\n\r\n",
		"HTTP/1.1 200 O\x7fK\r\n\r\n",
		"HTTP/1.1 200 OK\r\r\n",
		"HTTP/1.1 200 OK\n\r\n",
		"HTTP/1.1  200 OK\r\n\r\n",
		"HTTP/1.2 200 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX: a\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		// Body's framing fields, summed up by the fast path or found by Body's loop.
		"HTTP/1.1 200 OK\r\ncontent-LENGTH: 0012 \r\nX: 1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\nContent-Length: 2\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length:\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775807\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 999999999999999999\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 0000000000000000001\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775808\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: CHUNKED\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
		"HTTP/1.1 204 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\nDate: x\r\nHost: a\r\nHost: b\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n",
	}
	feed := feedResponseCuts
	for _, in := range heads {
		line := strings.Index(in, "\r")
		for _, lim := range []Limits{{}, {MaxRequestLineBytes: line}, {MaxRequestLineBytes: line + 1}, {MaxRequestLineBytes: line + 2}} {
			whole := feed(lim, in)
			for c := 1; c < len(in); c++ {
				if r := feed(lim, in, c); r != whole {
					t.Fatalf("%q %+v: cut at %d: %s, whole %s", in, lim, c, r, whole)
				}
			}
			cuts := make([]int, 0, len(in))
			for c := 1; c < len(in); c++ {
				cuts = append(cuts, c)
			}
			if r := feed(lim, in, cuts...); r != whole {
				t.Fatalf("%q %+v: byte by byte: %s, whole %s", in, lim, r, whole)
			}
		}
	}
}

// FuzzResponseHead checks that a response head parses the same whole, cut in two and byte by
// byte (the last never takes the fast path).
func FuzzResponseHead(f *testing.F) {
	for i, s := range []string{benchResponse, "HTTP/1.0 404 \r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 200\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 599 \t\xffx\r\nA:\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"} {
		f.Add([]byte(s), uint16(i*5), uint8(i))
	}
	f.Fuzz(func(t *testing.T, data []byte, cut uint16, line uint8) {
		in := string(data)
		lim := Limits{MaxRequestLineBytes: int(line), MaxHeaderBytes: 512, MaxHeaderCount: 8}
		feed := func(cuts ...int) string { return feedResponseCuts(lim, in, cuts...) }
		whole := feed()
		if len(in) > 1 {
			c := 1 + int(cut)%(len(in)-1)
			if r := feed(c); r != whole {
				t.Fatalf("cut at %d: %s, whole %s", c, r, whole)
			}
		}
		if len(in) < 300 {
			cuts := make([]int, 0, len(in))
			for c := 1; c < len(in); c++ {
				cuts = append(cuts, c)
			}
			if r := feed(cuts...); r != whole {
				t.Fatalf("byte by byte: %s, whole %s", r, whole)
			}
		}
	})
}
