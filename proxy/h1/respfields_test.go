package h1

import (
	"context"
	"io"
	"net"
	"testing"

	"github.com/strait-mesh/strait/proxy/http1"
	"github.com/strait-mesh/strait/proxy/httpmsg"
)

// TestConnResponseFields: Conn.ResponseFields reports the Transfer-Encoding and Trailer fields
// of the last response head (any case), and the fields noted on the way (Connection) still
// decide the connection's reuse.
func TestConnResponseFields(t *testing.T) {
	cases := []struct {
		resp        string
		te, trailer bool
		reusable    bool
	}{
		{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Trailer: 1\r\nTrailers: 1\r\n\r\nok", false, false, true},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", true, false, true},
		{"HTTP/1.1 200 OK\r\ntrailer: grpc-status\r\nTRANSFER-ENCODING: chunked\r\n\r\n2\r\nok\r\n0\r\ngrpc-status: 0\r\n\r\n", true, true, true},
		{"HTTP/1.1 200 OK\r\nTrailer: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", false, true, false},
		{"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok", false, false, true},
		{"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", false, false, false},
		// An interim response's fields are not the final response's.
		{"HTTP/1.1 103 Early Hints\r\nTrailer: x\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false, false, true},
	}
	for _, tc := range cases {
		addr := rawServer(t, tc.resp, "")
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		var reusable []bool
		c := NewConn(nc, http1.Limits{}, func(r bool) { reusable = append(reusable, r) })
		var resp httpmsg.Response
		if err := c.RoundTrip(context.Background(), newRequest("GET", "/", "", 0), &resp); err != nil {
			t.Fatalf("%q: %v", tc.resp, err)
		}
		te, trailer := c.ResponseFields()
		if te != tc.te || trailer != tc.trailer {
			t.Errorf("%q: ResponseFields %v, %v; want %v, %v", tc.resp, te, trailer, tc.te, tc.trailer)
		}
		if b, err := io.ReadAll(resp.Body); err != nil || string(b) != "ok" {
			t.Errorf("%q: body %q, %v", tc.resp, b, err)
		}
		resp.Body.Close()
		if len(reusable) != 1 || reusable[0] != tc.reusable {
			t.Errorf("%q: exchange ended reusable %v, want %v", tc.resp, reusable, tc.reusable)
		}
		c.Close()
	}
}
