package l7

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	groutev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	gratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	glrlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/proxy/route"
	"github.com/strait-mesh/strait/proxy/stats"
	"github.com/strait-mesh/strait/proxy/xdsfield"
	"github.com/strait-mesh/strait/proxy/xdspb"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
	ratelimitv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/common/ratelimit/v3"
	lrlv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/local_ratelimit/v3"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/v3"
)

// lrlFilter is the connection manager's local rate limit filter as Istio's rate-limit task
// configures it: a stat prefix only, the limit coming from the route's per-filter config.
func lrlFilter(prefix string) *hcmv3.HttpFilter {
	a, _ := anypb.New(&lrlv3.LocalRateLimit{StatPrefix: prefix})
	return &hcmv3.HttpFilter{Name: route.LocalRateLimitFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}}
}

func percent(n uint32) *corev3.RuntimeFractionalPercent {
	return &corev3.RuntimeFractionalPercent{RuntimeKey: "local_rate_limit_enabled",
		DefaultValue: &typev3.FractionalPercent{Numerator: n, Denominator: typev3.FractionalPercent_HUNDRED}}
}

func bucket(max, perFill uint32, every time.Duration) *typev3.TokenBucket {
	return &typev3.TokenBucket{MaxTokens: max, TokensPerFill: wrapperspb.UInt32(perFill), FillInterval: durationpb.New(every)}
}

// istioLimit is the per-route LocalRateLimit of Istio's task: enabled and enforced at 100%,
// x-local-rate-limit on limited replies, and the x-ratelimit-* headers.
func istioLimit(tb *typev3.TokenBucket) *lrlv3.LocalRateLimit {
	return &lrlv3.LocalRateLimit{
		StatPrefix:     "http_local_rate_limiter",
		TokenBucket:    tb,
		FilterEnabled:  percent(100),
		FilterEnforced: percent(100),
		ResponseHeadersToAdd: []*corev3.HeaderValueOption{{
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
			Header:       &corev3.HeaderValue{Key: "x-local-rate-limit", Value: "true"}}},
		EnableXRatelimitHeaders: ratelimitv3.XRateLimitHeadersRFCVersion_DRAFT_VERSION_03,
	}
}

func perFilter(c *lrlv3.LocalRateLimit) map[string]*anypb.Any {
	a, _ := anypb.New(c)
	return map[string]*anypb.Any{route.LocalRateLimitFilterName: a}
}

// TestLocalRateLimitRoute is issue 16's case: 5 requests per 10 s on a route, 20 requests sent
// at once → 5 answered, 15 limited with 429, flag RL and the x-ratelimit-* headers. Tokens come
// back continuously (one per 2 s), so a run slower than 2 s may see one more answered; the
// check allows exactly what the elapsed time could have refilled.
func TestLocalRateLimitRoute(t *testing.T) {
	up := startUpstream(t, echoHandler(), false)
	env := &testEnv{clusters: map[string]Upstream{"backend": newTestUpstream(up, false)}}
	limited := fwdRoute("limited", pfx("/limited"), toCluster("backend"))
	limited.TypedPerFilterConfig = perFilter(istioLimit(bucket(5, 5, 10*time.Second)))
	free := fwdRoute("free", pfx("/"), toCluster("backend"))
	p := startProxy(t, inlineHCM(oneVhost(limited, free), lrlFilter("http_local_rate_limiter")), env, false)
	c := h1Client()

	start := time.Now()
	ok, rl := 0, 0
	for i := 0; i < 20; i++ {
		resp, body := roundTrip(t, c, mustReq(t, "GET", p.url("/limited")))
		ri := p.nextInfo(t)
		switch resp.StatusCode {
		case http.StatusOK:
			ok++
		case http.StatusTooManyRequests:
			rl++
			if body != "local_rate_limited" || resp.Header.Get("X-Local-Rate-Limit") != "true" {
				t.Errorf("limited reply: body %q, headers %v", body, resp.Header)
			}
			if ri.Flags.String() != "RL" || ri.Details != "local_rate_limited" {
				t.Errorf("limited request: flags %s, details %q", ri.Flags, ri.Details)
			}
			if resp.Header.Get("X-Ratelimit-Remaining") != "0" || resp.Header.Get("X-Ratelimit-Reset") == "0" {
				t.Errorf("limited reply x-ratelimit headers: %v", resp.Header)
			}
		default:
			t.Fatalf("status %d", resp.StatusCode)
		}
		if resp.Header.Get("X-Ratelimit-Limit") != "5" || resp.Header.Get("X-Ratelimit-Remaining") == "" {
			t.Errorf("response %d: x-ratelimit headers %v", i, resp.Header)
		}
		if resp.StatusCode == http.StatusOK && resp.Header.Get("X-Local-Rate-Limit") != "" {
			t.Error("x-local-rate-limit on an answered request")
		}
	}
	refilled := int(time.Since(start) / (2 * time.Second))
	if ok < 5 || ok > 5+refilled || ok+rl != 20 {
		t.Errorf("%d answered and %d limited, want 5 and 15", ok, rl)
	}
	for stat, want := range map[string]uint64{"enabled": 20, "ok": uint64(ok), "rate_limited": uint64(rl), "enforced": uint64(rl)} {
		if got := p.counter("http_local_rate_limiter.http_local_rate_limit." + stat); got != want {
			t.Errorf("%s = %d, want %d", stat, got, want)
		}
	}
	// Another route has no limit and no x-ratelimit headers.
	for i := 0; i < 10; i++ {
		resp, _ := roundTrip(t, c, mustReq(t, "GET", p.url("/other")))
		p.nextInfo(t)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Ratelimit-Limit") != "" {
			t.Fatalf("unlimited route: %d %v", resp.StatusCode, resp.Header)
		}
	}
}

func mustReq(t testing.TB, method, url string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// clientFrom returns an HTTP/1.1 client whose connections come from local address ip.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		}}}
}

// TestLocalRateLimitPerClientAddress gives each client address its own bucket through the
// route's remote_address action and per-address descriptors; other addresses share the
// default bucket.
func TestLocalRateLimitPerClientAddress(t *testing.T) {
	up := startUpstream(t, echoHandler(), false)
	env := &testEnv{clusters: map[string]Upstream{"backend": newTestUpstream(up, false)}}
	cfg := istioLimit(bucket(1, 1, time.Hour))
	for ip, n := range map[string]uint32{"127.0.0.2": 2, "127.0.0.3": 3} {
		cfg.Descriptors = append(cfg.Descriptors, &ratelimitv3.LocalRateLimitDescriptor{
			Entries:     []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "remote_address", Value: ip}},
			TokenBucket: bucket(n, n, time.Hour)})
	}
	cfg.AlwaysConsumeDefaultTokenBucket = wrapperspb.Bool(false)
	r := fwdRoute("r", pfx("/"), toCluster("backend"))
	r.GetRoute().RateLimits = []*routev3.RateLimit{{Actions: []*routev3.RateLimit_Action{{
		ActionSpecifier: &routev3.RateLimit_Action_RemoteAddress_{RemoteAddress: &routev3.RateLimit_Action_RemoteAddress{}}}}}}
	vh := oneVhost(r)
	vh.VirtualHosts[0].TypedPerFilterConfig = perFilter(cfg) // the virtual host's config applies to its routes
	p := startProxy(t, inlineHCM(vh, lrlFilter("lrl")), env, false)

	count := func(c *http.Client, n int) int {
		ok := 0
		for i := 0; i < n; i++ {
			resp, err := c.Get(p.url("/"))
			if err != nil {
				if errors.Is(err, context.DeadlineExceeded) {
					t.Fatal(err)
				}
				t.Skipf("cannot send from a second loopback address: %v", err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			p.nextInfo(t)
			if resp.StatusCode == http.StatusOK {
				ok++
			}
		}
		return ok
	}
	for _, tc := range []struct {
		ip   string
		want int
	}{{"127.0.0.2", 2}, {"127.0.0.3", 3}, {"127.0.0.1", 1}, {"127.0.0.4", 0}} {
		if got := count(clientFrom(tc.ip), 6); got != tc.want {
			t.Errorf("client %s: %d of 6 answered, want %d", tc.ip, got, tc.want)
		}
	}
}

// TestLocalRateLimitDynamicDescriptors gives each client address its own bucket of 5 through a
// descriptor whose remote_address entry has no value (Envoy's dynamic descriptors): two clients
// from different loopback addresses each get 5 of 20 requests answered, with their own
// x-ratelimit-* headers, and the default bucket (1) is not consumed.
func TestLocalRateLimitDynamicDescriptors(t *testing.T) {
	up := startUpstream(t, echoHandler(), false)
	env := &testEnv{clusters: map[string]Upstream{"backend": newTestUpstream(up, false)}}
	cfg := istioLimit(bucket(1, 1, time.Hour))
	cfg.Descriptors = []*ratelimitv3.LocalRateLimitDescriptor{{
		Entries:     []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "generic_key", Value: "per-client"}, {Key: "remote_address"}},
		TokenBucket: bucket(5, 5, time.Hour)}}
	cfg.MaxDynamicDescriptors = wrapperspb.UInt32(10)
	cfg.AlwaysConsumeDefaultTokenBucket = wrapperspb.Bool(false)
	r := fwdRoute("r", pfx("/"), toCluster("backend"))
	r.TypedPerFilterConfig = perFilter(cfg)
	r.GetRoute().RateLimits = []*routev3.RateLimit{{Actions: []*routev3.RateLimit_Action{
		{ActionSpecifier: &routev3.RateLimit_Action_GenericKey_{GenericKey: &routev3.RateLimit_Action_GenericKey{DescriptorValue: "per-client"}}},
		{ActionSpecifier: &routev3.RateLimit_Action_RemoteAddress_{RemoteAddress: &routev3.RateLimit_Action_RemoteAddress{}}},
	}}}
	p := startProxy(t, inlineHCM(oneVhost(r), lrlFilter("lrl")), env, false)
	for _, ip := range []string{"127.0.0.26", "127.0.0.27"} {
		c := clientFrom(ip)
		ok := 0
		for i := range 20 {
			resp, err := c.Get(p.url("/"))
			if err != nil {
				if errors.Is(err, context.DeadlineExceeded) {
					t.Fatal(err)
				}
				t.Skipf("cannot send from %s: %v", ip, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			p.nextInfo(t)
			if resp.StatusCode == http.StatusOK {
				ok++
			}
			if resp.Header.Get("X-Ratelimit-Limit") != "5" || (i >= 5 && resp.Header.Get("X-Ratelimit-Remaining") != "0") {
				t.Errorf("client %s, request %d: x-ratelimit headers %v", ip, i, resp.Header)
			}
		}
		if ok != 5 {
			t.Errorf("client %s: %d of 20 answered, want its own 5", ip, ok)
		}
	}
}

// TestLocalRateLimitNotEnforced counts requests over the limit without limiting them when
// filter_enforced is 0%, adding request_headers_to_add_when_not_enforced upstream; a 0%
// filter_enabled does not even check.
func TestLocalRateLimitNotEnforced(t *testing.T) {
	got := make(chan string, 10)
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("X-Shadow-Limited")
	}), false)
	env := &testEnv{clusters: map[string]Upstream{"backend": newTestUpstream(up, false)}}
	shadow := istioLimit(bucket(2, 1, time.Hour))
	shadow.FilterEnforced = percent(0)
	shadow.RequestHeadersToAddWhenNotEnforced = []*corev3.HeaderValueOption{{
		Header: &corev3.HeaderValue{Key: "x-shadow-limited", Value: "yes"}}}
	off := istioLimit(bucket(1, 1, time.Hour))
	off.StatPrefix = "off"
	off.FilterEnabled = percent(0)
	r1 := fwdRoute("shadow", pfx("/shadow"), toCluster("backend"))
	r1.TypedPerFilterConfig = perFilter(shadow)
	r2 := fwdRoute("off", pfx("/off"), toCluster("backend"))
	r2.TypedPerFilterConfig = perFilter(off)
	p := startProxy(t, inlineHCM(oneVhost(r1, r2), lrlFilter("lrl")), env, false)
	c := h1Client()
	for i := 0; i < 5; i++ {
		resp, _ := roundTrip(t, c, mustReq(t, "GET", p.url("/shadow")))
		p.nextInfo(t)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
		want := ""
		if i >= 2 {
			want = "yes"
		}
		if h := <-got; h != want {
			t.Errorf("request %d: x-shadow-limited %q upstream, want %q", i, h, want)
		}
	}
	for stat, want := range map[string]uint64{"enabled": 5, "ok": 2, "rate_limited": 3, "enforced": 0} {
		if got := p.counter("http_local_rate_limiter.http_local_rate_limit." + stat); got != want {
			t.Errorf("%s = %d, want %d", stat, got, want)
		}
	}
	for i := 0; i < 3; i++ {
		resp, _ := roundTrip(t, c, mustReq(t, "GET", p.url("/off")))
		p.nextInfo(t)
		<-got
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("filter_enabled 0%%: status %d", resp.StatusCode)
		}
	}
	if n := p.counter("off.http_local_rate_limit.enabled"); n != 0 {
		t.Errorf("filter_enabled 0%%: enabled = %d", n)
	}
}

// TestLocalRateLimitUnsupported checks that what strait-proxy does not implement is refused
// by name, at the connection manager and in route configuration.
func TestLocalRateLimitUnsupported(t *testing.T) {
	hcmWith := func(c proto.Message) error {
		a, _ := anypb.New(c)
		f := &hcmv3.HttpFilter{Name: route.LocalRateLimitFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}}
		_, err := New(inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("c"))), f), &testEnv{}, Options{Stats: stats.NewStore()})
		return err
	}
	routeWith := func(mod func(*routev3.Route)) error {
		r := fwdRoute("r", pfx("/"), toCluster("c"))
		mod(r)
		_, err := route.Compile(oneVhost(r))
		return err
	}
	for name, tc := range map[string]struct {
		err   error
		field string
	}{
		// Fields strait-proxy does not read are set through go-control-plane's types.
		"local_cluster_rate_limit": {hcmWith(&glrlv3.LocalRateLimit{StatPrefix: "x",
			LocalClusterRateLimit: &gratelimitv3.LocalClusterRateLimit{}}), "local_cluster_rate_limit"},
		"source_cluster action": {routeWith(func(r *routev3.Route) {
			r.GetRoute().RateLimits = []*routev3.RateLimit{{Actions: []*routev3.RateLimit_Action{{
				ActionSpecifier: &routev3.RateLimit_Action_SourceCluster_{SourceCluster: &routev3.RateLimit_Action_SourceCluster{}}}}}}
		}), "rate_limits[0].actions[0].source_cluster"},
		"limit override": {routeWith(func(r *routev3.Route) {
			r.GetRoute().RateLimits = xdspb.MustFrom[*routev3.RouteAction](&groutev3.RouteAction{RateLimits: []*groutev3.RateLimit{{Limit: &groutev3.RateLimit_Override{}, Actions: []*groutev3.RateLimit_Action{{
				ActionSpecifier: &groutev3.RateLimit_Action_RemoteAddress_{RemoteAddress: &groutev3.RateLimit_Action_RemoteAddress{}}}}}}}).RateLimits
		}), "rate_limits[0].limit"},
	} {
		var ue *xdsfield.UnsupportedError
		if !errors.As(tc.err, &ue) || !hasSuffix(ue.Field, tc.field) {
			t.Errorf("%s: got %v, want an unsupported %s", name, tc.err, tc.field)
		}
	}
	// max_dynamic_descriptors is at least 1, as in Envoy.
	if err := hcmWith(&lrlv3.LocalRateLimit{StatPrefix: "x", MaxDynamicDescriptors: wrapperspb.UInt32(0)}); err == nil ||
		!strings.Contains(err.Error(), "max_dynamic_descriptors") {
		t.Errorf("max_dynamic_descriptors 0: got %v, want an error naming it", err)
	}
	// A per-route config without a token bucket is refused as in Envoy.
	err := routeWith(func(r *routev3.Route) { r.TypedPerFilterConfig = perFilter(&lrlv3.LocalRateLimit{StatPrefix: "x"}) })
	if err == nil {
		t.Error("per-route config without token_bucket accepted")
	}
}

func hasSuffix(s, suffix string) bool {
	return len(s) >= len(suffix) && s[len(s)-len(suffix):] == suffix
}

// BenchmarkLocalRateLimit measures the filter's per-request cost in the handler (no sockets):
// the filter in the chain with no limit on the route, and with a limit (a bucket that never runs
// out) plus a remote_address descriptor.
func BenchmarkLocalRateLimit(b *testing.B) {
	env := &testEnv{clusters: map[string]Upstream{"c": cannedUpstream{}}}
	big := bucket(1<<30, 1<<30, time.Second)
	run := func(b *testing.B, r *routev3.Route, filters ...*hcmv3.HttpFilter) {
		h, err := New(inlineHCM(oneVhost(r), filters...), env, Options{Stats: stats.NewStore()})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			req := httptest.NewRequest("GET", "http://svc.test/api/items?id=1", nil)
			w := httptest.NewRecorder()
			h.serveHTTP(w, req)
			if w.Code != 200 {
				b.Fatal(w.Code)
			}
		}
	}
	b.Run("no_filter", func(b *testing.B) { run(b, fwdRoute("r", pfx("/"), toCluster("c"))) })
	b.Run("filter_no_limit", func(b *testing.B) { run(b, fwdRoute("r", pfx("/"), toCluster("c")), lrlFilter("lrl")) })
	b.Run("route_limit", func(b *testing.B) {
		r := fwdRoute("r", pfx("/"), toCluster("c"))
		cfg := istioLimit(big)
		cfg.EnableXRatelimitHeaders = ratelimitv3.XRateLimitHeadersRFCVersion_OFF
		r.TypedPerFilterConfig = perFilter(cfg)
		run(b, r, lrlFilter("lrl"))
	})
	b.Run("route_limit_descriptor_headers", func(b *testing.B) {
		r := fwdRoute("r", pfx("/"), toCluster("c"))
		cfg := istioLimit(big)
		cfg.Descriptors = []*ratelimitv3.LocalRateLimitDescriptor{{
			Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "remote_address", Value: "192.0.2.1"}}, TokenBucket: big}}
		r.TypedPerFilterConfig = perFilter(cfg)
		r.GetRoute().RateLimits = []*routev3.RateLimit{{Actions: []*routev3.RateLimit_Action{{
			ActionSpecifier: &routev3.RateLimit_Action_RemoteAddress_{RemoteAddress: &routev3.RateLimit_Action_RemoteAddress{}}}}}}
		run(b, r, lrlFilter("lrl"))
	})
}
