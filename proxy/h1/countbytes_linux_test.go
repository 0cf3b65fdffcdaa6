package h1

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/strait-mesh/strait/proxy/http1"
	"github.com/strait-mesh/strait/proxy/httpmsg"
	"github.com/strait-mesh/strait/proxy/stats"
)

// CountBytes takes only a DirectConn socket: over another connection it reports false and
// the exchanges go through the connection given to NewConn; over one, they go through the
// socket, whose counters then hold exactly the exchange's bytes.
func TestConnCountBytes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const answer = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				br := bufio.NewReader(nc)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					io.WriteString(nc, answer)
				}
			}()
		}
	}()
	var rx, tx stats.Counter
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	if NewConn(p1, http1.Limits{}, func(bool) {}).CountBytes(p2, &rx, &tx) {
		t.Error("CountBytes took a pipe")
	}
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	dc := DirectConn(nc)
	c := NewConn(struct{ net.Conn }{dc}, http1.Limits{}, func(bool) {}) // a wrapper over the socket
	if !c.CountBytes(dc, &rx, &tx) {
		t.Fatal("CountBytes refused a DirectConn socket")
	}
	defer c.Close()
	var wire int
	for i := 0; i < 3; i++ {
		var req httpmsg.Request
		req.Method = "POST"
		req.SetAuthorityString("count.test")
		req.SetPathString("/p")
		req.ContentLength, req.Body = 700, httpmsg.NewBytesBody(make([]byte, 700))
		var resp httpmsg.Response
		if err := c.RoundTrip(context.Background(), &req, &resp); err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "hello" {
			t.Fatalf("body %q", b)
		}
		wire += len("POST /p HTTP/1.1\r\nhost: count.test\r\ncontent-length: 700\r\n\r\n") + 700
		if rx.Value() != uint64(len(answer)*(i+1)) || tx.Value() != uint64(wire) {
			t.Errorf("exchange %d: rx %d tx %d, want %d and %d", i, rx.Value(), tx.Value(), len(answer)*(i+1), wire)
		}
	}
}
