package proxy

import (
	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/strait-mesh/strait/proxy/xdsclient"
)

// Clusters renders /clusters: every cluster with the endpoints of its current load assignment
// (EDS or inline), their health, weight and locality.
func (a adminSource) Clusters() *adminv3.Clusters {
	rt := a.p.rt.Load()
	out := &adminv3.Clusters{}
	for _, r := range sortedResources(rt.Resources[xdsclient.ClusterType]) {
		c := r.Message.(*clusterv3.Cluster)
		st := &adminv3.ClusterStatus{Name: c.GetName(), AddedViaApi: true}
		cla := c.GetLoadAssignment()
		if isEDS(c) {
			cla = nil
			if e := rt.Resources[xdsclient.EndpointType][edsName(c)]; e != nil {
				cla, _ = e.Message.(*endpointv3.ClusterLoadAssignment)
			}
		}
		for _, loc := range cla.GetEndpoints() {
			for _, lb := range loc.GetLbEndpoints() {
				w := lb.GetLoadBalancingWeight().GetValue()
				if w == 0 {
					w = 1
				}
				st.HostStatuses = append(st.HostStatuses, &adminv3.HostStatus{
					Address:      lb.GetEndpoint().GetAddress(),
					HealthStatus: &adminv3.HostHealthStatus{EdsHealthStatus: lb.GetHealthStatus()},
					Weight:       w,
					Hostname:     lb.GetEndpoint().GetHostname(),
					Priority:     loc.GetPriority(),
					Locality:     loc.GetLocality(),
				})
			}
		}
		out.ClusterStatuses = append(out.ClusterStatuses, st)
	}
	return out
}
