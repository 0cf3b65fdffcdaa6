package xds

import (
	"io"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/internal/node"
)

// scrape returns the registry's /metrics text.
func (e *testEnv) scrape(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(promhttp.HandlerFor(e.reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sample returns the value of the sample line that starts with series ("name{labels}"), or -1.
func sample(text, series string) float64 {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(text)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// TestPilotMetrics reads /metrics after real pushes, a NACK and a disconnection: istiod's
// names, types, labels and buckets.
func TestPilotMetrics(t *testing.T) {
	e := newEnv(t, Options{})
	e.mesh.add("reviews", "default", nil).endpoint("reviews", "default", "127.0.0.2").add("ratings", "default", nil)
	snap := e.mesh.snapshot()
	snap.Configs = map[config.Kind][]*config.Object{config.VirtualService: {{Kind: config.VirtualService}}}
	e.srv.Update(snap)

	a := sidecarID("127.0.0.10", "productpage-1", "default")
	ca := dial(t, e.addr, false, testNode(a, map[string]string{node.MetaProxyVersion: "1.24.0"}), "nack-me")
	b := sidecarID("127.0.0.11", "details-1", "default")
	dial(t, e.addr, true, testNode(b, nil), "")
	waitFor(t, "both SYNCED", func() bool { return e.allSynced(a) && e.allSynced(b) })

	// A rejected CDS.
	e.mesh.add("nack-me", "default", nil)
	e.srv.Update(e.mesh.snapshot())
	waitFor(t, "NACK", func() bool { return ca.state(resource.ClusterType).nacks == 1 })

	var text string
	waitFor(t, "metrics", func() bool {
		text = e.scrape(t)
		return sample(text, `pilot_total_xds_rejects{type="cds"}`) == 1 && sample(text, "pilot_proxy_convergence_time_count") >= 1
	})
	for series, want := range map[string]float64{
		`pilot_xds{version="1.24.0"}`:  1,
		`pilot_xds{version="unknown"}`: 1,
		"pilot_services":               3,
		"pilot_virt_services":          0, // the second snapshot has none
	} {
		if got := sample(text, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	for _, typ := range []string{"cds", "eds", "lds", "rds"} {
		if got := sample(text, `pilot_xds_pushes{type="`+typ+`"}`); got < 2 {
			t.Errorf("pilot_xds_pushes{type=%q} = %v, want >= 2 (one per proxy)", typ, got)
		}
		if got := sample(text, `pilot_xds_config_size_bytes_count{type="`+typ+`"}`); got < 2 {
			t.Errorf("pilot_xds_config_size_bytes_count{type=%q} = %v, want >= 2", typ, got)
		}
	}
	if got := sample(text, `pilot_xds_config_size_bytes_sum{type="cds"}`); got < 100 {
		t.Errorf("pilot_xds_config_size_bytes_sum{type=\"cds\"} = %v, want the bytes of the clusters", got)
	}
	// The caches of marshaled resources (buildcache): two proxies share one snapshot's objects.
	if got := sample(text, `strait_build_cache_reads_total{cache="xds-resources",type="miss"}`); got < 1 {
		t.Errorf("strait_build_cache_reads_total{cache=\"xds-resources\",type=\"miss\"} = %v, want the resources marshaled", got)
	}
	if got := sample(text, `strait_build_cache_size{cache="xds-marshaled"}`); got < 1 {
		t.Errorf("strait_build_cache_size{cache=\"xds-marshaled\"} = %v, want the marshaled resources held", got)
	}
	for _, line := range []string{
		"# TYPE pilot_xds gauge",
		"# TYPE pilot_xds_pushes counter",
		"# TYPE pilot_total_xds_rejects counter",
		"# TYPE pilot_services gauge",
		"# TYPE pilot_virt_services gauge",
		"# TYPE pilot_xds_push_time histogram",
		`pilot_xds_push_time_bucket{type="cds",le="0.01"}`,
		`pilot_xds_push_time_bucket{type="cds",le="30"}`,
		"# TYPE pilot_proxy_convergence_time histogram",
		`pilot_proxy_convergence_time_bucket{le="0.1"}`,
		`pilot_proxy_convergence_time_bucket{le="30"}`,
		"# TYPE pilot_xds_config_size_bytes histogram",
		`pilot_xds_config_size_bytes_bucket{type="cds",le="1"} 0`,
		`pilot_xds_config_size_bytes_bucket{type="cds",le="4e+07"}`,
	} {
		if !strings.Contains(text, line) {
			t.Errorf("/metrics lacks %s", line)
		}
	}
	if t.Failed() {
		t.Log(text)
	}

	// The VirtualService count follows the snapshot; a proxy's version series stays at 0 once it left.
	snap = e.mesh.snapshot()
	snap.Configs = map[config.Kind][]*config.Object{config.VirtualService: {{Kind: config.VirtualService}, {Kind: config.VirtualService}}}
	e.srv.Update(snap)
	ca.close()
	waitFor(t, "disconnection counted", func() bool {
		text = e.scrape(t)
		return sample(text, `pilot_xds{version="1.24.0"}`) == 0 && sample(text, "pilot_virt_services") == 2
	})
	if got := sample(text, `pilot_xds{version="unknown"}`); got != 1 {
		t.Errorf(`pilot_xds{version="unknown"} = %v after the other proxy left, want 1`, got)
	}
}

func TestProxyVersion(t *testing.T) {
	meta := func(v string) *corev3.Node {
		return &corev3.Node{Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{node.MetaProxyVersion: structpb.NewStringValue(v)}}}
	}
	for _, tc := range []struct {
		n    *corev3.Node
		want string
	}{
		{meta("1.24.0"), "1.24.0"},
		{&corev3.Node{UserAgentVersionType: &corev3.Node_UserAgentVersion{UserAgentVersion: "0.9.1"}}, "0.9.1"},
		{&corev3.Node{}, "unknown"},
		{meta(strings.Repeat("v", 200)), strings.Repeat("v", 64)},
	} {
		if got := proxyVersion(tc.n); got != tc.want {
			t.Errorf("proxyVersion = %q, want %q", got, tc.want)
		}
	}
	// Proxies of more versions than maxVersions share the "other" series.
	m, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < maxVersions; i++ {
		m.proxyConnected("v" + strconv.Itoa(i))
	}
	if got := m.proxyConnected("one-too-many"); got != "other" {
		t.Errorf("version beyond the cap counted as %q, want other", got)
	}
	if got := m.proxyConnected("v3"); got != "v3" {
		t.Errorf("known version counted as %q", got)
	}
}
