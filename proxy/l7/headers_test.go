package l7

import (
	"bufio"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
)

// serveOne sends req over an in-memory connection served by h with the given ConnInfo (so the
// downstream address can be an external one) and returns the response.
func serveOne(t *testing.T, h *Handler, info ConnInfo, req *http.Request) *http.Response {
	t.Helper()
	client, server := net.Pipe()
	go h.ServeConn(server, info)
	t.Cleanup(func() { client.Close() })
	client.SetDeadline(time.Now().Add(10 * time.Second))
	go req.Write(client)
	resp, err := http.ReadResponse(bufio.NewReader(client), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestForwardedHeadersAndSanitizing(t *testing.T) {
	up := startUpstream(t, echoHandler(), false)
	env := &testEnv{clusters: map[string]Upstream{"backend": newTestUpstream(up, false)}}
	rc := oneVhost(fwdRoute("r", pfx("/"), toCluster("backend")))
	rc.VirtualHosts[0].Domains = []string{"svc"}
	rc.VirtualHosts[0].RequestHeadersToAdd = []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{
		Key: "x-client", Value: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"}}}
	external := ConnInfo{Source: netip.MustParseAddrPort("198.18.0.5:40000"), OriginalDst: netip.MustParseAddrPort("127.0.0.1:8080")}
	newReq := func() *http.Request {
		req, _ := http.NewRequest("GET", "http://svc:8080/x", nil)
		req.Header.Set("X-Forwarded-For", "9.9.9.9, 8.8.8.8")
		req.Header.Set("X-Request-Id", "client-chosen")
		req.Header.Set("X-Envoy-Retry-On", "5xx")
		req.Header.Set("X-Envoy-Internal", "true")
		return req
	}
	mk := func(mut func(*hcmv3.HttpConnectionManager)) *Handler {
		hcm := inlineHCM(rc)
		hcm.StripPortMode = &hcmv3.HttpConnectionManager_StripAnyHostPort{StripAnyHostPort: true}
		mut(hcm)
		h, err := New(hcm, env, Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		return h
	}

	// An edge proxy (use_remote_address) facing an external client.
	h := mk(func(hcm *hcmv3.HttpConnectionManager) { hcm.UseRemoteAddress = wrapperspb.Bool(true) })
	resp := serveOne(t, h, external, newReq())
	if resp.StatusCode != 200 {
		t.Fatalf("status %d (strip_any_host_port should match domain svc)", resp.StatusCode)
	}
	got := decodeSeen(t, resp).Header
	want := map[string]string{
		"X-Forwarded-For":          "9.9.9.9, 8.8.8.8,198.18.0.5",
		"X-Envoy-External-Address": "198.18.0.5",
		"X-Envoy-Internal":         "",
		"X-Envoy-Retry-On":         "",
		"X-Client":                 "198.18.0.5",
		"X-Forwarded-Proto":        "http",
	}
	for k, v := range want {
		if got.Get(k) != v {
			t.Errorf("edge: %s = %q, want %q", k, got.Get(k), v)
		}
	}
	if id := got.Get("X-Request-Id"); id == "client-chosen" || len(id) != 36 {
		t.Errorf("edge: external x-request-id kept: %q", id)
	}

	// preserve_external_request_id keeps the client's id.
	h = mk(func(hcm *hcmv3.HttpConnectionManager) {
		hcm.UseRemoteAddress = wrapperspb.Bool(true)
		hcm.PreserveExternalRequestId = true
	})
	if id := decodeSeen(t, serveOne(t, h, external, newReq())).Header.Get("X-Request-Id"); id != "client-chosen" {
		t.Errorf("preserve_external_request_id: %q", id)
	}

	// A sidecar (no use_remote_address) trusting one hop: the client is the second address
	// from the right, nothing is appended and the client's x-request-id is kept. The request is
	// not internal (XFF has more than one address, and no internal_address_config), so its
	// x-envoy-* control headers are removed, as Envoy does.
	h = mk(func(hcm *hcmv3.HttpConnectionManager) { hcm.XffNumTrustedHops = 1 })
	got = decodeSeen(t, serveOne(t, h, external, newReq())).Header
	if got.Get("X-Forwarded-For") != "9.9.9.9, 8.8.8.8" || got.Get("X-Client") != "9.9.9.9" ||
		got.Get("X-Request-Id") != "client-chosen" || got.Get("X-Envoy-Internal") != "" || got.Get("X-Envoy-Retry-On") != "" {
		t.Errorf("sidecar headers %v", got)
	}
}
