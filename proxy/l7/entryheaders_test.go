package l7

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/wrapperspb"

	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
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

// loopbackInternal makes the rig's client (127.0.0.1) internal.
func loopbackInternal(h *hcmv3.HttpConnectionManager) {
	h.InternalAddressConfig = &hcmv3.HttpConnectionManager_InternalAddressConfig{CidrRanges: []*corev3.CidrRange{
		{AddressPrefix: "127.0.0.0", PrefixLen: wrapperspb.UInt32(8)}}}
}

// TestInternalTimeoutHeadersRemoved: an internal request's x-envoy-upstream-rq-timeout-ms and
// x-envoy-upstream-rq-per-try-timeout-ms are consumed whatever their value: empty and invalid
// ones are removed too (and ignored), as Envoy's router does.
func TestInternalTimeoutHeadersRemoved(t *testing.T) {
	rig := newRawRig(t, true, loopbackInternal)
	for _, c := range []struct {
		value, expected string
	}{
		{"", "15000"},
		{"abc", "15000"},
		{"4294967296", "15000"}, // 2^32: out of range
		{"-1", "15000"},
		{"5000", "5000"},
	} {
		r := rig.send("/x", "X-Envoy-Upstream-Rq-Timeout-Ms: "+c.value+"\r\nX-Envoy-Upstream-Rq-Per-Try-Timeout-Ms: "+c.value+"\r\n")
		if r.resp.StatusCode != 200 || r.up.Get("X-Envoy-Internal") != "true" {
			t.Fatalf("%q: status %d, upstream %v", c.value, r.resp.StatusCode, r.up)
		}
		for _, k := range []string{"X-Envoy-Upstream-Rq-Timeout-Ms", "X-Envoy-Upstream-Rq-Per-Try-Timeout-Ms"} {
			if v, ok := r.up[k]; ok {
				t.Errorf("%q: %s reached the upstream: %q", c.value, k, v)
			}
		}
		if got := r.up.Get("X-Envoy-Expected-Rq-Timeout-Ms"); got != c.expected {
			t.Errorf("%q: x-envoy-expected-rq-timeout-ms %q, want %q", c.value, got, c.expected)
		}
	}
}

func TestParseMs(t *testing.T) {
	for _, c := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"0", 0, true}, {"15000", 15000, true}, {"4294967295", 1<<32 - 1, true}, {"4294967296", 0, false},
		{"99999999999", 0, false}, {"", 0, false}, {"+1", 0, false}, {"1 ", 0, false}, {"1.5", 0, false},
	} {
		if got, ok := parseMs([]byte(c.in)); ok != c.ok || ok && got != c.want {
			t.Errorf("parseMs(%q) = %d, %v; want %d, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

// TestAppendXFFEmpty: the client's address appended to an empty x-forwarded-for is the whole
// list, as in Envoy (not ", addr"); empty fields among others are skipped.
func TestAppendXFFEmpty(t *testing.T) {
	rig := newRawRig(t, true, nil)
	for _, c := range []struct {
		fields, want string
	}{
		{"X-Forwarded-For: \r\n", "127.0.0.1"},
		{"X-Forwarded-For: \r\nX-Forwarded-For: \r\n", "127.0.0.1"},
		{"X-Forwarded-For: \r\nX-Forwarded-For: 203.0.113.7\r\n", "203.0.113.7,127.0.0.1"},
		{"X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-For: \r\n", "203.0.113.7,127.0.0.1"},
		{"X-Forwarded-For: 198.51.100.1, 203.0.113.7\r\n", "198.51.100.1, 203.0.113.7,127.0.0.1"},
		{"", "127.0.0.1"},
	} {
		r := rig.send("/x", c.fields)
		if got := r.up.Values("X-Forwarded-For"); r.resp.StatusCode != 200 || len(got) != 1 || got[0] != c.want {
			t.Errorf("%q: status %d, upstream x-forwarded-for %q, want %q", c.fields, r.resp.StatusCode, got, c.want)
		}
	}
}
