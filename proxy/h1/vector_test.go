package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strait-mesh/strait/proxy/httpmsg"
)

// vectorConn is a connection with a vectored write that counts its calls (and writes a and b
// as one write).
type vectorConn struct {
	net.Conn
	calls *atomic.Int32
}

func (c vectorConn) WriteVector(a, b []byte) (int, error) {
	c.calls.Add(1)
	return c.Conn.Write(append(append([]byte{}, a...), b...))
}

// TestServerVectoredBody: a response body write of vectorMin bytes or more goes out with the
// head in one vectored write; smaller and chunked ones through the buffer; the bytes on the
// wire are the same.
func TestServerVectoredBody(t *testing.T) {
	body := func(n int) []byte { return bytes.Repeat([]byte("b"), n) }
	s := &Server{Handler: HandlerFunc(func(w *ResponseWriter, r *httpmsg.Request) {
		n, _ := strconv.Atoi(r.PathString()[2:])
		switch r.PathString()[1] {
		case 'l': // Content-Length, one write
			w.Header().Set("Content-Length", strconv.Itoa(n))
			w.Write(body(n))
		case 'h': // held: the codec counts the length
			w.Write(body(n))
		case 'm': // Content-Length, three writes
			w.Header().Set("Content-Length", strconv.Itoa(3*n))
			for i := 0; i < 3; i++ {
				w.Write(body(n))
			}
		case 'c': // chunked
			w.Flush()
			w.Write(body(n))
		}
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var calls atomic.Int32
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.ServeConn(vectorConn{Conn: c, calls: &calls})
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for _, tc := range []struct {
		path      string
		size      int
		vectored  int32
		wantChunk bool
	}{
		{"/l1024", 1024, 1, false},
		{"/l100", 100, 0, false},
		{"/h1024", 1024, 1, false},
		{"/h100", 100, 0, false},
		{"/m600", 1800, 3, false},
		{"/c1024", 1024, 0, true},
	} {
		calls.Store(0)
		if _, err := io.WriteString(c, "GET "+tc.path+" HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.path, err)
		}
		got, err := io.ReadAll(resp.Body)
		if err != nil || !bytes.Equal(got, body(tc.size)) {
			t.Fatalf("%s: body of %d bytes, %v", tc.path, len(got), err)
		}
		if chunked := len(resp.TransferEncoding) > 0; chunked != tc.wantChunk {
			t.Errorf("%s: chunked %v", tc.path, chunked)
		}
		if n := calls.Load(); n != tc.vectored {
			t.Errorf("%s: %d vectored writes, want %d", tc.path, n, tc.vectored)
		}
	}
}

// TestClientVectoredBody: an in-memory request body of vectorMin bytes or more goes out with
// the head in one vectored write, its Content-Length bytes only; a short one fails as before,
// and other bodies go through the buffer.
func TestClientVectoredBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}))
	defer srv.Close()
	var calls atomic.Int32
	p := &Pool{Dial: func(ctx context.Context) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", srv.Listener.Addr().String())
		if err != nil {
			return nil, err
		}
		return vectorConn{Conn: c, calls: &calls}, nil
	}}
	defer p.Close()
	big := bytes.Repeat([]byte("0123456789abcdef"), 128) // 2 KiB

	calls.Store(0)
	req := newRequest("POST", "/", "", 1024)
	bb := httpmsg.NewBytesBody(big)
	req.Body = bb
	if _, got := roundTrip(t, p, req); got != string(big[:1024]) || calls.Load() != 1 {
		t.Errorf("in-memory body: echoed %d bytes, %d vectored writes", len(got), calls.Load())
	}
	if bb.Len() != 1024 {
		t.Errorf("the body has %d bytes left, want the 1024 past its Content-Length", bb.Len())
	}

	calls.Store(0)
	req = newRequest("POST", "/", "", 100)
	req.Body = httpmsg.NewBytesBody(big[:100])
	if _, got := roundTrip(t, p, req); got != string(big[:100]) || calls.Load() != 0 {
		t.Errorf("small in-memory body: echoed %d bytes, %d vectored writes", len(got), calls.Load())
	}

	calls.Store(0)
	req = newRequest("POST", "/", string(big[:1024]), 1024) // not in memory for the codec
	if _, got := roundTrip(t, p, req); got != string(big[:1024]) || calls.Load() != 0 {
		t.Errorf("streamed body: echoed %d bytes, %d vectored writes", len(got), calls.Load())
	}

	req = newRequest("POST", "/", "", 1024)
	req.Body = httpmsg.NewBytesBody(big[:600])
	resp := new(httpmsg.Response)
	if err := p.RoundTrip(context.Background(), req, resp); !errors.Is(err, ErrContentLength) {
		t.Errorf("body shorter than its Content-Length: %v", err)
	}
}
