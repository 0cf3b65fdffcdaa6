package h1

import (
	"bufio"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strait-mesh/strait/proxy/httpmsg"
)

// deadlineConn is a memConn that records the read deadlines set on it.
type deadlineConn struct {
	*memConn
	mu  sync.Mutex
	set []time.Time
}

func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.set = append(c.set, t)
	c.mu.Unlock()
	return nil
}

// TestHeadDeadlineOnlyWhenSplit: a head that arrives whole with its first read gets no
// deadline of its own (the idle deadline set before the wait, and its clearing, are all); a
// head split over reads gets HeadersTimeout before its second read.
func TestHeadDeadlineOnlyWhenSplit(t *testing.T) {
	for _, tc := range []struct {
		name   string
		chunks []string
		// want: the read deadlines, "idle", "head" or "none", in order
		want string
	}{
		{"whole", []string{"GET / HTTP/1.1\r\nHost: a\r\n\r\n"}, "idle none idle none"},
		{"split", []string{"GET / HTTP/1.1\r\nHo", "st: a\r\n\r\n"}, "idle head none idle none"},
		{"split three", []string{"GET / HT", "TP/1.1\r\nHo", "st: a\r\n\r\n"}, "idle head none idle none"},
		{"two whole", []string{"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n", "GET /2 HTTP/1.1\r\nHost: a\r\n\r\n"},
			"idle none idle none idle none"},
		// The second head was read with the first: no idle wait, and it needs no read.
		{"pipelined", []string{"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"},
			"idle none none idle none"},
		// The second head's start came with the first: its next read is bounded at once.
		{"pipelined split", []string{"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HT", "TP/1.1\r\nHost: a\r\n\r\n"},
			"idle none head none idle none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requests := strings.Count(strings.Join(tc.chunks, ""), "GET")
			c := &deadlineConn{memConn: newMemConn(tc.chunks...)} // consumes tc.chunks
			s := &Server{Handler: echo, IdleTimeout: time.Hour, HeadersTimeout: time.Minute}
			start := time.Now()
			if err := s.ServeConn(c); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, d := range c.set {
				switch {
				case d.IsZero():
					got = append(got, "none")
				case d.Sub(start) > 30*time.Minute:
					got = append(got, "idle")
				default:
					got = append(got, "head")
				}
			}
			if g := strings.Join(got, " "); g != tc.want {
				t.Errorf("read deadlines: %s, want %s", g, tc.want)
			}
			if n := strings.Count(c.output(), "HTTP/1.1 200 "); n != requests {
				t.Errorf("%d responses: %q", n, c.output())
			}
		})
	}
}

// trickleHead sends one keep-alive request on c, then a head one byte at a time, a byte every
// 50 ms (about 3 s in all), and checks that HeadersTimeout (200 ms on the server) ended the
// connection before the head was complete, reported as a head timeout, and that the handler
// never saw that request.
func trickleHead(t *testing.T, c net.Conn, done <-chan error, heads *atomic.Int32, served *atomic.Int32) {
	t.Helper()
	br := bufio.NewReader(c)
	get(t, c, br)
	head := "GET /trickled HTTP/1.1\r\nHost: a\r\nX-Pad: " + strings.Repeat("p", 16) + "\r\n\r\n"
	ended := false
	for i := 0; i < len(head) && !ended; i++ {
		if _, err := io.WriteString(c, head[i:i+1]); err != nil {
			break
		}
		select {
		case <-done:
			ended = true
		case <-time.After(50 * time.Millisecond):
		}
	}
	if !ended {
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatal("request_headers_timeout did not end the connection")
		}
	}
	if heads.Load() != 1 {
		t.Errorf("head timeouts reported: %d, want 1", heads.Load())
	}
	if served.Load() != 1 {
		t.Errorf("requests served: %d, want 1 (the trickled head must not reach the handler)", served.Load())
	}
}

// trickleServer is a Server with a 200 ms HeadersTimeout counting its head timeouts and the
// requests it serves.
func trickleServer() (*Server, *atomic.Int32, *atomic.Int32) {
	var heads, served atomic.Int32
	s := &Server{
		Handler: HandlerFunc(func(w *ResponseWriter, r *httpmsg.Request) {
			served.Add(1)
			okHandler().ServeHTTP1(w, r)
		}),
		IdleTimeout:    time.Hour,
		HeadersTimeout: 200 * time.Millisecond,
		OnTimeout: func(head bool) {
			if head {
				heads.Add(1)
			}
		},
	}
	return s, &heads, &served
}

// TestHeadTrickledPastTimeout: a head split over many reads, each within the timeout of the
// one before, still ends at HeadersTimeout from its first byte.
func TestHeadTrickledPastTimeout(t *testing.T) {
	s, heads, served := trickleServer()
	done := make(chan error, 1)
	addr := listen(t, func(c net.Conn) { done <- s.ServeConn(c) })
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	trickleHead(t, c, done, heads, served)
}
