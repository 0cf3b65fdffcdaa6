package upstream

import (
	"context"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	gclusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	gcorev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/balance"
	"github.com/strait-mesh/strait/proxy/stats"
	"github.com/strait-mesh/strait/proxy/xdspb"
	clusterv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/cluster/v3"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	endpointv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/endpoint/v3"
)

func TestStaticRoundRobin(t *testing.T) {
	a, b, c := newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c")
	cl, st := compileT(t, staticCluster("static", clusterv3.Cluster_ROUND_ROBIN, a, b, c), Deps{})
	seen := tally(t, cl, 30)
	if seen["a"] != 10 || seen["b"] != 10 || seen["c"] != 10 {
		t.Fatalf("round robin split %v, want 10 each", seen)
	}
	if got := counter(st, "cluster.static.upstream_rq_total"); got != 30 {
		t.Fatalf("upstream_rq_total = %d, want 30", got)
	}
	if got := counter(st, "cluster.static.upstream_rq_2xx"); got != 30 {
		t.Fatalf("upstream_rq_2xx = %d, want 30", got)
	}
	if got := gauge(st, "cluster.static.membership_total"); got != 3 {
		t.Fatalf("membership_total = %d", got)
	}
	testenv.WaitFor(t, "requests to finish", 5*time.Second, func() bool { return gauge(st, "cluster.static.upstream_rq_active") == 0 })
}

func TestEDSEndpointsUpdate(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	cl, st := compileT(t, &clusterv3.Cluster{
		Name:                 "eds",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{ServiceName: "eds"},
	}, Deps{})
	getFailsWith(t, cl, FlagNoHealthyUpstream, "no endpoints")
	if err := cl.SetEndpoints(assignment("eds", a, b)); err != nil {
		t.Fatal(err)
	}
	seen := tally(t, cl, 10)
	if seen["a"] != 5 || seen["b"] != 5 {
		t.Fatalf("split %v", seen)
	}
	// Mark a unhealthy, drop nothing: all traffic to b (1/2 healthy = 50%, not below the panic threshold).
	cla := assignment("eds", a, b)
	cla.Endpoints[0].LbEndpoints[0].HealthStatus = corev3.HealthStatus_UNHEALTHY
	if err := cl.SetEndpoints(cla); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if name, _ := get(t, cl, balance.Context{}); name != "b" {
			t.Fatalf("request went to %q, want the healthy b", name)
		}
	}
	if h, n := cl.HealthyHosts(); h != 1 || n != 2 {
		t.Fatalf("healthy hosts %d/%d", h, n)
	}
	if gauge(st, "cluster.eds.membership_healthy") != 1 {
		t.Fatal("membership_healthy not 1")
	}
	// Remove b: only a remains, healthy again.
	if err := cl.SetEndpoints(assignment("eds", a)); err != nil {
		t.Fatal(err)
	}
	if name, _ := get(t, cl, balance.Context{}); name != "a" {
		t.Fatalf("went to %q", name)
	}
	// A bad update is rejected and changes nothing.
	bad := assignment("eds", a)
	bad.Endpoints[0].LbEndpoints[0].GetEndpoint().GetAddress().GetSocketAddress().Address = "not-an-ip"
	if err := cl.SetEndpoints(bad); err == nil || !strings.Contains(err.Error(), "not an IP") {
		t.Fatalf("bad EDS: err %v", err)
	}
	if name, _ := get(t, cl, balance.Context{}); name != "a" {
		t.Fatalf("after bad update went to %q", name)
	}
}

func dnsCluster(name string, typ clusterv3.Cluster_DiscoveryType, port uint32) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: typ},
		DnsLookupFamily:      clusterv3.Cluster_V4_ONLY,
		DnsRefreshRate:       durationpb.New(100 * time.Millisecond),
		RespectDnsTtl:        true,
		LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{lbEndpoint("localhost", port)},
		}}},
	}
}

func TestStrictDNS(t *testing.T) {
	a := newBackend(t, "a")
	cl, st := compileT(t, dnsCluster("strict", clusterv3.Cluster_STRICT_DNS, a.port()), Deps{})
	if name, _ := get(t, cl, balance.Context{}); name != "a" {
		t.Fatalf("went to %q", name)
	}
	if gauge(st, "cluster.strict.membership_total") != 1 {
		t.Fatalf("membership_total = %d", gauge(st, "cluster.strict.membership_total"))
	}
	// Re-resolution keeps the same host (and its pool): still one connection after refreshes.
	testenv.WaitFor(t, "a DNS refresh", 5*time.Second, func() bool { return counter(st, "cluster.strict.update_success") >= 3 })
	get(t, cl, balance.Context{})
	if n := a.accepted.Load(); n != 1 {
		t.Fatalf("backend accepted %d connections across DNS refreshes, want 1", n)
	}
}

func TestLogicalDNS(t *testing.T) {
	a := newBackend(t, "a")
	cl, st := compileT(t, dnsCluster("logical", clusterv3.Cluster_LOGICAL_DNS, a.port()), Deps{})
	for range 3 {
		if name, _ := get(t, cl, balance.Context{}); name != "a" {
			t.Fatalf("went to %q", name)
		}
	}
	if h, n := cl.HealthyHosts(); h != 1 || n != 1 {
		t.Fatalf("hosts %d/%d, want one logical host", h, n)
	}
	if cl.set.Load().eps[0].key != "localhost:"+itoa(a.port()) {
		t.Fatalf("logical host key %q", cl.set.Load().eps[0].key)
	}
	_ = st
	// Two endpoints are not allowed for LOGICAL_DNS.
	c := dnsCluster("logical2", clusterv3.Cluster_LOGICAL_DNS, a.port())
	c.LoadAssignment.Endpoints[0].LbEndpoints = append(c.LoadAssignment.Endpoints[0].LbEndpoints, lbEndpoint("localhost", 1))
	if _, err := Compile(c, Deps{}); err == nil {
		t.Fatal("LOGICAL_DNS with two endpoints compiled")
	}
}

func TestOriginalDst(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	cl, st := compileT(t, &clusterv3.Cluster{
		Name:                 "orig",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
		LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
		CleanupInterval:      durationpb.New(50 * time.Millisecond),
		LbConfig: &clusterv3.Cluster_OriginalDstLbConfig_{OriginalDstLbConfig: &clusterv3.Cluster_OriginalDstLbConfig{
			UseHttpHeader: true}},
	}, Deps{})
	for _, bk := range []*backend{a, b, a} {
		dst := netip.MustParseAddrPort("127.0.0.1:" + itoa(bk.port()))
		ctx, cancel := context.WithTimeout(WithOriginalDst(context.Background(), dst), 5*time.Second)
		resp, err := doCtx(ctx, cl, balance.Context{}, "GET", "/")
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Header.Get("X-Backend"); got != bk.name {
			t.Fatalf("original dst %v answered by %q", dst, got)
		}
	}
	// The header variant.
	resp, err := do(cl, balance.Context{}, "GET", "/", "X-Envoy-Original-Dst-Host", "127.0.0.1:"+itoa(b.port()))
	if err != nil || resp.Header.Get("X-Backend") != "b" {
		t.Fatalf("header original dst: %v %v", resp, err)
	}
	getFailsWith(t, cl, FlagNoHealthyUpstream, "no original dst")
	// Idle hosts are cleaned up.
	if n := origHosts(cl); n != 2 {
		t.Fatalf("%d original-dst hosts, want 2", n)
	}
	testenv.WaitFor(t, "original-dst hosts cleanup", 5*time.Second, func() bool {
		return origHosts(cl) == 0 && gauge(st, "cluster.orig.membership_total") == 0
	})
	// TCP dial through the same cluster.
	conn, err := cl.Dial(WithOriginalDst(context.Background(), netip.MustParseAddrPort("127.0.0.1:"+itoa(a.port()))), balance.Context{})
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.Close()
}

func TestCompileRejectsUnsupported(t *testing.T) {
	a := newBackend(t, "a")
	cases := map[string]func(c *gclusterv3.Cluster){
		"health_checks": func(c *gclusterv3.Cluster) { c.HealthChecks = []*gcorev3.HealthCheck{{}} },
		"lb_subset_config": func(c *gclusterv3.Cluster) {
			c.LbSubsetConfig = &gclusterv3.Cluster_LbSubsetConfig{}
		},
		"upstream_bind_config": func(c *gclusterv3.Cluster) { c.UpstreamBindConfig = &gcorev3.BindConfig{} },
		"hash_function": func(c *gclusterv3.Cluster) {
			c.LbPolicy = gclusterv3.Cluster_RING_HASH
			c.LbConfig = &gclusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &gclusterv3.Cluster_RingHashLbConfig{
				HashFunction: gclusterv3.Cluster_RingHashLbConfig_MURMUR_HASH_2}}
		},
		"detect_degraded_hosts": func(c *gclusterv3.Cluster) {
			c.OutlierDetection = &gclusterv3.OutlierDetection{DetectDegradedHosts: wrapperspb.Bool(true)}
		},
		"priority": func(c *gclusterv3.Cluster) {
			c.CircuitBreakers = &gclusterv3.CircuitBreakers{Thresholds: []*gclusterv3.CircuitBreakers_Thresholds{{Priority: gcorev3.RoutingPriority_HIGH}}}
		},
		"CLUSTER_PROVIDED": func(c *gclusterv3.Cluster) { c.LbPolicy = gclusterv3.Cluster_CLUSTER_PROVIDED },
		"typed_extension_protocol_options[envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions]": func(c *gclusterv3.Cluster) {
			c.TypedExtensionProtocolOptions = map[string]*anyT{"envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions": testenv.MustAny(t, &gcorev3.TcpKeepalive{})}
		},
		"ip address": func(c *gclusterv3.Cluster) {
			c.LoadAssignment.Endpoints[0].LbEndpoints[0].GetEndpoint().GetAddress().GetSocketAddress().Address = "localhost"
		},
	}
	for field, mutate := range cases {
		t.Run(field, func(t *testing.T) {
			// The fields strait-proxy does not read are set through go-control-plane's type.
			c := xdspb.MustFrom[*gclusterv3.Cluster](staticCluster("bad", clusterv3.Cluster_ROUND_ROBIN, a))
			mutate(c)
			_, err := Compile(xdspb.MustFrom[*clusterv3.Cluster](c), Deps{})
			want := field
			if field == "ip address" {
				want = "not an IP address"
			}
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("err = %v, want one naming %q", err, want)
			}
		})
	}
}

func TestHostStatuses(t *testing.T) {
	a := newBackend(t, "a")
	cl, _ := compileT(t, dnsCluster("status", clusterv3.Cluster_STRICT_DNS, a.port()), Deps{})
	<-cl.Ready()
	hs := cl.HostStatuses()
	if len(hs) != 1 {
		t.Fatalf("%d hosts", len(hs))
	}
	sa := hs[0].GetAddress().GetSocketAddress()
	if sa.GetAddress() != "127.0.0.1" || sa.GetPortValue() != a.port() || hs[0].GetHostname() != "localhost" {
		t.Fatalf("host status %v", hs[0])
	}
	if hs[0].GetHealthStatus().GetEdsHealthStatus() != corev3.HealthStatus_HEALTHY || hs[0].GetHealthStatus().GetFailedOutlierCheck() {
		t.Fatalf("health %v", hs[0].GetHealthStatus())
	}
}

// TestUpstreamRqActive: upstream_rq_active counts the requests between their start and their
// end (a response body open counts; a request refused by the max_requests breaker or finding
// no host does not, once it returned), renders as a gauge, and adds up the clusters of one
// name (a cluster and its replacement share their statistics).
func TestUpstreamRqActive(t *testing.T) {
	a := newBackend(t, "a")
	// send returns the response with its body open (do reads it).
	send := func(cl *Cluster) (*http.Response, error) {
		req, _ := http.NewRequest("GET", "http://svc.test/", nil)
		return cl.RoundTrip(req, balance.Context{})
	}
	st := stats.NewStore()
	c := staticCluster("act", clusterv3.Cluster_ROUND_ROBIN, a)
	cl1, _ := compileT(t, c, Deps{Stats: st})
	cl2, _ := compileT(t, c, Deps{Stats: st})
	r1, err := send(cl1)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := send(cl2)
	if err != nil {
		t.Fatal(err)
	}
	if g := gauge(st, "cluster.act.upstream_rq_active"); g != 2 {
		t.Errorf("upstream_rq_active = %d with two bodies open, want 2", g)
	}
	var prom strings.Builder
	if err := st.WritePrometheus(&prom); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(prom.String(), "# TYPE envoy_cluster_upstream_rq_active gauge\n") ||
		!strings.Contains(prom.String(), `envoy_cluster_upstream_rq_active{envoy_cluster_name="act"} 2`) {
		t.Errorf("Prometheus output without the gauge:\n%s", prom.String())
	}
	r1.Body.Close()
	r2.Body.Close()
	if g := gauge(st, "cluster.act.upstream_rq_active"); g != 0 {
		t.Errorf("upstream_rq_active = %d after the bodies closed, want 0", g)
	}

	// Refused before it was sent: counted in upstream_rq_total, never active.
	full := staticCluster("full", clusterv3.Cluster_ROUND_ROBIN, a)
	full.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{
		{MaxRequests: wrapperspb.UInt32(1)}}}
	clf, stf := compileT(t, full, Deps{})
	held, err := send(clf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := send(clf); err == nil {
		t.Fatal("a second request within max_requests 1 was sent")
	}
	if g := gauge(stf, "cluster.full.upstream_rq_active"); g != 1 {
		t.Errorf("upstream_rq_active = %d with one request open and one refused, want 1", g)
	}
	held.Body.Close()
	empty, ste := compileT(t, &clusterv3.Cluster{Name: "empty",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}}, Deps{})
	if _, err := do(empty, balance.Context{}, "GET", "/"); err == nil {
		t.Fatal("a request to a cluster without hosts was sent")
	}
	if g, n := gauge(stf, "cluster.full.upstream_rq_active"), gauge(ste, "cluster.empty.upstream_rq_active"); g != 0 || n != 0 {
		t.Errorf("upstream_rq_active = %d and %d after the requests ended, want 0", g, n)
	}
	if n := counter(ste, "cluster.empty.upstream_rq_total"); n != 1 {
		t.Errorf("upstream_rq_total = %d, want 1", n)
	}
}
