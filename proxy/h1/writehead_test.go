package h1

import (
	"io"
	"net"
	"strings"
	"testing"

	"github.com/strait-mesh/strait/proxy/http1"
	"github.com/strait-mesh/strait/proxy/httpmsg"
)

// TestClientWriteHeadLineLengths: the request line and host field are written whole whether
// they fit the write buffer (appends in place) or not (writeLongLine), at and around
// the buffer's capacity, and the fields follow them.
func TestClientWriteHeadLineLengths(t *testing.T) {
	const auth = "example.com"
	fixed := len("POST ") + len(" HTTP/1.1\r\nhost: ") + len(auth) + len("\r\n")
	for _, lineLen := range []int{fixed + 1, bufSize - 1, bufSize, bufSize + 1, 2*bufSize + 7} {
		path := "/" + strings.Repeat("p", lineLen-fixed-1)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		ln.Close()
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan string, 1)
		go func() {
			b, _ := io.ReadAll(s)
			got <- string(b)
		}()
		cc := newClientConn(nil, c, http1.Limits{})
		var req httpmsg.Request
		req.Reset()
		req.Method = "POST"
		req.SetTargetString(auth, path)
		req.Header.Add("x-a", "b")
		req.ContentLength = 3
		if _, err := cc.writeHead(&req); err != nil {
			t.Fatal(err)
		}
		if err := cc.wr.flush(); err != nil {
			t.Fatal(err)
		}
		c.Close()
		head := <-got
		s.Close()
		want := "POST " + path + " HTTP/1.1\r\nhost: " + auth + "\r\n"
		if !strings.HasPrefix(head, want) || !strings.Contains(head[len(want):], "x-a: b\r\n") ||
			!strings.HasSuffix(head, "\r\n\r\n") {
			t.Errorf("line of %d bytes: head %.80q...%q", lineLen, head, head[max(0, len(head)-60):])
		}
	}
}
