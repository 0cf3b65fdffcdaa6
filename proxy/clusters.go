package proxy

import (
	"github.com/strait-mesh/strait/proxy/xdsclient"
	adminv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/admin/v3"
)

// Clusters renders /clusters from the live clusters: every host with its resolved address,
// health (EDS and outlier ejection), weight, priority, locality and active requests.
func (a adminSource) Clusters() *adminv3.Clusters {
	rt := a.p.rt.Load()
	out := &adminv3.Clusters{}
	for _, r := range sortedResources(rt.Resources[xdsclient.ClusterType]) {
		st := &adminv3.ClusterStatus{Name: r.Name, AddedViaApi: true}
		if c := rt.Clusters[r.Name]; c != nil {
			st.HostStatuses = c.HostStatuses()
		}
		out.ClusterStatuses = append(out.ClusterStatuses, st)
	}
	return out
}
