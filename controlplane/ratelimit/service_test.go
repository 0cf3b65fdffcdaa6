package ratelimit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	commonrlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// istioTaskConfig is the configuration of Istio's rate-limit task (its ConfigMap's config.yaml),
// plus nested, unlimited, prefix and shadow descriptors.
const istioTaskConfig = `domain: ratelimit
descriptors:
  - key: PATH
    value: "/productpage"
    rate_limit:
      unit: minute
      requests_per_unit: 1
  - key: PATH
    value: "api"
    rate_limit:
      unit: minute
      requests_per_unit: 2
  - key: PATH
    rate_limit:
      unit: minute
      requests_per_unit: 100
  - key: remote_address
    descriptors:
      - key: PATH
        value: "/static/*"
        rate_limit: {unit: second, requests_per_unit: 3, name: static}
      - key: PATH
        rate_limit: {unit: hour, requests_per_unit: 2}
  - key: header_match
    value: internal
    rate_limit: {unlimited: true}
  - key: generic_key
    value: shadowed
    shadow_mode: true
    rate_limit: {unit: day, requests_per_unit: 1}
---
domain: other
descriptors:
  - key: PATH
    rate_limit: {unit: second, requests_per_unit: 1}
`

// clock is a settable test clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newService(t *testing.T, cfg string, maxKeys int) (*Service, *clock) {
	t.Helper()
	c, err := ParseConfig([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Unix(1_700_000_080, 0)} // 40 s into a minute
	s, err := New(Options{MaxKeys: maxKeys, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	s.SetConfig(c)
	return s, clk
}

func desc(kv ...string) *commonrlv3.RateLimitDescriptor {
	d := &commonrlv3.RateLimitDescriptor{}
	for i := 0; i+1 < len(kv); i += 2 {
		d.Entries = append(d.Entries, &commonrlv3.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
	}
	return d
}

func ask(t *testing.T, s *Service, domain string, ds ...*commonrlv3.RateLimitDescriptor) *rlsv3.RateLimitResponse {
	t.Helper()
	r, err := s.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: domain, Descriptors: ds})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestFixedWindowPerDescriptor(t *testing.T) {
	s, clk := newService(t, istioTaskConfig, 0)
	r := ask(t, s, "ratelimit", desc("PATH", "/productpage"))
	st := r.GetStatuses()[0]
	if r.GetOverallCode() != rlsv3.RateLimitResponse_OK || st.GetLimitRemaining() != 0 ||
		st.GetCurrentLimit().GetRequestsPerUnit() != 1 || st.GetCurrentLimit().GetUnit() != rlsv3.RateLimitResponse_RateLimit_MINUTE ||
		st.GetDurationUntilReset().AsDuration() != 20*time.Second {
		t.Fatalf("first request: %v", r)
	}
	r = ask(t, s, "ratelimit", desc("PATH", "/productpage"))
	if r.GetOverallCode() != rlsv3.RateLimitResponse_OVER_LIMIT || r.GetStatuses()[0].GetCode() != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("second request in the minute: %v", r)
	}
	// Another path has the key-only limit of 100, and its own count.
	r = ask(t, s, "ratelimit", desc("PATH", "/reviews"))
	if r.GetOverallCode() != rlsv3.RateLimitResponse_OK || r.GetStatuses()[0].GetLimitRemaining() != 99 {
		t.Fatalf("other path: %v", r)
	}
	// The next calendar minute is a new window.
	clk.t = clk.t.Add(20 * time.Second)
	r = ask(t, s, "ratelimit", desc("PATH", "/productpage"))
	if r.GetOverallCode() != rlsv3.RateLimitResponse_OK || r.GetStatuses()[0].GetDurationUntilReset().AsDuration() != time.Minute {
		t.Fatalf("next window: %v", r)
	}
}

func TestOverallCodeAndStatusesFollowDescriptors(t *testing.T) {
	s, _ := newService(t, istioTaskConfig, 0)
	ask(t, s, "ratelimit", desc("PATH", "/productpage"))
	r := ask(t, s, "ratelimit", desc("PATH", "/x"), desc("PATH", "/productpage"), desc("nothing", "here"),
		desc("header_match", "internal"))
	if r.GetOverallCode() != rlsv3.RateLimitResponse_OVER_LIMIT || len(r.GetStatuses()) != 4 {
		t.Fatalf("%v", r)
	}
	want := []rlsv3.RateLimitResponse_Code{rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OVER_LIMIT,
		rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OK}
	for i, st := range r.GetStatuses() {
		if st.GetCode() != want[i] {
			t.Errorf("status %d: %v, want %v", i, st.GetCode(), want[i])
		}
	}
	if r.GetStatuses()[2].GetCurrentLimit() != nil || r.GetStatuses()[3].GetCurrentLimit() != nil {
		t.Errorf("no limit and unlimited descriptors carry a limit: %v", r)
	}
}

func TestNestedDescriptors(t *testing.T) {
	s, _ := newService(t, istioTaskConfig, 0)
	// Prefix value: 3 per second per client.
	for i := 0; i < 3; i++ {
		if r := ask(t, s, "ratelimit", desc("remote_address", "10.0.0.1", "PATH", "/static/a.css")); r.GetOverallCode() != rlsv3.RateLimitResponse_OK {
			t.Fatalf("request %d: %v", i, r)
		}
	}
	r := ask(t, s, "ratelimit", desc("remote_address", "10.0.0.1", "PATH", "/static/a.css"))
	if r.GetOverallCode() != rlsv3.RateLimitResponse_OVER_LIMIT || r.GetStatuses()[0].GetCurrentLimit().GetName() != "static" {
		t.Fatalf("4th static request: %v", r)
	}
	// Another value matching the prefix, and another client, have their own counters.
	if r := ask(t, s, "ratelimit", desc("remote_address", "10.0.0.1", "PATH", "/static/b.css")); r.GetOverallCode() != rlsv3.RateLimitResponse_OK {
		t.Fatalf("other static path: %v", r)
	}
	if r := ask(t, s, "ratelimit", desc("remote_address", "10.0.0.2", "PATH", "/static/a.css")); r.GetOverallCode() != rlsv3.RateLimitResponse_OK {
		t.Fatalf("other client: %v", r)
	}
	// Key-only nested entry: 2 per hour.
	for i, want := range []rlsv3.RateLimitResponse_Code{rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OVER_LIMIT} {
		if r := ask(t, s, "ratelimit", desc("remote_address", "10.0.0.1", "PATH", "/api")); r.GetOverallCode() != want {
			t.Fatalf("nested request %d: %v", i, r)
		}
	}
	// A descriptor that stops above a limit, or goes deeper than the tree, has none.
	for _, d := range []*commonrlv3.RateLimitDescriptor{desc("remote_address", "10.0.0.1"), desc("PATH", "/x", "extra", "y")} {
		if r := ask(t, s, "ratelimit", d); r.GetStatuses()[0].GetCurrentLimit() != nil {
			t.Errorf("%v: limited: %v", d, r)
		}
	}
}

func TestShadowUnlimitedHitsAddendAndDomains(t *testing.T) {
	s, _ := newService(t, istioTaskConfig, 0)
	for i := 0; i < 3; i++ {
		r := ask(t, s, "ratelimit", desc("generic_key", "shadowed"))
		if r.GetOverallCode() != rlsv3.RateLimitResponse_OK {
			t.Fatalf("shadow mode limited: %v", r)
		}
		if i > 0 && r.GetStatuses()[0].GetLimitRemaining() != 0 {
			t.Errorf("shadow mode does not count: %v", r)
		}
	}
	for i := 0; i < 5; i++ {
		if r := ask(t, s, "ratelimit", desc("header_match", "internal")); r.GetOverallCode() != rlsv3.RateLimitResponse_OK {
			t.Fatalf("unlimited limited: %v", r)
		}
	}
	if s.Keys() != 1 {
		t.Errorf("%d counters, want 1 (unlimited descriptors are not counted)", s.Keys())
	}
	// hits_addend: 2 hits of a limit of 2 leave none; a descriptor's own addend wins.
	r, err := s.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: "ratelimit", HitsAddend: 2,
		Descriptors: []*commonrlv3.RateLimitDescriptor{desc("PATH", "api")}})
	if err != nil || r.GetOverallCode() != rlsv3.RateLimitResponse_OK || r.GetStatuses()[0].GetLimitRemaining() != 0 {
		t.Fatalf("hits_addend 2: %v %v", r, err)
	}
	d := desc("PATH", "/other")
	d.HitsAddend = wrapperspb.UInt64(101)
	if r := ask(t, s, "ratelimit", d); r.GetOverallCode() != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("descriptor hits_addend 101 of 100: %v", r)
	}
	// Domains are separate; an unknown domain has no limits.
	if r := ask(t, s, "other", desc("PATH", "/productpage")); r.GetOverallCode() != rlsv3.RateLimitResponse_OK {
		t.Fatalf("other domain: %v", r)
	}
	if r := ask(t, s, "unknown", desc("PATH", "/productpage")); r.GetOverallCode() != rlsv3.RateLimitResponse_OK || r.GetStatuses()[0].GetCurrentLimit() != nil {
		t.Fatalf("unknown domain: %v", r)
	}
}

func TestBoundedCounters(t *testing.T) {
	s, clk := newService(t, istioTaskConfig, 10)
	for i := 0; i < 10; i++ {
		ask(t, s, "ratelimit", desc("remote_address", fmt.Sprint("10.0.0.", i), "PATH", "/api"))
	}
	_, err := s.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: "ratelimit",
		Descriptors: []*commonrlv3.RateLimitDescriptor{desc("remote_address", "10.0.1.1", "PATH", "/api")}})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("full table: %v", err)
	}
	// Existing counters still count while the table is full.
	ask(t, s, "ratelimit", desc("remote_address", "10.0.0.1", "PATH", "/api"))
	// Once their windows (an hour) end they are dropped.
	clk.t = clk.t.Add(time.Hour)
	ask(t, s, "ratelimit", desc("remote_address", "10.0.1.1", "PATH", "/api"))
	if s.Keys() != 1 {
		t.Errorf("%d counters after the windows ended, want 1", s.Keys())
	}
}

func TestBadRequests(t *testing.T) {
	s, _ := newService(t, istioTaskConfig, 0)
	long := strings.Repeat("x", MaxValueBytes+1)
	for name, req := range map[string]*rlsv3.RateLimitRequest{
		"no domain":      {Descriptors: []*commonrlv3.RateLimitDescriptor{desc("a", "b")}},
		"no descriptors": {Domain: "ratelimit"},
		"empty entries":  {Domain: "ratelimit", Descriptors: []*commonrlv3.RateLimitDescriptor{{}}},
		"long value":     {Domain: "ratelimit", Descriptors: []*commonrlv3.RateLimitDescriptor{desc("PATH", long)}},
		"limit override": {Domain: "ratelimit", Descriptors: []*commonrlv3.RateLimitDescriptor{{
			Entries: desc("a", "b").Entries, Limit: &commonrlv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 1}}}},
	} {
		if _, err := s.ShouldRateLimit(context.Background(), req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for cfg, want := range map[string]string{
		"descriptors: []":                      "domain: empty",
		"domain: a\nfoo: 1":                    `unknown field "foo"`,
		"domain: a\ndescriptors: [{value: x}]": "descriptors[0].key: empty",
		"domain: a\ndescriptors: [{key: k, rate_limit: {unit: fortnight, requests_per_unit: 1}}]": "rate_limit.unit",
		"domain: a\ndescriptors: [{key: k, rate_limit: {unit: second}}]":                          "requests_per_unit: missing",
		"domain: a\ndescriptors: [{key: k, rate_limit: {unlimited: true, unit: second}}]":         "unlimited with a unit",
		"domain: a\ndescriptors: [{key: k}, {key: k}]":                                            "configured twice",
		"domain: a\ndescriptors: [{key: k, shadow_mode: true}]":                                   "shadow_mode: set without a rate_limit",
		"domain: a\n---\ndomain: a":                                                               "configured twice",
	} {
		_, err := ParseConfig([]byte(cfg))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", cfg, err, want)
		}
	}
	deep := "domain: a\ndescriptors:\n"
	for i := 0; i <= MaxDepth; i++ {
		deep += strings.Repeat("  ", 2*i) + "- key: k\n" + strings.Repeat("  ", 2*i) + "  descriptors:\n"
	}
	deep += strings.Repeat("  ", 2*MaxDepth+2) + "- key: last\n"
	if _, err := ParseConfig([]byte(deep)); err == nil || !strings.Contains(err.Error(), "nested deeper") {
		t.Errorf("deep config: %v", err)
	}
}

func TestWatchReloadsKeepingCounters(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte("domain: d\ndescriptors: [{key: k, rate_limit: {unit: hour, requests_per_unit: 1}}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{ConfigFile: path})
	if err != nil {
		t.Fatal(err)
	}
	ask(t, s, "d", desc("k", "v"))
	if r := ask(t, s, "d", desc("k", "v")); r.GetOverallCode() != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("before reload: %v", r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Watch(ctx, 10*time.Millisecond); close(done) }()
	defer func() { cancel(); <-done }()
	if err := os.WriteFile(path, []byte("domain: d\ndescriptors: [{key: k, rate_limit: {unit: hour, requests_per_unit: 3}}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := ask(t, s, "d", desc("k", "v"))
		if r.GetStatuses()[0].GetCurrentLimit().GetRequestsPerUnit() == 3 {
			// The count went on: 2 before, this one is the 3rd or later.
			if r.GetStatuses()[0].GetLimitRemaining() != 0 {
				t.Errorf("counters lost on reload: %v", r)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("config not reloaded")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
