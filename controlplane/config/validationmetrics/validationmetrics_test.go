package validationmetrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/strait-mesh/strait/controlplane/config"
)

func TestRecord(t *testing.T) {
	reg := prometheus.NewRegistry()
	c, err := New(reg)
	if err != nil {
		t.Fatal(err)
	}
	objs, errs := config.Load("test.yaml", []byte(`apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: good, namespace: default}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews}}]}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: bad, namespace: default}
spec:
  hosts: [api.example.com]
  ports: [{number: 0, name: http, protocol: HTTP}]
---
apiVersion: example.com/v1
kind: NoSuchKind
metadata: {name: x}
`))
	if len(objs) != 1 || len(errs) != 2 {
		t.Fatalf("Load: %d objects, errors %v", len(objs), errs)
	}
	c.Record(objs, errs)
	for _, tc := range []struct {
		c    prometheus.Collector
		want float64
	}{
		{c.passed.WithLabelValues("networking.istio.io", "v1beta1", "virtualservices"), 1},
		{c.failed.WithLabelValues("networking.istio.io", "v1", "serviceentries", ReasonInvalidResource), 1},
		{c.failed.WithLabelValues("unknown", "unknown", "unknown", ReasonDecodeError), 1},
	} {
		if got := value(t, tc.c); got != tc.want {
			t.Errorf("got %v, want %v", got, tc.want)
		}
	}
	if _, err := New(reg); err == nil {
		t.Error("a second registration succeeded")
	}
	var none *Counters
	none.Record(objs, errs) // a nil *Counters counts nothing
}

func TestResource(t *testing.T) {
	for k, want := range map[config.Kind]string{
		config.VirtualService: "virtualservices", config.ServiceEntry: "serviceentries", config.WorkloadEntry: "workloadentries",
		config.Gateway: "gateways", config.Telemetry: "telemetries", config.Secret: "secrets",
		config.AuthorizationPolicy: "authorizationpolicies",
	} {
		if got := Resource(k); got != want {
			t.Errorf("Resource(%s) = %q, want %q", k, got, want)
		}
	}
}

// value reads a single-series counter.
func value(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var m dto.Metric
	if err := (<-ch).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
