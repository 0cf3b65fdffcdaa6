package dashboard

import (
	"encoding/json"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/mesh/meshtest"
	"github.com/strait-mesh/strait/controlplane/topology"
	"github.com/strait-mesh/strait/controlplane/xds"
)

const meshYAML = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews.shop.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{name: http, number: 9080, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1, namespace: shop}
spec: {address: 127.0.0.11, labels: {app: reviews, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v2, namespace: shop}
spec: {address: 127.0.0.12, labels: {app: reviews, version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews.shop.svc.cluster.local
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews.shop.svc.cluster.local]
  http:
  - route:
    - {destination: {host: reviews.shop.svc.cluster.local, subset: v1}, weight: 90}
    - {destination: {host: reviews.shop.svc.cluster.local, subset: v2}, weight: 10}
`

func handler(t *testing.T, snap *mesh.Snapshot) http.Handler {
	t.Helper()
	g := &topology.Graph{Nodes: []topology.Node{{ID: "service:reviews.shop.svc.cluster.local", Kind: topology.KindService, Name: "reviews"}},
		Edges: []topology.Edge{
			{Source: "workload:shop/productpage", Target: "service:reviews.shop.svc.cluster.local", Protocol: "http", RequestsPerSecond: 3, MTLS: true},
			{Source: "workload:shop/productpage", Target: "service:ratings.shop.svc.cluster.local", Protocol: "http", RequestsPerSecond: 1},
		}}
	proxies := []xds.ProxyStatus{
		{Proxy: "sidecar~127.0.0.11~reviews-v1.shop~shop.svc.cluster.local", Namespace: "shop", Types: map[string]xds.TypeStatus{"CDS": {Status: xds.Synced}}},
		{Proxy: "sidecar~127.0.0.99~other.shop~shop.svc.cluster.local", Namespace: "shop"},
	}
	return Handler(Options{Graph: func() *topology.Graph { return g },
		Snapshot: func() *mesh.Snapshot { return snap }, Proxies: func() []xds.ProxyStatus { return proxies }})
}

func get(h http.Handler, method, target string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	return rec
}

func TestPage(t *testing.T) {
	h := handler(t, nil)
	for path, want := range map[string]string{
		"/dashboard/":          "text/html",
		"/dashboard/app.js":    "text/javascript",
		"/dashboard/style.css": "text/css",
	} {
		rec := get(h, http.MethodGet, path)
		if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), want) {
			t.Errorf("%s: %d %q", path, rec.Code, rec.Header().Get("Content-Type"))
		}
		csp := rec.Header().Get("Content-Security-Policy")
		if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: Content-Security-Policy %q", path, csp)
		}
		if rec.Header().Get("X-Content-Type-Options") != "nosniff" || rec.Header().Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("%s: headers %v", path, rec.Header())
		}
	}
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		if rec := get(h, m, "/dashboard/api/graph"); rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("%s: %d, want 405", m, rec.Code)
		}
	}
	if rec := get(h, http.MethodGet, "/dashboard/api/nothing"); rec.Code != http.StatusNotFound {
		t.Errorf("unknown API path: %d", rec.Code)
	}
}

// TestPageRendersTextOnly guards the page's safety rule: values are set as text, never
// parsed as HTML, and nothing is loaded from another origin.
func TestPageRendersTextOnly(t *testing.T) {
	sub, _ := fs.Sub(static, "static")
	forbidden := regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|https?://(?:[^w]|w[^w]|ww[^w])`)
	inline := regexp.MustCompile(`<script[^>]*>[^<]|\son[a-z]+=|<style`)
	err := fs.WalkDir(sub, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(sub, path)
		if err != nil {
			return err
		}
		text := strings.ReplaceAll(string(b), "http://www.w3.org/2000/svg", "")
		if m := forbidden.FindString(text); m != "" {
			t.Errorf("%s uses %q", path, m)
		}
		if strings.HasSuffix(path, ".html") && inline.MatchString(text) {
			t.Errorf("%s has inline script", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestGraphAPI(t *testing.T) {
	rec := get(handler(t, nil), http.MethodGet, GraphPath)
	var g topology.Graph
	if err := json.Unmarshal(rec.Body.Bytes(), &g); err != nil || rec.Code != http.StatusOK || len(g.Edges) != 2 {
		t.Fatalf("graph: %d %v %s", rec.Code, err, rec.Body)
	}
	if rec.Header().Get("Content-Type") != "application/json" {
		t.Errorf("content type %q", rec.Header().Get("Content-Type"))
	}
}

func TestServiceAPI(t *testing.T) {
	if rec := get(handler(t, nil), http.MethodGet, ServicePath+"?name=reviews.shop"); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("before a snapshot: %d", rec.Code)
	}
	h := handler(t, meshtest.Snapshot(t, "mesh.yaml", 1, nil, meshYAML))
	rec := get(h, http.MethodGet, ServicePath+"?name=reviews.shop.svc.cluster.local")
	if rec.Code != http.StatusOK {
		t.Fatalf("service: %d %s", rec.Code, rec.Body)
	}
	var v ServiceView
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	// describe's report: the VirtualService's split and the subsets.
	if v.Report.Service.Hostname != "reviews.shop.svc.cluster.local" || len(v.Report.VirtualServices) != 1 ||
		len(v.Report.VirtualServices[0].Routes) != 1 || len(v.Report.VirtualServices[0].Routes[0].Destinations) != 2 ||
		v.Report.VirtualServices[0].Routes[0].Destinations[1].Weight != 10 || v.Report.DestinationRule == nil {
		t.Errorf("report: %s", rec.Body)
	}
	// Only the proxies of its endpoints, and only its edges.
	if len(v.Proxies) != 1 || v.Proxies[0].Proxy != "sidecar~127.0.0.11~reviews-v1.shop~shop.svc.cluster.local" {
		t.Errorf("proxies: %+v", v.Proxies)
	}
	if len(v.Edges) != 1 || !v.Edges[0].MTLS {
		t.Errorf("edges: %+v", v.Edges)
	}
	for query, code := range map[string]int{
		"":                          http.StatusBadRequest,
		"?name=nothing.shop":        http.StatusNotFound,
		"?name=%3Cscript%3E.shop":   http.StatusNotFound,
		"?name=reviews&namespace=x": http.StatusNotFound,
	} {
		rec := get(h, http.MethodGet, ServicePath+query)
		if rec.Code != code {
			t.Errorf("%q: %d, want %d (%s)", query, rec.Code, code, rec.Body)
		}
		if ct := rec.Header().Get("Content-Type"); strings.Contains(ct, "html") {
			t.Errorf("%q: error as %s", query, ct)
		}
	}
}

func TestWorkloadAPI(t *testing.T) {
	h := handler(t, meshtest.Snapshot(t, "mesh.yaml", 1, nil, meshYAML))
	rec := get(h, http.MethodGet, WorkloadPath+"?name=reviews-v1&namespace=shop")
	var v WorkloadView
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("workload: %d %v %s", rec.Code, err, rec.Body)
	}
	if v.Report.Workload.Name != "reviews-v1" || len(v.Proxies) != 1 || len(v.Report.Services) != 1 {
		t.Errorf("workload view: %s", rec.Body)
	}
}
