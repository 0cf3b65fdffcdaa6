package stats

import (
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func TestStoreRendersTextAndPrometheus(t *testing.T) {
	s := NewStore()
	c := s.Counter("cluster.a.upstream_rq_total", "envoy_cluster_upstream_rq_total", Tag{"envoy_cluster_name", "a"})
	c.Inc()
	c.Add(2)
	if s.Counter("cluster.a.upstream_rq_total", "ignored") != c {
		t.Fatal("second lookup returned a different counter")
	}
	g := s.Gauge("listener.x.downstream_cx_active", "envoy_listener_downstream_cx_active", Tag{"envoy_listener_address", "x"})
	g.Inc()
	g.Inc()
	g.Dec()

	var text strings.Builder
	if err := s.WriteText(&text, ""); err != nil {
		t.Fatal(err)
	}
	want := "cluster.a.upstream_rq_total: 3\nlistener.x.downstream_cx_active: 1\n"
	if text.String() != want {
		t.Fatalf("text:\n%s\nwant:\n%s", text.String(), want)
	}
	var prom strings.Builder
	if err := s.WritePrometheus(&prom); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"# TYPE envoy_cluster_upstream_rq_total counter",
		`envoy_cluster_upstream_rq_total{envoy_cluster_name="a"} 3`,
		"# TYPE envoy_listener_downstream_cx_active gauge",
		`envoy_listener_downstream_cx_active{envoy_listener_address="x"} 1`,
	} {
		if !strings.Contains(prom.String(), line) {
			t.Errorf("prometheus output lacks %q:\n%s", line, prom.String())
		}
	}
}

func TestGaugeFuncOmittedWithoutValue(t *testing.T) {
	s := NewStore()
	var v int64
	ok := false
	s.GaugeFunc("sds.default.cert_expiry_seconds", "istio_agent_cert_expiry_seconds", func() (int64, bool) { return v, ok },
		Tag{"resource_name", "default"})
	var text, prom strings.Builder
	_ = s.WriteText(&text, "")
	_ = s.WritePrometheus(&prom)
	if text.Len() != 0 || prom.Len() != 0 {
		t.Fatalf("a gauge without a value was rendered: %q %q", text.String(), prom.String())
	}
	v, ok = 86399, true
	text.Reset()
	prom.Reset()
	_ = s.WriteText(&text, "")
	_ = s.WritePrometheus(&prom)
	if text.String() != "sds.default.cert_expiry_seconds: 86399\n" {
		t.Fatalf("text: %q", text.String())
	}
	if want := "# TYPE istio_agent_cert_expiry_seconds gauge\nistio_agent_cert_expiry_seconds{resource_name=\"default\"} 86399\n"; prom.String() != want {
		t.Fatalf("prometheus: %q, want %q", prom.String(), want)
	}
}

// TestPrometheusOutputParses renders names and label values Envoy's stat names and requests can
// carry (dots, pipes, a leading digit, quotes, newlines, invalid UTF-8) and parses the page with
// Prometheus' own text parser, which refuses a whole scrape over one bad line.
func TestPrometheusOutputParses(t *testing.T) {
	s := NewStore()
	s.Counter("listener.a.ssl.connection_error", "envoy_listener_ssl.connection_error", Tag{"envoy_listener_address", "0.0.0.0_443"}).Inc()
	s.Counter("cluster.x.upstream_rq_total", "envoy_cluster_upstream_rq_total", Tag{"envoy_cluster_name", "outbound|9080||reviews.default.svc.cluster.local"}).Add(2)
	s.Counter("odd", "9odd-name|x", Tag{"tag:with-colon", "a\"b\\c\nd\xffe\u00e9"}).Inc()
	s.Gauge("g", "envoy_server_live").Set(1)
	var b strings.Builder
	if err := s.WritePrometheus(&b); err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(b.String()))
	if err != nil {
		t.Fatalf("Prometheus refuses the page: %v\n%s", err, b.String())
	}
	for _, want := range []string{"envoy_listener_ssl_connection_error", "envoy_cluster_upstream_rq_total", "_9odd_name_x", "envoy_server_live"} {
		if fams[want] == nil {
			t.Errorf("family %s missing: %s", want, b.String())
		}
	}
	lp := fams["_9odd_name_x"].GetMetric()[0].GetLabel()[0]
	if lp.GetName() != "tag_with_colon" || lp.GetValue() != "a\"b\\c\nd\ufffde\u00e9" {
		t.Errorf("label %s=%q", lp.GetName(), lp.GetValue())
	}
}
