package h1

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/strait-mesh/strait/proxy/http1"
)

// Review (full-review4), found while reviewing readHead's onWait (pre-existing, not from the
// reviewed commits): RFC 9112 section 2.2 says a server SHOULD ignore at least one empty line
// (CRLF) received before the request-line, and Envoy's codecs do (http-parser and llhttp skip
// CR and LF in their start state; Balsa skips leading whitespace). Some clients send a CRLF
// after a POST body. http1.Parser refused any CR or LF before the method (HPE_INVALID_METHOD),
// so such a keep-alive connection was closed with a protocol error (fixed: the parser skips
// them, and they count toward the head's size).

// TestReview4ParserSkipsLeadingCRLF: a request head after one or two empty lines parses.
func TestReview4ParserSkipsLeadingCRLF(t *testing.T) {
	for _, in := range []string{"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"} {
		var p http1.Parser
		p.Init(http1.Limits{}, true)
		if n, err := p.Feed([]byte(in)); err != nil || !p.Done() || n != len(in) {
			t.Errorf("%q: Feed = %d, %v (done %v), want the whole head parsed", in, n, err, p.Done())
		}
	}
}

// TestReview4StrayCRLFAfterBody: a CRLF after a POST body, then the next request on the same
// connection: both requests are answered.
func TestReview4StrayCRLFAfterBody(t *testing.T) {
	s, _, served := trickleServer()
	addr := listen(t, func(c net.Conn) { s.ServeConn(c) })
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	get(t, c, br)
	io.WriteString(c, "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("the request after a stray CRLF: %v (%d served)", err, served.Load())
	}
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 200 {
		t.Errorf("the request after a stray CRLF: status %d, want 200", resp.StatusCode)
	}
}
