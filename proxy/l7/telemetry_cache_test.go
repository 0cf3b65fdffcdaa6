package l7

import (
	"io"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/strait-mesh/strait/internal/workloadtable"
	"github.com/strait-mesh/strait/proxy/stats"
	"github.com/strait-mesh/strait/proxy/telemetry"
)

// TestTelemetrySourceConcurrentPeers sends requests to two compiled clusters from many
// connections at once at the source reporter, with a workload table that knows the upstream
// hosts' address: every label combination (cluster x response code) is counted exactly, with
// the destination workload the table gives for the host the cluster picked (the recorder's
// caches of recent series and upstream hosts, shared by the connections' goroutines).
func TestTelemetrySourceConcurrentPeers(t *testing.T) {
	codeUpstream := func() string { // answers with the status code of the path's last segment
		return startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			code, err := strconv.Atoi(path.Base(r.URL.Path))
			if err != nil {
				code = 200
			}
			w.WriteHeader(code)
		}), false)
	}
	clusters := []string{"outbound|80||api.shop.svc.cluster.local", "outbound|80||db.shop.svc.cluster.local"}
	env := &testEnv{clusters: map[string]Upstream{
		clusters[0]: staticCluster(t, clusters[0], codeUpstream(), false),
		clusters[1]: staticCluster(t, clusters[1], codeUpstream(), false),
	}}
	st := stats.NewStore()
	rec := telemetry.New(telemetry.Options{Local: telemetryLocal, Stats: st})
	rec.SetPeers(telemetry.CompilePeers(workloadtable.Table{TrustDomains: []string{"cluster.local"}, Workloads: []workloadtable.Workload{
		{Name: "backend-v2", Namespace: "shop", ServiceAccount: "backend", Addresses: []string{"127.0.0.1"}, App: "backend", Version: "v2",
			CanonicalService: "backend", CanonicalRevision: "v2", Cluster: "Kubernetes", Sidecar: true}}}, nil))
	hcm := inlineHCM(oneVhost(fwdRoute("db", pfx("/db/"), toCluster(clusters[1])), fwdRoute("api", pfx("/"), toCluster(clusters[0]))))
	hcm.StatPrefix = "outbound_0.0.0.0_80"
	h, err := New(hcm, env, Options{Stats: st, Telemetry: rec})
	if err != nil {
		t.Fatal(err)
	}
	addr := serveConns(t, h, loopbackInfo)

	const conns, rounds = 8, 10
	codes := []int{200, 201, 404, 503}
	var wg sync.WaitGroup
	for g := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := h1Client()
			for i := range rounds * len(codes) * 2 {
				code := codes[(i/2+g)%len(codes)]
				p := "/" + strconv.Itoa(code)
				if i&1 == 1 {
					p = "/db" + p
				}
				resp, err := c.Get("http://" + addr + p)
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != code {
					t.Errorf("%s: got %d", p, resp.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	series := func(svc string, code int) string {
		return `reporter="source",source_workload="web-v1",source_canonical_service="web",source_canonical_revision="v1",` +
			`source_workload_namespace="shop",source_principal="unknown",source_app="web",source_version="v1",source_cluster="Kubernetes",` +
			`destination_workload="backend-v2",destination_workload_namespace="shop",destination_principal="unknown",` +
			`destination_app="backend",destination_version="v2",destination_service="` + svc + `.shop.svc.cluster.local",` +
			`destination_canonical_service="backend",destination_canonical_revision="v2",destination_service_name="` + svc + `",` +
			`destination_service_namespace="shop",destination_cluster="Kubernetes",request_protocol="http",response_code="` +
			strconv.Itoa(code) + `",grpc_response_status="",response_flags="-",connection_security_policy="unknown"`
	}
	// Each connection sends each (cluster, code) rounds times.
	perSeries := strconv.Itoa(conns * rounds)
	var lines []string
	for _, svc := range []string{"api", "db"} {
		for _, code := range codes {
			lines = append(lines, "istio_requests_total{"+series(svc, code)+"} "+perSeries+"\n")
		}
	}
	// finish runs after the response went out: wait until every request is counted.
	waitFor(t, "every request counted", func() bool {
		out := prometheusText(t, st)
		for _, l := range lines {
			if !strings.Contains(out, l) {
				return false
			}
		}
		return true
	})
	out := prometheusText(t, st)
	if n := strings.Count(out, "\nistio_requests_total{"); n != 2*len(codes) {
		t.Errorf("%d istio_requests_total series, want %d:\n%s", n, 2*len(codes), out)
	}
	if rec.Dropped() != 0 {
		t.Errorf("%d dropped", rec.Dropped())
	}
}
