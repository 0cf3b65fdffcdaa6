package l7

import "testing"

// Review (full-review4) of noEnvoyFields on internal and edge requests (d382ce2): an internal
// request's x-envoy-* control headers, in any case and among the ones the connection manager
// drops or adds itself, are honoured and consumed; an edge request's are removed and ignored,
// whatever else it carries.
func TestReview4EnvoyControlHeaders(t *testing.T) {
	internal := newRawRig(t, true, loopbackInternal)
	for _, c := range []struct {
		name, fields, expected string
	}{
		{"none", "", "15000"},
		{"lower case", "x-envoy-upstream-rq-timeout-ms: 4000\r\n", "4000"},
		{"after a dropped x-envoy-internal", "X-Envoy-Internal: true\r\nX-ENVOY-UPSTREAM-RQ-TIMEOUT-MS: 3000\r\n", "3000"},
		{"after peer metadata", "X-Envoy-Peer-Metadata: x\r\nX-Envoy-Peer-Metadata-Id: y\r\nX-Envoy-Upstream-Rq-Timeout-Ms: 2000\r\n", "2000"},
		{"only dropped ones", "X-Envoy-Internal: false\r\nX-Envoy-Peer-Metadata-Id: y\r\n", "15000"},
		{"external address spoofed", "X-Envoy-External-Address: 1.2.3.4\r\nX-Envoy-Upstream-Rq-Timeout-Ms: 1000\r\n", "1000"},
	} {
		r := internal.send("/x", c.fields)
		if r.resp.StatusCode != 200 || r.up.Get("X-Envoy-Internal") != "true" {
			t.Fatalf("internal %s: status %d, upstream %v", c.name, r.resp.StatusCode, r.up)
		}
		if got := r.up.Get("X-Envoy-Expected-Rq-Timeout-Ms"); got != c.expected {
			t.Errorf("internal %s: x-envoy-expected-rq-timeout-ms %q, want %q", c.name, got, c.expected)
		}
		if v := r.up.Get("X-Envoy-Upstream-Rq-Timeout-Ms"); v != "" {
			t.Errorf("internal %s: the control header reached the upstream: %q", c.name, v)
		}
	}
	edge := newRawRig(t, true, nil) // 127.0.0.1 not internal: an edge request
	for _, c := range []struct{ name, fields string }{
		{"plain", "X-Envoy-Upstream-Rq-Timeout-Ms: 1000\r\nX-Envoy-Max-Retries: 5\r\n"},
		{"claims internal", "X-Envoy-Internal: true\r\nx-envoy-upstream-rq-timeout-ms: 1000\r\n"},
	} {
		r := edge.send("/x", c.fields)
		if r.resp.StatusCode != 200 {
			t.Fatalf("edge %s: status %d", c.name, r.resp.StatusCode)
		}
		if got := r.up.Get("X-Envoy-Expected-Rq-Timeout-Ms"); got != "15000" {
			t.Errorf("edge %s: x-envoy-expected-rq-timeout-ms %q, want the route's 15000", c.name, got)
		}
		for k := range r.up {
			if len(k) > 8 && (k[:8] == "X-Envoy-") && k != "X-Envoy-Expected-Rq-Timeout-Ms" && k != "X-Envoy-External-Address" {
				t.Errorf("edge %s: %s reached the upstream", c.name, k)
			}
		}
	}
}
