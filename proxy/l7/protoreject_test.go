package l7

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
)

// TestProtocolRejectClosesConnection: a request Envoy's HTTP/1 codec refuses itself (a codec
// error) is answered with its 4xx, "Connection: close", and the connection closes after the
// reply, so a request pipelined behind it gets no answer; a local reply that is not a codec
// error (no route: 404) keeps the connection for the next request.
func TestProtocolRejectClosesConnection(t *testing.T) {
	rig := newRawRig(t, false, func(hcm *hcmv3.HttpConnectionManager) {
		hcm.CommonHttpProtocolOptions = &corev3.HttpProtocolOptions{
			HeadersWithUnderscoresAction: corev3.HttpProtocolOptions_REJECT_REQUEST,
		}
	})
	next := "GET /next HTTP/1.1\r\nHost: svc\r\n\r\n"
	for _, c := range []struct {
		name, req string
		status    int
		details   string
	}{
		{"connection field of ten tokens", "GET /x HTTP/1.1\r\nHost: svc\r\nConnection: a1, a2, a3, a4, a5, a6, a7, a8, a9, a10\r\n\r\n",
			400, "http1.connection_header_rejected"},
		{"nominated x-forwarded-for", "GET /x HTTP/1.1\r\nHost: svc\r\nConnection: x-forwarded-for\r\n\r\n",
			400, "http1.connection_header_rejected"},
		{"underscore under REJECT_REQUEST", "GET /x HTTP/1.1\r\nHost: svc\r\nx_y: 1\r\n\r\n",
			400, "unexpected_underscore"},
	} {
		before := rig.hits.Load()
		conn, br := dialRaw(t, rig.p.addr, c.req+next)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		info := rig.p.nextInfo(t)
		if resp.StatusCode != c.status || !resp.Close || info.Details != c.details ||
			info.Flags&FlagDownstreamProtocolError == 0 {
			t.Errorf("%s: status %d, close %v, details %q, flags %v; want %d, close, %q, DPE",
				c.name, resp.StatusCode, resp.Close, info.Details, info.Flags, c.status, c.details)
		}
		if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
			t.Errorf("%s: after the reply, read: %v; want EOF (the connection closed, the pipelined request unanswered)", c.name, err)
		}
		if n := rig.hits.Load() - before; n != 0 {
			t.Errorf("%s: %d upstream requests, want none", c.name, n)
		}
		conn.Close()
	}

	// Not a codec error: the connection stays for the pipelined request.
	noRoute := newRawRig(t, false, func(hcm *hcmv3.HttpConnectionManager) {
		hcm.GetRouteConfig().GetVirtualHosts()[0].Domains = []string{"other"}
	})
	conn, br := dialRaw(t, noRoute.p.addr, "GET /x HTTP/1.1\r\nHost: svc\r\n\r\n"+next)
	defer conn.Close()
	for i := range 2 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("no route, response %d: %v", i+1, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || resp.Close {
			t.Errorf("no route, response %d: status %d, close %v; want 404 keeping the connection", i+1, resp.StatusCode, resp.Close)
		}
	}
}

// dialRaw connects to addr and writes req; the connection has a deadline, so that no read
// waits for ever.
func dialRaw(t *testing.T, addr, req string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	return c, bufio.NewReader(c)
}
