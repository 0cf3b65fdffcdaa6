package stats

import (
	"strings"
	"testing"
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
