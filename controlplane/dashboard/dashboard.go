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

// ServiceView is the body of ServicePath: what `strait describe service` reports, the sync
// status of the proxies serving the service, and its edges in the current graph.
type ServiceView struct {
	Report  *describe.ServiceReport `json:"report"`
	Proxies []xds.ProxyStatus       `json:"proxies"`
	Edges   []topology.Edge         `json:"edges"`
}

// WorkloadView is the body of WorkloadPath.
type WorkloadView struct {
	Report  *describe.WorkloadReport `json:"report"`
	Proxies []xds.ProxyStatus        `json:"proxies"`
	Edges   []topology.Edge          `json:"edges"`
}

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
			o.serveService(w, r)
		case WorkloadPath:
			o.serveWorkload(w, r)
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

func (o Options) serveService(w http.ResponseWriter, r *http.Request) {
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
	rep, err := describe.Service(snap, name, q.Get("namespace"), proxies)
	if !describeError(w, err) {
		return
	}
	ids := map[string]bool{}
	for _, ep := range rep.Endpoints {
		if ep.Proxy != "" {
			ids[ep.Proxy] = true
		}
	}
	writeJSON(w, ServiceView{Report: rep, Proxies: pick(proxies, ids), Edges: o.edgesOf("service:" + rep.Service.Hostname)})
}

func (o Options) serveWorkload(w http.ResponseWriter, r *http.Request) {
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
	rep, err := describe.Workload(snap, name, q.Get("namespace"), proxies)
	if !describeError(w, err) {
		return
	}
	ids := map[string]bool{}
	for _, p := range rep.Proxies {
		ids[p.ID] = true
	}
	writeJSON(w, WorkloadView{Report: rep, Proxies: pick(proxies, ids),
		Edges: o.edgesOf("workload:" + rep.Workload.Namespace + "/" + rep.Workload.Name)})
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
