package xds

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/strait-mesh/strait/internal/node"
)

// Sync states of one resource type for one proxy, as istioctl proxy-status reports them.
const (
	Synced  = "SYNCED"   // the proxy ACKed the current version
	Stale   = "STALE"    // the current version is sent and not yet ACKed, or NACKed
	NotSent = "NOT SENT" // nothing of this type was sent on the current stream
)

// statusTypes are reported for every proxy; SDS and others only when sent.
var statusTypes = []string{resource.ClusterType, resource.ListenerType, resource.EndpointType, resource.RouteType}

// ProxyStatus is one proxy's entry in /debug/syncz.
type ProxyStatus struct {
	Proxy     string `json:"proxy"`
	Namespace string `json:"namespace"`
	// Identity is the SPIFFE ID the proxy proved on the mesh port; empty when unauthenticated.
	Identity     string                `json:"identity,omitempty"`
	Version      string                `json:"version,omitempty"` // the proxy's own (its node's user agent version)
	ControlPlane string                `json:"controlPlane,omitempty"`
	Protocol     string                `json:"protocol"` // "delta" or "sotw"
	ConnectedAt  time.Time             `json:"connectedAt"`
	MeshVersion  uint64                `json:"meshVersion"` // mesh snapshot its resources were generated from
	Streams      int                   `json:"streams"`
	Types        map[string]TypeStatus `json:"types"` // CDS, LDS, EDS, RDS, SDS, ...
	LastNack     *nackEvent            `json:"lastNack,omitempty"`
	// AdminAddress and StatsAddress are the proxy's admin interface and Prometheus
	// /stats/prometheus (host:port) as its node metadata reports them (an unspecified host
	// replaced by the proxy's IP); empty when it reports none.
	AdminAddress string `json:"adminAddress,omitempty"`
	StatsAddress string `json:"statsAddress,omitempty"`
}

// TypeStatus is the sync state of one resource type of one proxy.
type TypeStatus struct {
	Status       string    `json:"status"`
	Version      string    `json:"version,omitempty"` // generated (current) version
	SentVersion  string    `json:"sentVersion,omitempty"`
	AckedVersion string    `json:"ackedVersion,omitempty"`
	SentAt       time.Time `json:"sentAt,omitzero"`
	AckedAt      time.Time `json:"ackedAt,omitzero"`
}

// Status returns the sync status of every connected proxy, sorted by proxy ID.
func (s *Server) Status() []ProxyStatus {
	s.connMu.Lock()
	type entry struct {
		p     *proxyState
		st    *stream
		conns int
	}
	list := make([]entry, 0, len(s.proxies))
	for _, p := range s.proxies {
		list = append(list, entry{p, p.latest, p.conns})
	}
	s.connMu.Unlock()

	out := make([]ProxyStatus, 0, len(list))
	for _, e := range list {
		ps := ProxyStatus{
			Proxy: e.p.key, Namespace: e.p.proxy.Namespace, Identity: e.p.proxy.Identity, ControlPlane: s.opts.ControlPlane,
			ConnectedAt: e.p.connectedAt, Streams: e.conns, Types: make(map[string]TypeStatus),
			AdminAddress: proxyAddress(e.p.proxy, node.MetaAdminAddress), StatsAddress: proxyAddress(e.p.proxy, node.MetaStatsAddress),
		}
		e.p.genMu.Lock()
		ps.MeshVersion = e.p.meshVersion
		ps.Version = e.p.proxy.Node.GetUserAgentVersion()
		generated := e.p.generated.typeVersions()
		e.p.genMu.Unlock()
		e.p.stMu.Lock()
		if e.p.lastNack != nil {
			n := *e.p.lastNack
			ps.LastNack = &n
		}
		e.p.stMu.Unlock()

		sent := map[string]typeStatus{}
		if e.st != nil {
			ps.Protocol = "sotw"
			if e.st.delta {
				ps.Protocol = "delta"
			}
			e.st.mu.Lock()
			for t, ts := range e.st.types {
				sent[t] = *ts
			}
			e.st.mu.Unlock()
		}
		types := slices.Clone(statusTypes)
		for t := range sent {
			if !slices.Contains(types, t) {
				types = append(types, t)
			}
		}
		for _, t := range types {
			ts, ok := sent[t]
			st := TypeStatus{Status: NotSent, Version: generated[t]}
			if ok {
				st.SentVersion, st.AckedVersion, st.SentAt, st.AckedAt = ts.sentVersion, ts.ackedVersion, ts.sentAt, ts.ackedAt
				// SYNCED: the proxy accepted what it should have now. After a NACK it keeps its
				// last accepted version, which is current again once the config is fixed.
				want := st.Version
				if want == "" {
					want = ts.sentVersion
				}
				st.Status = Stale
				if !ts.ackedAt.IsZero() && ts.ackedVersion == want && (!ts.nacked || ts.sentVersion != want) {
					st.Status = Synced
				}
			}
			ps.Types[shortType(t)] = st
		}
		foldVHDS(ps.Types)
		out = append(out, ps)
	}
	slices.SortFunc(out, func(a, b ProxyStatus) int { return strings.Compare(a.Proxy, b.Proxy) })
	return out
}

// serveSyncz writes Status as JSON. ?proxy=ID limits the output to proxies whose ID contains ID.
func (s *Server) serveSyncz(w http.ResponseWriter, r *http.Request) {
	list := s.Status()
	if q := r.URL.Query().Get("proxy"); q != "" {
		list = slices.DeleteFunc(list, func(p ProxyStatus) bool { return !strings.Contains(p.Proxy, q) })
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(list)
}

// foldVHDS reports a proxy's virtual hosts (VHDS) in its RDS status too: with VHDS a route
// change travels as virtual hosts, and `strait proxy-status` (like istioctl's) shows RDS, so a
// NACKed or unacknowledged virtual host makes RDS STALE. The VHDS entry stays for detail.
func foldVHDS(types map[string]TypeStatus) {
	v, ok := types["VHDS"]
	if !ok || v.Status != Stale {
		return
	}
	r := types["RDS"]
	if r.Status == Synced {
		r.Status = Stale
		types["RDS"] = r
	}
}
