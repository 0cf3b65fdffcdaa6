package l7

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
)

// TestReviewConnectionNominatesFraming: a client nominating its framing fields (Content-Length,
// Transfer-Encoding) or Host in Connection, which the entry handling now removes before
// anything else reads the header, still gets its body to the upstream whole and framed as
// received, and the request routed by its authority; the next request on the connection
// is not mistaken for body bytes.
func TestReviewConnectionNominatesFraming(t *testing.T) {
	rig := newRawRig(t, false, func(h *hcmv3.HttpConnectionManager) { h.UseRemoteAddress = wrapperspb.Bool(false) })
	for _, c := range []struct{ name, raw string }{
		{"content-length", "POST /x HTTP/1.1\r\nHost: svc\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\nhello"},
		{"transfer-encoding", "POST /x HTTP/1.1\r\nHost: svc\r\nConnection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
		{"host", "POST /x HTTP/1.1\r\nHost: svc\r\nConnection: host\r\nContent-Length: 5\r\n\r\nhello"},
	} {
		// Two requests on one connection: the second must come out as a request of its own.
		raw := c.raw + "GET /second HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n"
		first, second := reviewTwo(t, rig.p.addr, raw)
		<-rig.p.infos
		if first.Body != "hello" || first.Method != "POST" {
			t.Errorf("%s: upstream got %s with body %q (fields %v), want the POST with hello", c.name, first.Method, first.Body, first.Header)
		}
		if second.URI != "/second" {
			t.Errorf("%s: the second request reached the upstream as %q", c.name, second.URI)
		}
		<-rig.p.infos
	}
}

// reviewTwo writes raw (two requests) on one connection and returns what the echoing
// upstream saw for each (zero when a response is not a 200).
func reviewTwo(t *testing.T, addr, raw string) (first, second seen) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for _, out := range []*seen{&first, &second} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("reading a response: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("status %d (%q)", resp.StatusCode, b)
			continue
		}
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("decoding %q: %v", b, err)
		}
	}
	return first, second
}
