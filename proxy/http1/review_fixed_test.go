package http1

import "testing"

// Defects found in review that predate the parser's fast path, each fixed.

// TestReviewDefectStatusLineLimitOffByOne: Limits.MaxRequestLineBytes bounds a request line
// without CRLF (a line of exactly the limit is accepted), and ResponseParser's doc says the
// status line is bounded by the same field; but a status line of exactly the limit is refused
// (431), because the CR was counted against it.
func TestReviewDefectStatusLineLimitOffByOne(t *testing.T) {
	const line = "HTTP/1.1 200 OK" // 15 bytes without CRLF
	req, _ := feedPieces(Limits{MaxRequestLineBytes: len("GET / HTTP/1.1")}, "GET / HTTP/1.1\r\n\r\n")
	if req.err != nil || !req.done {
		t.Fatalf("request line of exactly the limit: %+v", req)
	}
	p := new(ResponseParser)
	p.Init(Limits{MaxRequestLineBytes: len(line)})
	if _, err := p.Feed([]byte(line + "\r\n\r\n")); err != nil || !p.Done() {
		t.Fatalf("status line of exactly the limit: %v", err)
	}
}
