package telemetry

import (
	"crypto/x509"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/strait-mesh/strait/proxy/stats"
)

func TestNodeWorkload(t *testing.T) {
	for _, tc := range []struct {
		name         string
		pod, ns, cid string
		labels, meta map[string]string
		want         Workload
	}{
		{"app and version", "reviews-v1-abc", "default", "Kubernetes",
			map[string]string{"app": "reviews", "version": "v1"}, map[string]string{"WORKLOAD_NAME": "reviews-v1"},
			Workload{"reviews-v1", "default", "reviews", "v1", "reviews", "v1", "Kubernetes"}},
		{"canonical labels win", "p", "ns", "",
			map[string]string{"app": "a", "version": "v", "service.istio.io/canonical-name": "cs", "service.istio.io/canonical-revision": "cr",
				"app.kubernetes.io/name": "kn", "app.kubernetes.io/version": "kv"}, nil,
			Workload{"p", "ns", "a", "v", "cs", "cr", Unknown}},
		{"kubernetes recommended labels", "p", "ns", "",
			map[string]string{"app": "a", "version": "v", "app.kubernetes.io/name": "kn", "app.kubernetes.io/version": "kv"}, nil,
			Workload{"p", "ns", "a", "v", "kn", "kv", Unknown}},
		{"no labels", "ratings-7d9f", "shop", "c1", nil, nil,
			Workload{"ratings-7d9f", "shop", Unknown, Unknown, "ratings-7d9f", "latest", "c1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := NodeWorkload(tc.pod, tc.ns, tc.cid, tc.labels, tc.meta); got != tc.want {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestServiceFromCluster(t *testing.T) {
	for _, tc := range []struct {
		cluster, authority string
		want               Service
	}{
		{"outbound|9080||reviews.default.svc.cluster.local", "reviews:9080", Service{"reviews.default.svc.cluster.local", "reviews", "default"}},
		{"outbound|9080|v2|reviews.shop.svc.cluster.local", "", Service{"reviews.shop.svc.cluster.local", "reviews", "shop"}},
		{"outbound|443||httpbin.org", "httpbin.org", Service{"httpbin.org", "httpbin.org", Unknown}},
		{"PassthroughCluster", "10.28.1.220:9087", Service{"10.28.1.220:9087", "PassthroughCluster", Unknown}},
		{"BlackHoleCluster", "", Service{Unknown, "BlackHoleCluster", Unknown}},
		{"", "", Service{Unknown, Unknown, Unknown}},
	} {
		if got := ServiceFromCluster(tc.cluster, tc.authority); got != tc.want {
			t.Errorf("ServiceFromCluster(%q, %q) = %+v, want %+v", tc.cluster, tc.authority, got, tc.want)
		}
	}
	for _, tc := range []struct {
		authority string
		want      Service
	}{
		{"reviews.default.svc.cluster.local:9080", Service{"reviews.default.svc.cluster.local", "reviews", "default"}},
		{"reviews.default.svc", Service{"reviews.default.svc", "reviews", "default"}},
		{"reviews:9080", Service{"reviews", "reviews", Unknown}},
		{"[::1]:80", Service{"::1", "::1", Unknown}},
		{"", Service{Unknown, Unknown, Unknown}},
	} {
		if got := ServiceFromAuthority(tc.authority); got != tc.want {
			t.Errorf("ServiceFromAuthority(%q) = %+v, want %+v", tc.authority, got, tc.want)
		}
	}
}

func TestSPIFFENamespace(t *testing.T) {
	for id, want := range map[string]string{
		"spiffe://cluster.local/ns/shop/sa/default": "shop",
		"spiffe://td/ns//sa/x":                      Unknown,
		"spiffe://td/other":                         Unknown,
		"https://td/ns/x/sa/y":                      Unknown,
	} {
		if got := SPIFFENamespace(id); got != want {
			t.Errorf("SPIFFENamespace(%q) = %q, want %q", id, got, want)
		}
	}
}

func TestReporters(t *testing.T) {
	for p, want := range map[string]Reporter{"inbound_0.0.0.0_9080": Destination, "outbound_0.0.0.0_80": Source, "gateway": Source} {
		if got := ReporterForStatPrefix(p); got != want {
			t.Errorf("%q: %v", p, got)
		}
	}
	for p, want := range map[string]Reporter{"inbound|9080||": Destination, "InboundPassthroughCluster": Destination,
		"outbound|80||a.b.svc.cluster.local": Source, "PassthroughCluster": Source} {
		if got := ReporterForTCPStatPrefix(p); got != want {
			t.Errorf("%q: %v", p, got)
		}
	}
}

func spiffeCert(t testing.TB, id string) *x509.Certificate {
	u, err := url.Parse(id)
	if err != nil {
		t.Fatal(err)
	}
	return &x509.Certificate{URIs: []*url.URL{u}}
}

var local = Workload{"reviews-v1", "default", "reviews", "v1", "reviews", "v1", "Kubernetes"}

func render(t *testing.T, st *stats.Store) string {
	t.Helper()
	var b strings.Builder
	if err := st.WritePrometheus(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestRecordHTTPSeries(t *testing.T) {
	st := stats.NewStore()
	r := New(Options{Local: local, Stats: st, LocalPrincipal: func() string { return "spiffe://cluster.local/ns/default/sa/reviews" }})
	peer := spiffeCert(t, "spiffe://cluster.local/ns/shop/sa/productpage")
	me := spiffeCert(t, "spiffe://cluster.local/ns/default/sa/reviews")
	for i := 0; i < 3; i++ {
		r.RecordHTTP(&HTTPRequest{Reporter: Destination, Code: 200, Authority: "reviews.default.svc.cluster.local:9080",
			Peer: peer, Local: me, Duration: 7 * time.Millisecond, RequestBytes: 0, ResponseBytes: 120})
	}
	r.RecordHTTP(&HTTPRequest{Reporter: Source, Code: 503, Flags: 1, FlagText: func(uint64) string { return "UH" },
		Cluster: "outbound|9080||ratings.default.svc.cluster.local", Authority: "ratings:9080", Duration: 1500 * time.Microsecond})
	out := render(t, st)
	dst := `reporter="destination",source_workload="unknown",source_canonical_service="unknown",source_canonical_revision="latest",` +
		`source_workload_namespace="shop",source_principal="spiffe://cluster.local/ns/shop/sa/productpage",source_app="unknown",` +
		`source_version="unknown",source_cluster="unknown",destination_workload="reviews-v1",destination_workload_namespace="default",` +
		`destination_principal="spiffe://cluster.local/ns/default/sa/reviews",destination_app="reviews",destination_version="v1",` +
		`destination_service="reviews.default.svc.cluster.local",destination_canonical_service="reviews",destination_canonical_revision="v1",` +
		`destination_service_name="reviews",destination_service_namespace="default",destination_cluster="Kubernetes",` +
		`request_protocol="http",response_code="200",grpc_response_status="",response_flags="-",connection_security_policy="mutual_tls"`
	src := `reporter="source",source_workload="reviews-v1",source_canonical_service="reviews",source_canonical_revision="v1",` +
		`source_workload_namespace="default",source_principal="spiffe://cluster.local/ns/default/sa/reviews",source_app="reviews",` +
		`source_version="v1",source_cluster="Kubernetes",destination_workload="unknown",destination_workload_namespace="unknown",` +
		`destination_principal="unknown",destination_app="unknown",destination_version="unknown",` +
		`destination_service="ratings.default.svc.cluster.local",destination_canonical_service="unknown",destination_canonical_revision="latest",` +
		`destination_service_name="ratings",destination_service_namespace="default",destination_cluster="unknown",` +
		`request_protocol="http",response_code="503",grpc_response_status="",response_flags="UH",connection_security_policy="unknown"`
	for _, line := range []string{
		"# TYPE istio_requests_total counter",
		"istio_requests_total{" + dst + "} 3",
		"istio_requests_total{" + src + "} 1",
		"# TYPE istio_request_duration_milliseconds histogram",
		"istio_request_duration_milliseconds_bucket{" + dst + `,le="5"} 0`,
		"istio_request_duration_milliseconds_bucket{" + dst + `,le="10"} 3`,
		"istio_request_duration_milliseconds_bucket{" + dst + `,le="3.6e+06"} 3`,
		"istio_request_duration_milliseconds_bucket{" + dst + `,le="+Inf"} 3`,
		"istio_request_duration_milliseconds_sum{" + dst + "} 21",
		"istio_request_duration_milliseconds_count{" + dst + "} 3",
		// 1.5 ms is recorded as 1 ms, as Envoy records whole milliseconds.
		"istio_request_duration_milliseconds_bucket{" + src + `,le="0.5"} 0`,
		"istio_request_duration_milliseconds_bucket{" + src + `,le="1"} 1`,
		"istio_request_bytes_bucket{" + dst + `,le="0.5"} 3`,
		"istio_response_bytes_bucket{" + dst + `,le="100"} 0`,
		"istio_response_bytes_bucket{" + dst + `,le="250"} 3`,
		"istio_response_bytes_sum{" + dst + "} 360",
		"strait_telemetry_series_dropped_total 0",
	} {
		if !strings.Contains(out, line+"\n") {
			t.Errorf("output lacks %s", line)
		}
	}
	if t.Failed() {
		t.Log(out)
	}
	if n := strings.Count(out, "# TYPE istio_"); n != 4 {
		t.Errorf("%d istio families, want 4", n)
	}
}

func TestBucketIndex(t *testing.T) {
	for v, want := range map[uint64]int{0: 0, 1: 1, 2: 2, 5: 2, 6: 3, 3600000: 18, 3600001: 19} {
		if got := bucketIndex(v); got != want {
			t.Errorf("bucketIndex(%d) = %d, want %d", v, got, want)
		}
	}
	if bucketLabels[0] != "0.5" || bucketLabels[15] != "300000" || bucketLabels[17] != "1.8e+06" {
		t.Errorf("le labels: %q", bucketLabels)
	}
}

func TestCardinalityCap(t *testing.T) {
	st := stats.NewStore()
	r := New(Options{Local: local, Stats: st, MaxSeries: 5})
	for code := 200; code < 210; code++ {
		r.RecordHTTP(&HTTPRequest{Reporter: Source, Code: code, Cluster: "outbound|80||a.b.svc.cluster.local"})
		r.RecordHTTP(&HTTPRequest{Reporter: Source, Code: code, Cluster: "outbound|80||a.b.svc.cluster.local"})
	}
	if h, _ := r.Series(); h != 5 {
		t.Errorf("%d series, want 5", h)
	}
	if r.Dropped() != 10 {
		t.Errorf("dropped %d, want 10", r.Dropped())
	}
	out := render(t, st)
	if n := strings.Count(out, "\nistio_requests_total{"); n != 5 {
		t.Errorf("%d istio_requests_total series, want 5", n)
	}
	if !strings.Contains(out, "strait_telemetry_series_dropped_total 10\n") {
		t.Errorf("no dropped count:\n%s", out)
	}
	// A known combination is still recorded at the cap.
	r.RecordHTTP(&HTTPRequest{Reporter: Source, Code: 200, Cluster: "outbound|80||a.b.svc.cluster.local"})
	if !strings.Contains(render(t, st), `response_code="200",grpc_response_status="",response_flags="-",connection_security_policy="unknown"} 3`) {
		t.Error("known series not counted at the cap")
	}
}

func TestTCP(t *testing.T) {
	st := stats.NewStore()
	r := New(Options{Local: local, Stats: st})
	s := r.TCP(&TCPConn{Reporter: Destination, Peer: spiffeCert(t, "spiffe://td/ns/shop/sa/x")})
	s.Opened()
	s.Bytes(10, 20)
	s.Closed()
	out := render(t, st)
	for _, want := range []string{"istio_tcp_connections_opened_total{", "istio_tcp_received_bytes_total{", "istio_tcp_sent_bytes_total{"} {
		if !strings.Contains(out, want) {
			t.Errorf("lacks %s", want)
		}
	}
	if !strings.Contains(out, `request_protocol="tcp",response_flags="-",connection_security_policy="mutual_tls"} 20`) {
		t.Errorf("sent bytes:\n%s", out)
	}
	var nilSeries *TCPSeries
	nilSeries.Opened() // safe
}

func TestLabelEscaping(t *testing.T) {
	var b labelWriter
	b.pair("a", "x\"y\\z\nw")
	if got, want := b.String(), `a="x\"y\\z\nw"`; got != want {
		t.Errorf("%s, want %s", got, want)
	}
}

func TestRecordHTTPDoesNotAllocate(t *testing.T) {
	r := New(Options{Local: local})
	peer := spiffeCert(t, "spiffe://cluster.local/ns/shop/sa/productpage")
	q := &HTTPRequest{Reporter: Destination, Code: 200, Authority: "reviews:9080", Peer: peer, Duration: time.Millisecond}
	r.RecordHTTP(q)
	r.RecordHTTP(q) // promotes to the read map
	if n := testing.AllocsPerRun(100, func() { r.RecordHTTP(q) }); n != 0 {
		t.Errorf("%v allocations per request", n)
	}
}

// TestHostileAuthorityParses records requests whose Host header (destination_service on the
// destination side) carries quotes, backslashes, a newline and bytes that are not UTF-8, and
// parses the page with Prometheus' own parser: one such request must not make Prometheus refuse
// every metric of the proxy.
func TestHostileAuthorityParses(t *testing.T) {
	st := stats.NewStore()
	r := New(Options{Local: local, Stats: st})
	for _, host := range []string{"a\"b", `c\d`, "e\nf", "g\xff\xfeh", "caf\u00e9.example"} {
		r.RecordHTTP(&HTTPRequest{Reporter: Destination, Code: 200, Authority: host})
	}
	out := render(t, st)
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(out))
	if err != nil {
		t.Fatalf("Prometheus refuses the page: %v\n%s", err, out)
	}
	seen := map[string]bool{}
	for _, m := range fams["istio_requests_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "destination_service" {
				seen[l.GetValue()] = true
			}
		}
	}
	for _, want := range []string{"a\"b", `c\d`, "e\nf", "g\ufffd\ufffdh", "caf\u00e9.example"} {
		if !seen[want] {
			t.Errorf("destination_service %q missing: %v", want, seen)
		}
	}
}
