// Package dashboard serves straitd's mesh dashboard on its HTTP (monitoring/debug) port: a
// page that draws the live service graph (package topology) and, per clicked service or
// workload, the configuration that applies to it (package describe, as `strait describe`) and
// its proxies' sync status (as `strait proxy-status`). The page is plain HTML, JavaScript and
// SVG embedded in the binary: nothing is fetched from elsewhere.
//
// Everything is read-only (GET and HEAD only). The page renders every value from metrics or
// config as text (labels are attacker-influenced: a request's Host header can become a
// destination_service), and a strict Content-Security-Policy allows only this origin's own
// script, style and connections.
package dashboard

import (
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"slices"
	"strings"

	"github.com/strait-mesh/strait/controlplane/describe"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/topology"
	"github.com/strait-mesh/strait/controlplane/xds"
)

// Paths served by Handler.
const (
	Path         = "/dashboard/"
	GraphPath    = Path + "api/graph"
	ServicePath  = Path + "api/service"
	WorkloadPath = Path + "api/workload"
)

//go:embed static
var static embed.FS

// Options are what Handler reads on every request.
type Options struct {
	// Graph returns the latest service graph. Required.
	Graph func() *topology.Graph
	// Snapshot returns the current mesh snapshot (nil before the first).
	Snapshot func() *mesh.Snapshot
	// Proxies returns the connected proxies' sync status.
	Proxies func() []xds.ProxyStatus
}

// View is the body of ServicePath and WorkloadPath: what `strait describe` reports of the
// service or workload, the sync status of the proxies serving it, and its edges in the current
// graph.
type View[R any] struct {
	Report  R                 `json:"report"`
	Proxies []xds.ProxyStatus `json:"proxies"`
	Edges   []topology.Edge   `json:"edges"`
}

// ServiceView is the body of ServicePath.
type ServiceView = View[*describe.ServiceReport]

// WorkloadView is the body of WorkloadPath.
type WorkloadView = View[*describe.WorkloadReport]

// securityHeaders allow this origin's own resources only, and no framing.
var securityHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
		"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
	"X-Content-Type-Options":       "nosniff",
	"X-Frame-Options":              "DENY",
	"Referrer-Policy":              "no-referrer",
	"Cross-Origin-Resource-Policy": "same-origin",
	"Cache-Control":                "no-store",
}

// Handler serves the page under Path and its JSON API:
//
//	GET /dashboard/                      the page (index.html, app.js, style.css)
//	GET /dashboard/api/graph             the topology.Graph
//	GET /dashboard/api/service?name=H    a ServiceView (H: hostname, NAME.NS or NAME&namespace=NS)
//	GET /dashboard/api/workload?name=W&namespace=NS   a WorkloadView
//
// Other methods get 405; a service or workload that is not found 404 with describe's message.
func Handler(o Options) http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.StripPrefix(Path, http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range securityHeaders {
			w.Header().Set(k, v)
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "the dashboard is read-only: use GET", http.StatusMethodNotAllowed)
			return
		}
		switch r.URL.Path {
		case GraphPath:
			writeJSON(w, o.Graph())
		case ServicePath:
			serveView(o, w, r, describe.Service, serviceSubject)
		case WorkloadPath:
			serveView(o, w, r, describe.Workload, workloadSubject)
		default:
			if strings.HasPrefix(r.URL.Path, Path+"api/") {
				http.NotFound(w, r)
				return
			}
			files.ServeHTTP(w, r)
		}
	})
}

func (o Options) inputs(w http.ResponseWriter) (*mesh.Snapshot, []xds.ProxyStatus, bool) {
	var snap *mesh.Snapshot
	if o.Snapshot != nil {
		snap = o.Snapshot()
	}
	if snap == nil {
		http.Error(w, "no mesh snapshot yet", http.StatusServiceUnavailable)
		return nil, nil, false
	}
	var proxies []xds.ProxyStatus
	if o.Proxies != nil {
		proxies = o.Proxies()
	}
	return snap, proxies, true
}

// serveView answers a side panel's request: report (describe.Service or describe.Workload) of
// the query's name and namespace, with the status of the proxies and the edges of the graph
// node that subject names for the report.
func serveView[R any](o Options, w http.ResponseWriter, r *http.Request,
	report func(snap *mesh.Snapshot, name, namespace string, proxies []xds.ProxyStatus) (R, error),
	subject func(R) (proxies map[string]bool, node string)) {
	q := r.URL.Query()
	name := q.Get("name")
	if name == "" {
		http.Error(w, "missing query parameter name", http.StatusBadRequest)
		return
	}
	snap, proxies, ok := o.inputs(w)
	if !ok {
		return
	}
	rep, err := report(snap, name, q.Get("namespace"), proxies)
	if !describeError(w, err) {
		return
	}
	ids, node := subject(rep)
	writeJSON(w, View[R]{Report: rep, Proxies: pick(proxies, ids), Edges: o.edgesOf(node)})
}

// serviceSubject is a service's proxies (its endpoints') and graph node.
func serviceSubject(rep *describe.ServiceReport) (map[string]bool, string) {
	ids := map[string]bool{}
	for _, ep := range rep.Endpoints {
		if ep.Proxy != "" {
			ids[ep.Proxy] = true
		}
	}
	return ids, "service:" + rep.Service.Hostname
}

// workloadSubject is a workload's proxies and graph node.
func workloadSubject(rep *describe.WorkloadReport) (map[string]bool, string) {
	ids := map[string]bool{}
	for _, p := range rep.Proxies {
		ids[p.ID] = true
	}
	return ids, "workload:" + rep.Workload.Namespace + "/" + rep.Workload.Name
}

// describeError writes err's response and reports whether there was none.
func describeError(w http.ResponseWriter, err error) bool {
	var nf *describe.NotFoundError
	switch {
	case errors.As(err, &nf):
		http.Error(w, err.Error(), http.StatusNotFound)
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	default:
		return true
	}
	return false
}

// pick returns the statuses of the proxies in ids, in their order.
func pick(all []xds.ProxyStatus, ids map[string]bool) []xds.ProxyStatus {
	out := slices.DeleteFunc(slices.Clone(all), func(p xds.ProxyStatus) bool { return !ids[p.Proxy] })
	if out == nil {
		out = []xds.ProxyStatus{}
	}
	return out
}

// edgesOf returns the current graph's edges from or to the node id.
func (o Options) edgesOf(id string) []topology.Edge {
	out := []topology.Edge{}
	for _, e := range o.Graph().Edges {
		if e.Source == id || e.Target == id {
			out = append(out, e)
		}
	}
	return out
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
