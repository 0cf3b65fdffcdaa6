package describe

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/mesh/meshtest"
	"github.com/strait-mesh/strait/controlplane/xds"
)

// testSnapshot is the mesh of testdata/mesh.yaml.
func testSnapshot(t *testing.T) *mesh.Snapshot {
	t.Helper()
	b, err := os.ReadFile("testdata/mesh.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return meshtest.Snapshot(t, "testdata/mesh.yaml", 1, nil, string(b))
}

// testProxies: reviews-v1's sidecar is connected and synced.
var testProxies = []xds.ProxyStatus{{
	Proxy: "sidecar~127.0.0.11~reviews-v1.default~default.svc.cluster.local", Namespace: "default",
	Types: map[string]xds.TypeStatus{"CDS": {Status: xds.Synced}, "LDS": {Status: xds.Synced}, "EDS": {Status: xds.Synced}, "RDS": {Status: xds.Stale}},
}}

func TestServiceNames(t *testing.T) {
	snap := testSnapshot(t)
	for _, c := range []struct {
		name, ns string
		want     string // hostname/namespace, or "" for a not-found error containing err
		err      string
	}{
		{name: "reviews", want: "reviews.default.svc.cluster.local/default"},
		{name: "reviews.default", want: "reviews.default.svc.cluster.local/default"},
		{name: "reviews", ns: "default", want: "reviews.default.svc.cluster.local/default"},
		{name: "reviews.default.svc.cluster.local", want: "reviews.default.svc.cluster.local/default"},
		{name: "ratings.default.svc.cluster.local", ns: "other", want: "ratings.default.svc.cluster.local/other"},
		{name: "ratings", ns: "other", want: "ratings.default.svc.cluster.local/other"}, // its ServiceEntry's name
		{name: "ratings.default.svc.cluster.local", err: `names 2 services`},
		{name: "reviews", ns: "other", err: `no service "reviews" in namespace other (its services: ratings.default.svc.cluster.local)`},
		{name: "nothing.empty", err: `no service "nothing" in namespace empty (it has no services)`},
		{name: "", err: "no service name given"},
	} {
		r, err := Service(snap, c.name, c.ns, nil)
		checkLookup(t, "Service", c.name, c.ns, r, err, c.err, c.want,
			func(r *ServiceReport) string { return r.Service.Hostname + "/" + r.Service.Namespace })
	}
}

func TestServiceReport(t *testing.T) {
	r, err := Service(testSnapshot(t), "reviews", "", testProxies)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Service.Ports; len(got) != 1 || got[0] != (PortInfo{Name: "http", Number: 9080, Protocol: "HTTP"}) {
		t.Errorf("ports = %+v", got)
	}
	if len(r.Endpoints) != 2 || r.Endpoints[0].Workload != "reviews-v1.default" || !r.Endpoints[0].Healthy ||
		r.Endpoints[0].Proxy != testProxies[0].Proxy || r.Endpoints[1].Proxy != "" {
		t.Errorf("endpoints = %+v", r.Endpoints)
	}
	dr := r.DestinationRule
	if dr == nil || dr.Name != "reviews" || len(dr.Subsets) != 3 {
		t.Fatalf("destination rule = %+v", dr)
	}
	for i, want := range []int{1, 1, 0} {
		if dr.Subsets[i].Endpoints != want || dr.Subsets[i].Matches != nil {
			t.Errorf("subset %s: %d endpoints (matches %v), want %d", dr.Subsets[i].Name, dr.Subsets[i].Endpoints, dr.Subsets[i].Matches, want)
		}
	}
	wantTP := &TrafficPolicy{
		TLSMode: "ISTIO_MUTUAL", LoadBalancer: []string{"simple=LEAST_REQUEST"},
		ConnectionPool:   []string{"http.http1MaxPendingRequests=10", "tcp.maxConnections=100"},
		OutlierDetection: []string{"baseEjectionTime=30s", "consecutive5xxErrors=5", "interval=10s"},
	}
	if !reflect.DeepEqual(dr.TrafficPolicy, wantTP) {
		t.Errorf("traffic policy = %+v, want %+v", dr.TrafficPolicy, wantTP)
	}
	if tp := dr.Subsets[1].TrafficPolicy; tp == nil || !reflect.DeepEqual(tp.LoadBalancer, []string{"simple=ROUND_ROBIN"}) {
		t.Errorf("subset v2 policy = %+v", tp)
	}

	if len(r.VirtualServices) != 2 {
		t.Fatalf("virtual services = %+v", r.VirtualServices)
	}
	vs := r.VirtualServices[0]
	if vs.Name != "reviews" || vs.Reason != "host" || !reflect.DeepEqual(vs.Gateways, []string{"mesh"}) || len(vs.Routes) != 2 {
		t.Errorf("reviews VirtualService = %+v", vs)
	}
	if got := vs.Routes[0]; got.Name != "jason" || !reflect.DeepEqual(got.Match, []string{"headers.end-user.exact=jason"}) ||
		!reflect.DeepEqual(got.Destinations, []DestinationInfo{{Host: "reviews", Subset: "v2", Weight: 100, ThisService: true}}) {
		t.Errorf("route 0 = %+v", got)
	}
	if got := vs.Routes[1]; len(got.Destinations) != 2 || got.Destinations[1].Weight != 50 ||
		!reflect.DeepEqual(got.Other, []string{"timeout: 5s", "retries: attempts=3 perTryTimeout=2s"}) {
		t.Errorf("route 1 = %+v", got)
	}
	gwvs := r.VirtualServices[1]
	if gwvs.Name != "bookstore" || gwvs.Reason != "destination" || len(gwvs.Routes) != 1 ||
		!reflect.DeepEqual(gwvs.Routes[0].Match, []string{"/reviews*", "/r"}) || gwvs.Routes[0].Destinations[0].Port != 9080 {
		t.Errorf("bookstore VirtualService = %+v", gwvs)
	}
	if len(r.Gateways) != 1 || r.Gateways[0].Name != "ingress" || r.Gateways[0].VirtualService != "default/bookstore" ||
		!reflect.DeepEqual(r.Gateways[0].Servers, []string{"http 80/HTTP hosts *"}) {
		t.Errorf("gateways = %+v", r.Gateways)
	}

	// reviews-v1 has its own PeerAuthentication: two groups of workloads.
	if len(r.Workloads) != 2 {
		t.Fatalf("workloads = %+v", r.Workloads)
	}
	v1, v2 := r.Workloads[0], r.Workloads[1]
	if !reflect.DeepEqual(v1.Workloads, []string{"reviews-v1.default"}) || !reflect.DeepEqual(v1.MTLS, []PortMode{{Port: 9080, Mode: "PERMISSIVE"}}) ||
		!reflect.DeepEqual(v1.PeerAuthentications, []string{"istio-system/default", "default/reviews-v1"}) {
		t.Errorf("reviews-v1 policies = %+v", v1)
	}
	if !reflect.DeepEqual(v2.MTLS, []PortMode{{Port: 9080, Mode: "STRICT"}}) || !reflect.DeepEqual(v2.PeerAuthentications, []string{"istio-system/default"}) {
		t.Errorf("reviews-v2 policies = %+v", v2)
	}
	for _, p := range r.Workloads {
		if p.Sidecar != "default/default" || len(p.AuthorizationPolicies) != 1 || p.AuthorizationPolicies[0] != (PolicyInfo{Name: "reviews-viewer", Namespace: "default", Action: "ALLOW", Rules: 1}) ||
			!reflect.DeepEqual(p.RequestAuthentications, []string{"default/jwt"}) {
			t.Errorf("policies = %+v", p)
		}
	}
	if want := []string{"subset v3 of DestinationRule default/reviews selects no endpoint"}; !reflect.DeepEqual(r.Warnings, want) {
		t.Errorf("warnings = %q, want %q", r.Warnings, want)
	}
}

// TestServiceWarnings: a route to a subset no DestinationRule defines, a gateway that does not
// exist, a second VirtualService for the same host, and a service without endpoints.
func TestServiceWarnings(t *testing.T) {
	snap := meshtest.Snapshot(t, "w.yaml", 1, nil,
		meshtest.Object("ServiceEntry", "db", "default", "  hosts: [db.example.com]\n  ports: [{name: tcp, number: 5432, protocol: TCP}]\n  resolution: STATIC\n"),
		meshtest.Object("VirtualService", "a", "default", "  hosts: [db.example.com]\n  tcp: [{route: [{destination: {host: db.example.com, subset: v9}}]}]\n"),
		meshtest.Object("VirtualService", "b", "default", "  hosts: [db.example.com]\n  gateways: [nowhere]\n  tcp: [{route: [{destination: {host: db.example.com}}]}]\n"),
		meshtest.Object("VirtualService", "c", "default", "  hosts: [db.example.com]\n  tcp: [{route: [{destination: {host: db.example.com}}]}]\n"),
	)
	r, err := Service(snap, "db.example.com", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"the service has no endpoints: requests to it fail with 503 UH (no healthy upstream)",
		`VirtualService default/a routes to subset "v9", which no DestinationRule for db.example.com defines (IST0101)`,
		"VirtualService default/c is ignored for db.example.com on the mesh gateway: default/a is older (IST0109)",
		"VirtualService default/b binds to gateway default/nowhere, which does not exist (IST0101)",
	}
	if !reflect.DeepEqual(r.Warnings, want) {
		t.Errorf("warnings:\n%q\nwant:\n%q", r.Warnings, want)
	}
	if len(r.Workloads) != 0 {
		t.Errorf("workloads of an external service without endpoints = %+v", r.Workloads)
	}
	// A mesh-internal one is described as a workload of its namespace.
	snap = meshtest.Snapshot(t, "w.yaml", 1, nil,
		meshtest.Object("ServiceEntry", "db", "default", "  hosts: [db.example.com]\n  location: MESH_INTERNAL\n  ports: [{name: tcp, number: 5432, protocol: TCP}]\n  resolution: STATIC\n"))
	if r, err = Service(snap, "db", "", nil); err != nil {
		t.Fatal(err)
	}
	if len(r.Workloads) != 1 || r.Workloads[0].Workloads != nil || r.Workloads[0].MTLS[0] != (PortMode{Mode: "PERMISSIVE"}) {
		t.Errorf("workloads of a service without endpoints = %+v", r.Workloads)
	}
}

func TestWorkloadReport(t *testing.T) {
	snap := testSnapshot(t)
	for _, c := range []struct{ name, ns, wantName, err string }{
		{name: "reviews-v1", wantName: "reviews-v1.default"},
		{name: "reviews-v1.default", wantName: "reviews-v1.default"},
		{name: "reviews-v1", ns: "default", wantName: "reviews-v1.default"},
		{name: "127.0.0.11", wantName: "reviews-v1.default"},
		{name: "ratings-0", wantName: "ratings-0.default"}, // an inline endpoint
		{name: "reviews-v1.other", err: `no workload "reviews-v1" in namespace other`},
		{name: "127.9.9.9", err: "no workload at 127.9.9.9"},
	} {
		r, err := Workload(snap, c.name, c.ns, testProxies)
		checkLookup(t, "Workload", c.name, c.ns, r, err, c.err, c.wantName,
			func(r *WorkloadReport) string { return r.Workload.Name + "." + r.Workload.Namespace })
	}

	r, err := Workload(snap, "reviews-v1", "", testProxies)
	if err != nil {
		t.Fatal(err)
	}
	if r.Workload.Source != "WorkloadEntry/default/reviews-v1" || r.Workload.Address != "127.0.0.11" || r.Workload.Origin != "testdata/mesh.yaml" {
		t.Errorf("workload = %+v", r.Workload)
	}
	if len(r.Proxies) != 1 || r.Proxies[0].Status["RDS"] != xds.Stale {
		t.Errorf("proxies = %+v", r.Proxies)
	}
	if len(r.Services) != 1 || r.Services[0].Service.Hostname != "reviews.default.svc.cluster.local" || len(r.Services[0].Workloads) != 0 {
		t.Fatalf("services = %+v", r.Services)
	}
	var matches []string
	for _, ss := range r.Services[0].DestinationRule.Subsets {
		if ss.Matches == nil {
			t.Fatalf("subset %s: no match result", ss.Name)
		}
		if *ss.Matches {
			matches = append(matches, ss.Name)
		}
	}
	if !reflect.DeepEqual(matches, []string{"v1"}) {
		t.Errorf("matching subsets = %v", matches)
	}
	if p := r.Policies; !reflect.DeepEqual(p.MTLS, []PortMode{{Port: 9080, Mode: "PERMISSIVE"}}) || len(p.AuthorizationPolicies) != 1 || p.Sidecar != "default/default" {
		t.Errorf("policies = %+v", p)
	}
	if r.Warnings != nil {
		t.Errorf("warnings = %q", r.Warnings)
	}

	// reviews-v2 has no connected proxy.
	if r, err = Workload(snap, "reviews-v2", "", testProxies); err != nil || !reflect.DeepEqual(r.Warnings, []string{"no proxy of this workload is connected to straitd"}) {
		t.Errorf("reviews-v2: %v, warnings %q", err, r.Warnings)
	}
}

// TestWorkloadProxyOnly: a connected proxy that no registry entry describes is a workload too.
func TestWorkloadProxyOnly(t *testing.T) {
	proxies := []xds.ProxyStatus{{Proxy: "router~127.0.0.20~ingress.istio-system~istio-system.svc.cluster.local"}}
	r, err := Workload(testSnapshot(t), "ingress.istio-system", "", proxies)
	if err != nil {
		t.Fatal(err)
	}
	if r.Workload.Source != "proxy" || r.Workload.Address != "127.0.0.20" || len(r.Proxies) != 1 || len(r.Services) != 0 {
		t.Errorf("report = %+v", r)
	}
	if r.Policies.MTLS[0].Mode != "STRICT" || !reflect.DeepEqual(r.Policies.PeerAuthentications, []string{"istio-system/default"}) {
		t.Errorf("policies = %+v", r.Policies)
	}
}

func TestHandler(t *testing.T) {
	snap := testSnapshot(t)
	var current *mesh.Snapshot
	h := Handler(Options{Snapshot: func() *mesh.Snapshot { return current }, Proxies: func() []xds.ProxyStatus { return testProxies }})
	get := func(method, query string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, Path+"?"+query, nil))
		return rec.Code, rec.Body.String()
	}
	if code, _ := get(http.MethodGet, "kind=service&name=reviews"); code != http.StatusServiceUnavailable {
		t.Errorf("before the first snapshot: %d", code)
	}
	current = snap
	for _, c := range []struct {
		method, query string
		code          int
		body          string
	}{
		{http.MethodGet, "kind=service&name=reviews", http.StatusOK, `"hostname": "reviews.default.svc.cluster.local"`},
		{http.MethodGet, "name=reviews.default", http.StatusOK, `"hostname": "reviews.default.svc.cluster.local"`},
		{http.MethodGet, "kind=workload&name=reviews-v1&namespace=default", http.StatusOK, `"source": "WorkloadEntry/default/reviews-v1"`},
		{http.MethodGet, "kind=service&name=nothing", http.StatusNotFound, `no service "nothing" in namespace default`},
		{http.MethodGet, "kind=gateway&name=x", http.StatusBadRequest, `unknown kind "gateway"`},
		{http.MethodGet, "kind=service", http.StatusBadRequest, "missing query parameter name"},
		{http.MethodPost, "kind=service&name=reviews", http.StatusMethodNotAllowed, "read-only"},
	} {
		code, body := get(c.method, c.query)
		if code != c.code || !strings.Contains(body, c.body) {
			t.Errorf("%s %s = %d %s, want %d with %q", c.method, c.query, code, body, c.code, c.body)
		}
		if code == http.StatusOK && !json.Valid([]byte(body)) {
			t.Errorf("%s: invalid JSON", c.query)
		}
	}
}

// TestFlatten: nested messages, lists of scalars and of objects, and the bound on hostile input.
func TestFlatten(t *testing.T) {
	var out []string
	walkJSON("", map[string]any{"a": map[string]any{"b": 1, "c": []any{"x", "y"}}, "d": []any{map[string]any{"e": true}}, "f": map[string]any{}}, 0, &out)
	want := map[string]bool{"a.b=1": true, "a.c=x,y": true, "d[0].e=true": true, "f={}": true}
	if len(out) != len(want) {
		t.Fatalf("flatten = %q", out)
	}
	for _, s := range out {
		if !want[s] {
			t.Errorf("unexpected %q in %q", s, out)
		}
	}
	big := make([]any, 500)
	for i := range big {
		big[i] = map[string]any{"k": i}
	}
	out = nil
	walkJSON("l", big, 0, &out)
	if len(out) > maxFlatten+1 {
		t.Errorf("flatten of 500 objects gave %d pairs", len(out))
	}
	if flatten("", nil) != nil {
		t.Error("flatten(nil) is not nil")
	}
}

// checkLookup checks the result r and error err of what(name, ns), a Service or Workload lookup:
// with wantErr set, a NotFoundError containing it; otherwise no error and id(r) == want.
func checkLookup[R any](t *testing.T, what, name, ns string, r R, err error, wantErr, want string, id func(R) string) {
	t.Helper()
	switch {
	case wantErr != "":
		var nf *NotFoundError
		if !errors.As(err, &nf) || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%s(%q, %q) error = %v, want a NotFoundError with %q", what, name, ns, err, wantErr)
		}
	case err != nil:
		t.Errorf("%s(%q, %q): %v", what, name, ns, err)
	case id(r) != want:
		t.Errorf("%s(%q, %q) = %s, want %s", what, name, ns, id(r), want)
	}
}
