package l7

import (
	"strings"
	"testing"

	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
)

// TestEmptyForwardedProto: an empty x-forwarded-proto is overwritten only where a present one
// would be (use_remote_address with no trusted hop); elsewhere it is kept, as Envoy only adds
// the field when it is absent.
func TestEmptyForwardedProto(t *testing.T) {
	for _, c := range []struct {
		name string
		edge bool
		hops uint32
		want string
	}{
		{"sidecar", false, 0, ""},
		{"edge, no trusted hop", true, 0, "http"},
		{"edge, one trusted hop", true, 1, ""},
	} {
		rig := newRawRig(t, c.edge, func(h *hcmv3.HttpConnectionManager) { h.XffNumTrustedHops = c.hops })
		r := rig.send("/x", "X-Forwarded-Proto: \r\nX-Forwarded-For: 203.0.113.7\r\n")
		if v, ok := r.up["X-Forwarded-Proto"]; r.resp.StatusCode != 200 || !ok || len(v) != 1 || v[0] != c.want {
			t.Errorf("%s: status %d, upstream x-forwarded-proto %q (present %v), want %q", c.name, r.resp.StatusCode, v, ok, c.want)
		}
		r = rig.send("/x", "")
		if v := r.up.Values("X-Forwarded-Proto"); len(v) != 1 || v[0] != "http" {
			t.Errorf("%s, absent: upstream x-forwarded-proto %q, want http", c.name, v)
		}
	}
}

// TestRequestIDKeptAsIs: a sidecar keeps any non-empty x-request-id a client sends, whatever
// its form, as Envoy does; an empty one is replaced by a UUID.
func TestRequestIDKeptAsIs(t *testing.T) {
	rig := newRawRig(t, false, nil)
	for _, id := range []string{"abc def", strings.Repeat("a", 300), "not-a-uuid", "caf\xc3\xa9", ""} {
		r := rig.send("/x", "X-Request-Id: "+id+"\r\n")
		got := r.up.Get("X-Request-Id")
		if id == "" {
			if len(got) != 36 || r.info.RequestID != got {
				t.Errorf("empty id: upstream %q, recorded %q, want a new UUID", got, r.info.RequestID)
			}
			continue
		}
		if got != id || r.info.RequestID != id {
			t.Errorf("id %q: upstream %q, recorded %q", id, got, r.info.RequestID)
		}
	}
}
