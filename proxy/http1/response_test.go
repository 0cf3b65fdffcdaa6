package http1

import "testing"

// feedResponse feeds in to a fresh ResponseParser, whole or byte by byte.
func feedResponse(in string, bytewise bool) (*ResponseParser, int, error) {
	p := new(ResponseParser)
	p.Init(Limits{MaxHeaderBytes: 1024, MaxHeaderCount: 4})
	n := 0
	step := len(in)
	if bytewise {
		step = 1
	}
	for n < len(in) && !p.Done() {
		k, err := p.Feed([]byte(in[n:min(n+step, len(in))]))
		n += k
		if err != nil {
			return p, n, err
		}
	}
	return p, n, nil
}

func TestResponseParser(t *testing.T) {
	cases := []struct {
		in            string
		head, connect bool
		err           error
		status        int
		framing       Framing
		length        int64
		tunnel        bool
	}{
		{in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", status: 200, framing: FramingLength, length: 5},
		{in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", status: 200, framing: FramingChunked, length: -1},
		{in: "HTTP/1.1 200\r\n\r\n", status: 200, framing: FramingUntilClose, length: -1},
		{in: "HTTP/1.0 404 \r\nContent-Length: 0\r\n\r\n", status: 404, framing: FramingNone},
		{in: "HTTP/1.1 204 No Content\r\n\r\n", status: 204, framing: FramingNone, length: -1},
		{in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", head: true, status: 200, framing: FramingNone, length: 5},
		{in: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", status: 101, tunnel: true},
		{in: "HTTP/1.1 200 Connection established\r\n\r\n", connect: true, status: 200, tunnel: true},
		{in: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", err: ErrDuplicateLength},
		{in: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", err: ErrLengthAndTE},
		{in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", err: ErrUnsupportedTE},
		{in: "HTTP/1.1 200 OK\r\nContent-Length: 0x1\r\n\r\n", err: ErrInvalidLength},
		{in: "HTTP/1.1 099 OK\r\n\r\n", err: ErrInvalidStatus},
		{in: "HTTP/1.1 600 OK\r\n\r\n", err: ErrInvalidStatus},
		{in: "HTTP/1.1 20 OK\r\n\r\n", err: ErrInvalidStatus},
		{in: "HTTP/1.1 200 O\x01K\r\n\r\n", err: ErrInvalidStatus},
		{in: "HTTP/1.1 200 OK\n\r\n", err: ErrBareLF},
		{in: "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", err: ErrBareCR},
		{in: "HTTP/1.1 200 OK\r\n X: a\r\n\r\n", err: ErrObsFold},
		{in: "HTTP/1.1 200 OK\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\nE: 1\r\n\r\n", err: ErrTooManyHeaders},
		{in: "HTTP/1.1 200 OK\r\nA: " + string(make([]byte, 2000)) + "\r\n\r\n", err: ErrHeaderValue},
		{in: "HTTP/1.1 200 OK\r\nA: " + string(repeat('a', 2000)) + "\r\n\r\n", err: ErrHeadersTooLarge},
		{in: "HTTP/1.1 200 " + string(repeat('a', 2000)) + "\r\n\r\n", err: ErrHeadersTooLarge},
		{in: "ICY 200 OK\r\n\r\n", err: ErrInvalidVersion},
	}
	for _, tc := range cases {
		for _, bytewise := range []bool{false, true} {
			p, _, err := feedResponse(tc.in, bytewise)
			if err == nil && !p.Done() {
				t.Fatalf("%.40q: not done", tc.in)
			}
			var f Framing
			var length int64
			var tunnel bool
			if err == nil {
				f, length, tunnel, err = p.Body(tc.head, tc.connect)
			}
			if err != tc.err {
				t.Errorf("%.40q (bytewise %v): %v, want %v", tc.in, bytewise, err, tc.err)
				continue
			}
			if err == nil && (p.Status() != tc.status || f != tc.framing || length != tc.length || tunnel != tc.tunnel) {
				t.Errorf("%.40q: %d %v %d %v, want %d %v %d %v", tc.in, p.Status(), f, length, tunnel, tc.status, tc.framing, tc.length, tc.tunnel)
			}
		}
	}
}

func repeat(c byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = c
	}
	return b
}
