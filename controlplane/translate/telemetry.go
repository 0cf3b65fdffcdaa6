package translate

import (
	"errors"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/translate/telemetry"
	"github.com/strait-mesh/strait/internal/node"
)

// telemetryKey caches a workload's telemetry in the snapshot.
type telemetryKey struct {
	namespace, labels, name, serviceCluster, clusterID, meshID string
	router                                                     bool
}

// telemetryResult is a workload's telemetry with the cache keys of its two directions.
type telemetryResult struct {
	telemetry.Result
	clientKey, serverKey string
}

// metaMeshID is Istio's MESH_ID node metadata.
const metaMeshID = "MESH_ID"

// telemetry returns the proxy's telemetry (Telemetry API, MeshConfig's providers and legacy
// settings), built once per snapshot for each workload identity, and reports its problems.
func (g *generator) telemetry(snap *mesh.Snapshot, p *Proxy, router bool) *telemetryResult {
	md := p.Node.GetMetadata().GetFields()
	w := telemetry.Workload{Namespace: p.Namespace, Labels: p.Labels, Name: p.WorkloadName,
		ServiceCluster: p.Node.GetCluster(), ClusterID: md[node.MetaClusterID].GetStringValue(),
		MeshID: md[metaMeshID].GetStringValue(), Router: router}
	key := telemetryKey{w.Namespace, labelsKey(w.Labels), w.Name, w.ServiceCluster, w.ClusterID, w.MeshID, router}
	res := telemetrySlot.Get(snap.Cache(), key, func() *telemetryResult {
		r := telemetry.Build(telemetry.Inputs{Mesh: snap.Mesh, Telemetries: snap.Configs[config.Telemetry],
			Services: snap.Services, DomainSuffix: g.opts.DomainSuffix}, w)
		return &telemetryResult{Result: r, clientKey: telemetry.Key(r.Client), serverKey: telemetry.Key(r.Server)}
	})
	g.report(p, errors.Join(res.Errs...))
	return res
}
