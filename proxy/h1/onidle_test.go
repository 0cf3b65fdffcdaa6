package h1

import (
	"strings"
	"testing"

	"github.com/strait-mesh/strait/proxy/httpmsg"
)

// TestOnIdleAfterFlush checks when OnIdle runs: after each response has been written to the
// connection in full (a drain may close the connection then without cutting a response off),
// never while a request's bytes are buffered (pipelined), not before the first request, and
// not when the connection closes after its response.
func TestOnIdleAfterFlush(t *testing.T) {
	const body = "the whole answer"
	var c *memConn
	var seen []string // the responses complete on the wire at each OnIdle call
	s := &Server{
		Handler: HandlerFunc(func(w *ResponseWriter, r *httpmsg.Request) {
			w.Write([]byte(body)) // held (pend) until after the handler returns
		}),
		OnIdle: func() {
			seen = append(seen, c.output())
		},
	}
	req := "GET / HTTP/1.1\r\nHost: h\r\n\r\n"
	// Two requests in separate reads, then two pipelined in one read, then a last one asking
	// to close.
	c = newMemConn(req, req, req+req, "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
	if err := s.ServeConn(c); err != nil {
		t.Fatal(err)
	}
	// After the 1st, the 2nd and the 4th response; not after the 3rd (the 4th request was
	// buffered) nor the 5th (the connection closes).
	if len(seen) != 3 {
		t.Fatalf("OnIdle called %d times, want 3", len(seen))
	}
	for i, want := range []int{1, 2, 4} {
		if got := strings.Count(seen[i], body); got != want {
			t.Errorf("OnIdle call %d: %d whole responses written before it, want %d: %q", i+1, got, want, seen[i])
		}
		if !strings.HasSuffix(seen[i], body) {
			t.Errorf("OnIdle call %d: the last response is not written in full: %q", i+1, seen[i])
		}
	}
	if n := len(readResponses(t, c.output())); n != 5 {
		t.Errorf("%d responses, want 5", n)
	}
}
