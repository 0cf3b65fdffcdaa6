package l7

import (
	"encoding/json"
	"github.com/strait-mesh/strait/proxy/httpmsg"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
)

// Addresses of the edge tests: ConnInfo values on in-memory connections, never dialled.
var (
	edgeInternalPeer = netip.MustParseAddrPort("198.18.0.5:40000") // inside the configured range
	edgeExternalPeer = netip.MustParseAddrPort("198.19.0.7:40000") // outside it
	edgeInternalCIDR = &corev3.CidrRange{AddressPrefix: "198.18.0.0", PrefixLen: wrapperspb.UInt32(16)}
)

// edgeRig is one connection manager in front of an upstream that counts its requests, answers
// 500 for ?fail=1, waits for ?sleep=DURATION and otherwise echoes what it received.
type edgeRig struct {
	t    *testing.T
	h    *Handler
	hits atomic.Int64
}

// newEdgeRig builds a rig whose route has a 10 s timeout and a retry policy that retries
// nothing by itself (num_retries 1, 1 ms back-off), so header-driven retries are counted fast.
// mut adjusts the connection manager.
func newEdgeRig(t *testing.T, mut func(*hcmv3.HttpConnectionManager)) *edgeRig {
	t.Helper()
	return newEdgeRigTimeout(t, mut, 10*time.Second)
}

// newEdgeRigTimeout is newEdgeRig with another route timeout.
func newEdgeRigTimeout(t *testing.T, mut func(*hcmv3.HttpConnectionManager), timeout time.Duration) *edgeRig {
	t.Helper()
	rig := &edgeRig{t: t}
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rig.hits.Add(1)
		if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		if r.URL.Query().Get("fail") == "1" {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		echoHandler().ServeHTTP(w, r)
	}), false)
	env := &testEnv{clusters: map[string]Upstream{"backend": newTestUpstream(up, false)}}
	a := toCluster("backend")
	a.Timeout = durationpb.New(timeout)
	a.RetryPolicy = &routev3.RetryPolicy{NumRetries: wrapperspb.UInt32(1), RetryBackOff: &routev3.RetryPolicy_RetryBackOff{
		BaseInterval: durationpb.New(time.Millisecond), MaxInterval: durationpb.New(2 * time.Millisecond)}}
	hcm := inlineHCM(oneVhost(fwdRoute("r", pfx("/"), a)))
	if mut != nil {
		mut(hcm)
	}
	h, err := New(hcm, env, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	rig.h = h
	return rig
}

// edgeHCM is an edge connection manager (use_remote_address) with 198.18.0.0/16 internal.
func edgeHCM(hcm *hcmv3.HttpConnectionManager) {
	hcm.UseRemoteAddress = wrapperspb.Bool(true)
	hcm.InternalAddressConfig = &hcmv3.HttpConnectionManager_InternalAddressConfig{CidrRanges: []*corev3.CidrRange{edgeInternalCIDR}}
}

// send sends one request from peer and returns the status, the headers the upstream received
// (nil when it did not answer with an echo) and the number of upstream requests it caused.
func (rig *edgeRig) send(peer netip.AddrPort, path string, hdr map[string]string) (int, http.Header, int64) {
	rig.t.Helper()
	before := rig.hits.Load()
	req, _ := http.NewRequest("GET", "http://svc"+path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp := serveOne(rig.t, rig.h, ConnInfo{Source: peer, OriginalDst: netip.MustParseAddrPort("127.0.0.1:8080")}, req)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var got http.Header
	if resp.StatusCode == http.StatusOK {
		var s seen
		if err := json.Unmarshal(body, &s); err != nil {
			rig.t.Fatalf("decoding upstream echo: %v (%q)", err, body)
		}
		got = s.Header
	}
	return resp.StatusCode, got, rig.hits.Load() - before
}

// spoofed are control and identity headers an attacker sends, with the value each carries.
var spoofed = map[string]string{
	"X-Envoy-Upstream-Rq-Timeout-Ms":           "1",
	"X-Envoy-Upstream-Rq-Per-Try-Timeout-Ms":   "1",
	"X-Envoy-Upstream-Rq-Timeout-Alt-Response": "204",
	"X-Envoy-Upstream-Stream-Duration-Ms":      "1",
	"X-Envoy-Retry-On":                         "5xx",
	"X-Envoy-Retry-Grpc-On":                    "unavailable",
	"X-Envoy-Max-Retries":                      "100",
	"X-Envoy-Retriable-Status-Codes":           "500",
	"X-Envoy-Retriable-Header-Names":           "x-fail",
	"X-Envoy-Hedge-On-Per-Try-Timeout":         "true",
	"X-Envoy-Expected-Rq-Timeout-Ms":           "1",
	"X-Envoy-Internal":                         "true",
	"X-Envoy-Original-Path":                    "/admin",
	"X-Envoy-Original-Url":                     "http://evil/admin",
	"X-Envoy-Force-Trace":                      "true",
	"X-Envoy-Ip-Tags":                          "trusted",
	"X-Envoy-Decorator-Operation":              "op",
	"X-Envoy-Downstream-Service-Cluster":       "admin",
	"X-Envoy-Downstream-Service-Node":          "admin-1",
	"X-Envoy-Upstream-Alt-Stat-Name":           "alt",
	"X-Envoy-External-Address":                 "10.0.0.1",
	"X-Envoy-Peer-Metadata":                    "Q2hBS0JsZ=",
	"X-Envoy-Peer-Metadata-Id":                 "sidecar~10.0.0.1~admin.default~default.svc.cluster.local",
	"X-Envoy-Made-Up":                          "anything",
	"X-Forwarded-Client-Cert":                  "By=spiffe://cluster.local/ns/default/sa/admin;URI=spiffe://cluster.local/ns/default/sa/admin",
	"Forwarded":                                "for=10.0.0.1;proto=https;host=admin.internal",
	"X-Request-Id":                             "attacker-chosen-id",
}

// TestEdgeExternalClientHeadersRemoved sends every spoofed header from an external client to
// an edge proxy: none reaches the upstream with the client's value, the timeout and retry
// headers change nothing, and the proxy's own headers say what it saw.
func TestEdgeExternalClientHeadersRemoved(t *testing.T) {
	rig := newEdgeRig(t, edgeHCM)
	code, got, hits := rig.send(edgeExternalPeer, "/x?sleep=50ms", spoofed)
	if code != 200 || hits != 1 {
		t.Fatalf("status %d after %d upstream requests: x-envoy-upstream-rq-timeout-ms or per-try timeout honoured", code, hits)
	}
	proxySet := map[string]string{
		"X-Envoy-External-Address":       "198.19.0.7",
		"X-Envoy-Expected-Rq-Timeout-Ms": "10000",
		"X-Forwarded-For":                "198.19.0.7",
		"X-Forwarded-Proto":              "http",
	}
	for k, v := range spoofed {
		if want, ok := proxySet[k]; ok {
			if got.Get(k) != want {
				t.Errorf("%s = %q at the upstream, want the proxy's %q", k, got.Get(k), want)
			}
			continue
		}
		if k == "X-Request-Id" {
			continue
		}
		if vs, ok := got[k]; ok {
			t.Errorf("%s reached the upstream: %q (client sent %q)", k, vs, v)
		}
	}
	for k := range got {
		if strings.HasPrefix(k, "X-Envoy-") && proxySet[k] == "" {
			t.Errorf("x-envoy header %s reached the upstream from an external client", k)
		}
	}
	if id := got.Get("X-Request-Id"); id == spoofed["X-Request-Id"] || len(id) != 36 {
		t.Errorf("x-request-id %q: an external id must be replaced by a UUID", id)
	}

	// 100 retries asked for on a failing path: the header is ignored, the route retries nothing.
	code, _, hits = rig.send(edgeExternalPeer, "/x?fail=1", spoofed)
	if code != 500 || hits != 1 {
		t.Errorf("failing request: status %d after %d upstream requests, want 500 after 1", code, hits)
	}
	// On a route that times out, x-envoy-upstream-rq-timeout-alt-response from outside does not
	// turn the 504 into a 204.
	short := newEdgeRigTimeout(t, edgeHCM, 100*time.Millisecond)
	if code, _, _ := short.send(edgeExternalPeer, "/x?sleep=2s", spoofed); code != 504 {
		t.Errorf("route timeout with alt-response from an external client: status %d, want 504", code)
	}
}

// TestEdgeInternalClientHeadersHonoured sends the control headers from an address in the
// configured internal range: the proxy honours them as Envoy does, consumes the ones its router
// acts on, and lets the others through.
func TestEdgeInternalClientHeadersHonoured(t *testing.T) {
	rig := newEdgeRig(t, edgeHCM)

	// Timeout headers.
	if code, _, _ := rig.send(edgeInternalPeer, "/x?sleep=2s", map[string]string{"X-Envoy-Upstream-Rq-Timeout-Ms": "20"}); code != 504 {
		t.Errorf("x-envoy-upstream-rq-timeout-ms from an internal client: status %d, want 504", code)
	}
	if code, _, _ := rig.send(edgeInternalPeer, "/x?sleep=2s", map[string]string{"X-Envoy-Upstream-Rq-Per-Try-Timeout-Ms": "20"}); code != 504 {
		t.Errorf("x-envoy-upstream-rq-per-try-timeout-ms from an internal client: status %d, want 504", code)
	}
	if code, _, _ := rig.send(edgeInternalPeer, "/x?sleep=2s", map[string]string{
		"X-Envoy-Upstream-Rq-Timeout-Ms": "20", "X-Envoy-Upstream-Rq-Timeout-Alt-Response": "204"}); code != 204 {
		t.Errorf("x-envoy-upstream-rq-timeout-alt-response from an internal client: status %d, want 204", code)
	}

	// Retry headers: retry-on alone uses the route's num_retries (1); max-retries is capped.
	if _, _, hits := rig.send(edgeInternalPeer, "/x?fail=1", map[string]string{"X-Envoy-Retry-On": "5xx"}); hits != 2 {
		t.Errorf("x-envoy-retry-on: %d upstream requests, want 2", hits)
	}
	if _, _, hits := rig.send(edgeInternalPeer, "/x?fail=1", map[string]string{"X-Envoy-Retry-On": "5xx", "X-Envoy-Max-Retries": "3"}); hits != 4 {
		t.Errorf("x-envoy-max-retries 3: %d upstream requests, want 4", hits)
	}
	if _, _, hits := rig.send(edgeInternalPeer, "/x?fail=1", map[string]string{"X-Envoy-Retry-On": "5xx", "X-Envoy-Max-Retries": "100"}); hits != 1+MaxHeaderRetries {
		t.Errorf("x-envoy-max-retries 100: %d upstream requests, want %d (capped)", hits, 1+MaxHeaderRetries)
	}
	if _, _, hits := rig.send(edgeInternalPeer, "/x?fail=1", map[string]string{
		"X-Envoy-Retry-On": "retriable-status-codes", "X-Envoy-Retriable-Status-Codes": "500"}); hits != 2 {
		t.Errorf("x-envoy-retriable-status-codes 500: %d upstream requests, want 2", hits)
	}

	// What reaches the upstream: the router consumed its control headers; the connection
	// manager marked the request internal and kept the client's id; other x-envoy headers and
	// Forwarded pass, as in Envoy; peer metadata never does.
	hdr := map[string]string{}
	for k, v := range spoofed {
		hdr[k] = v
	}
	for _, k := range []string{"X-Envoy-Upstream-Rq-Timeout-Ms", "X-Envoy-Upstream-Rq-Per-Try-Timeout-Ms"} {
		delete(hdr, k)
	}
	code, got, _ := rig.send(edgeInternalPeer, "/x", hdr)
	if code != 200 {
		t.Fatalf("status %d", code)
	}
	for _, k := range []string{"X-Envoy-Retry-On", "X-Envoy-Retry-Grpc-On", "X-Envoy-Max-Retries", "X-Envoy-Retriable-Status-Codes",
		"X-Envoy-Retriable-Header-Names", "X-Envoy-Hedge-On-Per-Try-Timeout", "X-Envoy-Upstream-Rq-Timeout-Alt-Response",
		"X-Envoy-Peer-Metadata", "X-Envoy-Peer-Metadata-Id", "X-Forwarded-Client-Cert"} {
		if v, ok := got[k]; ok {
			t.Errorf("%s reached the upstream: %q", k, v)
		}
	}
	want := map[string]string{
		"X-Envoy-Internal":                   "true",
		"X-Request-Id":                       spoofed["X-Request-Id"],
		"X-Envoy-Expected-Rq-Timeout-Ms":     "10000",
		"X-Envoy-Ip-Tags":                    "trusted",
		"X-Envoy-Downstream-Service-Cluster": "admin",
		"X-Envoy-External-Address":           "10.0.0.1",
		"Forwarded":                          spoofed["Forwarded"],
	}
	for k, v := range want {
		if got.Get(k) != v {
			t.Errorf("%s = %q at the upstream, want %q", k, got.Get(k), v)
		}
	}
}

// TestEdgeNoInternalAddressesByDefault checks Envoy's current default: without
// internal_address_config, loopback and RFC 1918 clients are external like any other.
func TestEdgeNoInternalAddressesByDefault(t *testing.T) {
	for _, cfg := range []struct {
		name string
		mut  func(*hcmv3.HttpConnectionManager)
	}{
		{"no internal_address_config", func(hcm *hcmv3.HttpConnectionManager) { hcm.UseRemoteAddress = wrapperspb.Bool(true) }},
		{"internal_address_config without cidr_ranges", func(hcm *hcmv3.HttpConnectionManager) {
			hcm.UseRemoteAddress = wrapperspb.Bool(true)
			hcm.InternalAddressConfig = &hcmv3.HttpConnectionManager_InternalAddressConfig{}
		}},
	} {
		rig := newEdgeRig(t, cfg.mut)
		for _, peer := range []string{"127.0.0.1:40000", "10.1.2.3:40000", "172.16.0.9:40000", "192.168.1.1:40000", "[::1]:40000", "[fd00::1]:40000"} {
			src := netip.MustParseAddrPort(peer)
			code, got, hits := rig.send(src, "/x?sleep=50ms", map[string]string{
				"X-Envoy-Upstream-Rq-Timeout-Ms": "1", "X-Envoy-Internal": "true", "X-Request-Id": "attacker-chosen-id"})
			if code != 200 || hits != 1 {
				t.Errorf("%s, %s: status %d: the timeout header was honoured", cfg.name, peer, code)
				continue
			}
			if got.Get("X-Envoy-Internal") != "" || got.Get("X-Envoy-External-Address") != src.Addr().String() ||
				got.Get("X-Request-Id") == "attacker-chosen-id" {
				t.Errorf("%s, %s: treated as internal: %v", cfg.name, peer, got)
			}
			if _, _, hits := rig.send(src, "/x?fail=1", map[string]string{"X-Envoy-Retry-On": "5xx", "X-Envoy-Max-Retries": "100"}); hits != 1 {
				t.Errorf("%s, %s: %d upstream requests for one failing request", cfg.name, peer, hits)
			}
		}
	}
}

// TestEdgeInternalNeedsTrustedAddress checks Envoy's conditions on the trusted address: with
// use_remote_address an internal peer that sends x-forwarded-for is not internal; without it,
// the request is internal only if x-forwarded-for holds exactly one internal address (the
// peer itself is never looked at), and xff_num_trusted_hops > 0 disables the check.
func TestEdgeInternalNeedsTrustedAddress(t *testing.T) {
	timeoutHdr := func(xff string) map[string]string {
		h := map[string]string{"X-Envoy-Upstream-Rq-Timeout-Ms": "20", "X-Envoy-Internal": "true"}
		if xff != "" {
			h["X-Forwarded-For"] = xff
		}
		return h
	}
	internalCfg := &hcmv3.HttpConnectionManager_InternalAddressConfig{CidrRanges: []*corev3.CidrRange{edgeInternalCIDR}}
	for _, c := range []struct {
		name     string
		mut      func(*hcmv3.HttpConnectionManager)
		peer     netip.AddrPort
		xff      string
		internal bool
	}{
		{"edge, internal peer", edgeHCM, edgeInternalPeer, "", true},
		{"edge, internal peer with XFF", edgeHCM, edgeInternalPeer, "198.18.0.9", false},
		{"edge, one trusted hop naming an internal client", func(h *hcmv3.HttpConnectionManager) { edgeHCM(h); h.XffNumTrustedHops = 1 },
			edgeExternalPeer, "198.18.0.9", false},
		{"sidecar, no XFF from an internal peer", func(h *hcmv3.HttpConnectionManager) { h.InternalAddressConfig = internalCfg },
			edgeInternalPeer, "", false},
		{"sidecar, one internal XFF address", func(h *hcmv3.HttpConnectionManager) { h.InternalAddressConfig = internalCfg },
			edgeExternalPeer, "198.18.0.9", true},
		{"sidecar, one external XFF address", func(h *hcmv3.HttpConnectionManager) { h.InternalAddressConfig = internalCfg },
			edgeInternalPeer, "198.19.0.9", false},
		{"sidecar, two XFF addresses", func(h *hcmv3.HttpConnectionManager) { h.InternalAddressConfig = internalCfg },
			edgeInternalPeer, "198.18.0.8, 198.18.0.9", false},
		{"sidecar, one trusted hop", func(h *hcmv3.HttpConnectionManager) {
			h.InternalAddressConfig = internalCfg
			h.XffNumTrustedHops = 1
		}, edgeInternalPeer, "198.18.0.8, 198.18.0.9", false},
		{"sidecar, no internal_address_config", nil, edgeInternalPeer, "127.0.0.1", false},
	} {
		rig := newEdgeRig(t, c.mut)
		code, got, _ := rig.send(c.peer, "/x?sleep=300ms", timeoutHdr(c.xff))
		if honoured := code == 504; honoured != c.internal {
			t.Errorf("%s: status %d, internal %v", c.name, code, c.internal)
		}
		if code == 504 {
			code, got, _ = rig.send(c.peer, "/x", timeoutHdr(c.xff))
		}
		if code != 200 {
			t.Errorf("%s: status %d", c.name, code)
			continue
		}
		if (got.Get("X-Envoy-Internal") == "true") != c.internal {
			t.Errorf("%s: x-envoy-internal %q, internal %v", c.name, got.Get("X-Envoy-Internal"), c.internal)
		}
	}
}

// TestEdgeSidecarHeaders checks a connection manager without use_remote_address (a sidecar):
// a request that is not internal loses Envoy's list of control headers but keeps the others,
// its x-request-id and Forwarded, and gets no x-envoy-external-address.
func TestEdgeSidecarHeaders(t *testing.T) {
	rig := newEdgeRig(t, nil)
	code, got, _ := rig.send(edgeInternalPeer, "/x?sleep=50ms", spoofed)
	if code != 200 {
		t.Fatalf("status %d: a control header was honoured", code)
	}
	for _, k := range append(append([]string{"X-Envoy-Internal"}, untrustedHeaders...), peerMetadataHeaders...) {
		if k == "X-Envoy-Expected-Rq-Timeout-Ms" {
			if got.Get(k) != "10000" {
				t.Errorf("%s = %q, want the router's 10000", k, got.Get(k))
			}
			continue
		}
		if v, ok := got[k]; ok {
			t.Errorf("%s reached the upstream: %q", k, v)
		}
	}
	for _, k := range []string{"X-Request-Id", "Forwarded", "X-Envoy-Decorator-Operation", "X-Envoy-External-Address", "X-Envoy-Original-Path"} {
		if got.Get(k) != spoofed[k] {
			t.Errorf("%s = %q, want the client's %q (Envoy keeps it on a hop that is not the edge)", k, got.Get(k), spoofed[k])
		}
	}
	if _, _, hits := rig.send(edgeInternalPeer, "/x?fail=1", spoofed); hits != 1 {
		t.Errorf("%d upstream requests for one failing request", hits)
	}
}

// TestEdgeForwardedAndProto checks Forwarded and x-forwarded-proto at the edge: both come from
// the proxy unless xff_num_trusted_hops declares a trusted proxy in front.
func TestEdgeForwardedAndProto(t *testing.T) {
	hdr := map[string]string{"Forwarded": "for=10.0.0.1;proto=https", "X-Forwarded-Proto": "https"}
	rig := newEdgeRig(t, edgeHCM)
	_, got, _ := rig.send(edgeExternalPeer, "/x", hdr)
	if got.Get("Forwarded") != "" || got.Get("X-Forwarded-Proto") != "http" {
		t.Errorf("no trusted hops: forwarded %q x-forwarded-proto %q", got.Get("Forwarded"), got.Get("X-Forwarded-Proto"))
	}
	rig = newEdgeRig(t, func(h *hcmv3.HttpConnectionManager) { edgeHCM(h); h.XffNumTrustedHops = 1 })
	hdr["X-Forwarded-For"] = "203.0.113.7"
	_, got, _ = rig.send(edgeExternalPeer, "/x", hdr)
	if got.Get("Forwarded") != hdr["Forwarded"] || got.Get("X-Forwarded-Proto") != "https" ||
		got.Get("X-Envoy-External-Address") != "203.0.113.7" {
		t.Errorf("one trusted hop: forwarded %q x-forwarded-proto %q external address %q",
			got.Get("Forwarded"), got.Get("X-Forwarded-Proto"), got.Get("X-Envoy-External-Address"))
	}
}

// TestEdgeRequestIDAndClientCert checks x-request-id (replaced at the edge unless
// preserve_external_request_id) and x-forwarded-client-cert (per forward_client_cert_details,
// whatever the client's trust: a plaintext client never passes one on, except with
// ALWAYS_FORWARD_ONLY).
func TestEdgeRequestIDAndClientCert(t *testing.T) {
	hdr := map[string]string{"X-Request-Id": "client-id-1", "X-Forwarded-Client-Cert": "By=spiffe://x;Hash=00"}
	for _, c := range []struct {
		name     string
		mut      func(*hcmv3.HttpConnectionManager)
		peer     netip.AddrPort
		keepID   bool
		keepXFCC bool
	}{
		{"edge, external", edgeHCM, edgeExternalPeer, false, false},
		{"edge, internal", edgeHCM, edgeInternalPeer, true, false},
		{"edge, preserve_external_request_id", func(h *hcmv3.HttpConnectionManager) { edgeHCM(h); h.PreserveExternalRequestId = true },
			edgeExternalPeer, true, false},
		{"sidecar", nil, edgeExternalPeer, true, false},
		{"edge, FORWARD_ONLY", func(h *hcmv3.HttpConnectionManager) {
			edgeHCM(h)
			h.ForwardClientCertDetails = hcmv3.HttpConnectionManager_FORWARD_ONLY
		}, edgeExternalPeer, false, false},
		{"edge, APPEND_FORWARD", func(h *hcmv3.HttpConnectionManager) {
			edgeHCM(h)
			h.ForwardClientCertDetails = hcmv3.HttpConnectionManager_APPEND_FORWARD
		}, edgeExternalPeer, false, false},
		{"edge, ALWAYS_FORWARD_ONLY", func(h *hcmv3.HttpConnectionManager) {
			edgeHCM(h)
			h.ForwardClientCertDetails = hcmv3.HttpConnectionManager_ALWAYS_FORWARD_ONLY
		}, edgeExternalPeer, false, true},
	} {
		rig := newEdgeRig(t, c.mut)
		_, got, _ := rig.send(c.peer, "/x", hdr)
		if (got.Get("X-Request-Id") == "client-id-1") != c.keepID || len(got.Get("X-Request-Id")) == 0 {
			t.Errorf("%s: x-request-id %q, keep %v", c.name, got.Get("X-Request-Id"), c.keepID)
		}
		if (got.Get("X-Forwarded-Client-Cert") != "") != c.keepXFCC {
			t.Errorf("%s: x-forwarded-client-cert %q, keep %v", c.name, got.Get("X-Forwarded-Client-Cert"), c.keepXFCC)
		}
	}
}

// TestHeaderRetryCap checks the cap on x-envoy-max-retries.
func TestHeaderRetryCap(t *testing.T) {
	for _, c := range []struct{ route, want int }{{0, MaxHeaderRetries}, {2, MaxHeaderRetries}, {MaxHeaderRetries, MaxHeaderRetries}, {25, 25}} {
		if got := headerRetryCap(c.route); got != c.want {
			t.Errorf("headerRetryCap(%d) = %d, want %d", c.route, got, c.want)
		}
	}
}

// TestXFFAddr checks the x-forwarded-for parsing the trust decision uses, on the header's
// fields in place, against the list split and parsed (refXFFAddr).
func TestXFFAddr(t *testing.T) {
	for _, c := range []struct {
		xff  []string
		skip int
		want string
		n    int
	}{
		{nil, 0, "", 0},
		{[]string{"1.2.3.4"}, 0, "1.2.3.4", 1},
		{[]string{"1.2.3.4, 5.6.7.8"}, 0, "5.6.7.8", 2},
		{[]string{"1.2.3.4", "5.6.7.8"}, 1, "1.2.3.4", 2},
		{[]string{"1.2.3.4,"}, 0, "", 2}, // an empty last entry is not an address (as in Envoy)
		{[]string{"junk"}, 0, "", 1},
		{[]string{" ::1 "}, 0, "::1", 1},
		{[]string{"1.1.1.1, 2.2.2.2", "3.3.3.3,4.4.4.4", "5.5.5.5"}, 2, "3.3.3.3", 5},
		{[]string{"1.1.1.1, 2.2.2.2", "3.3.3.3,4.4.4.4", "5.5.5.5"}, 3, "2.2.2.2", 5},
		{[]string{"1.1.1.1, 2.2.2.2", "3.3.3.3,4.4.4.4", "5.5.5.5"}, 4, "1.1.1.1", 5},
		{[]string{"1.1.1.1, 2.2.2.2", "3.3.3.3,4.4.4.4", "5.5.5.5"}, 5, "", 5},
		{[]string{"", "1.1.1.1"}, 1, "", 1}, // an empty field is skipped, as Envoy's coalescing does
		{[]string{"1.1.1.1", ""}, 0, "1.1.1.1", 1},
		{[]string{""}, 0, "", 0},
		{[]string{",,"}, 1, "", 3},
		{[]string{"fe80::1%eth0"}, 0, "fe80::1%eth0", 1},
	} {
		var hdr httpmsg.Header
		for _, v := range c.xff {
			hdr.Add("X-Forwarded-For", v)
		}
		hdr.Add("Other", "9.9.9.9")
		a, n, ok := xffAddr(&hdr, c.skip)
		got := ""
		if ok {
			got = a.String()
		}
		if got != c.want || n != c.n {
			t.Errorf("xffAddr(%q, %d) = %q, %d; want %q, %d", c.xff, c.skip, got, n, c.want, c.n)
		}
		ra, rn, rok := refXFFAddr(c.xff, c.skip)
		if ra != a || rn != n || rok != ok {
			t.Errorf("xffAddr(%q, %d) = %v %d %v, the list split and parsed says %v %d %v", c.xff, c.skip, a, n, ok, ra, rn, rok)
		}
		// The address keeps nothing of the header's bytes (the zone is lent to ParseAddr).
		hdr.Reset()
		hdr.Add("X-Forwarded-For", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")
		if ok && a.String() != c.want {
			t.Errorf("the parsed address changed with the header's bytes: %s, want %s", a, c.want)
		}
	}
}

// refXFFAddr is xffAddr on the values, as the list (empty values skipped) split, trimmed and
// parsed.
func refXFFAddr(xff []string, skip int) (netip.Addr, int, bool) {
	var all []string
	for _, v := range xff {
		if v == "" {
			continue
		}
		for _, p := range strings.Split(v, ",") {
			all = append(all, strings.TrimSpace(p))
		}
	}
	if skip >= len(all) {
		return netip.Addr{}, len(all), false
	}
	a, err := netip.ParseAddr(all[len(all)-1-skip])
	return a, len(all), err == nil
}

// TestAppendXFF: the client's address is appended to the list, the fields the request had
// joined into one.
func TestAppendXFF(t *testing.T) {
	for _, c := range []struct {
		xff  []string
		want string
	}{
		{nil, "10.0.0.1"},
		{[]string{"1.1.1.1"}, "1.1.1.1,10.0.0.1"},
		{[]string{"1.1.1.1, 2.2.2.2", "3.3.3.3"}, "1.1.1.1, 2.2.2.2,3.3.3.3,10.0.0.1"},
		{[]string{strings.Repeat("1.1.1.1, ", 60) + "2.2.2.2"}, strings.Repeat("1.1.1.1, ", 60) + "2.2.2.2,10.0.0.1"},
	} {
		var hdr httpmsg.Header
		hdr.Add("A", "a")
		for _, v := range c.xff {
			hdr.Add("X-Forwarded-For", v)
		}
		hdr.Add("B", "b")
		appendXFF(&hdr, "10.0.0.1")
		if got := headerValues(&hdr, "X-Forwarded-For"); len(got) != 1 || got[0] != c.want {
			t.Errorf("%q: x-forwarded-for %q, want %q", c.xff, got, c.want)
		}
		if hdr.Get("A") != "a" || hdr.Get("B") != "b" {
			t.Errorf("%q: other fields changed", c.xff)
		}
	}
}

// TestForceTraceRequestIDInResponse: a request that kept x-envoy-force-trace (a trusted one)
// gets its x-request-id back in the response, as Envoy does; an external request's
// force-trace is removed at the edge, and its response carries no request id.
func TestForceTraceRequestIDInResponse(t *testing.T) {
	rig := newEdgeRig(t, edgeHCM)
	for _, c := range []struct {
		name string
		peer netip.AddrPort
		want bool
	}{{"internal", edgeInternalPeer, true}, {"external", edgeExternalPeer, false}} {
		req, _ := http.NewRequest("GET", "http://svc/x", nil)
		req.Header.Set("X-Envoy-Force-Trace", "true")
		resp := serveOne(t, rig.h, ConnInfo{Source: c.peer, OriginalDst: netip.MustParseAddrPort("127.0.0.1:8080")}, req)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var s seen
		if err := json.Unmarshal(body, &s); err != nil {
			t.Fatalf("%s: %v (%q)", c.name, err, body)
		}
		got, sent := resp.Header.Get("X-Request-Id"), s.Header.Get("X-Request-Id")
		if c.want && (got == "" || got != sent) || !c.want && got != "" {
			t.Errorf("%s: response x-request-id %q, upstream saw %q", c.name, got, sent)
		}
	}
	req, _ := http.NewRequest("GET", "http://svc/x", nil) // no force-trace: no id back
	resp := serveOne(t, rig.h, ConnInfo{Source: edgeInternalPeer, OriginalDst: netip.MustParseAddrPort("127.0.0.1:8080")}, req)
	resp.Body.Close()
	if v := resp.Header.Get("X-Request-Id"); v != "" {
		t.Errorf("a request without force-trace got its id back: %q", v)
	}
}
