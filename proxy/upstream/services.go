package upstream

import (
	"github.com/strait-mesh/strait/internal/vocab"
	"github.com/strait-mesh/strait/proxy/telemetry"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
)

// maxIstioServices bounds the services read from one cluster's metadata.
const maxIstioServices = 64

// IstioServices returns the services istiod's metadata names for the cluster
// (filter_metadata.istio.services: {host, name, namespace}), which the destination reporter of
// Istio's standard metrics uses for destination_service. Nil when there are none.
func (c *Cluster) IstioServices() []telemetry.Service { return c.services }

// istioServices reads filter_metadata.istio.services. Metadata is data for filters, not
// configuration the proxy must understand (Envoy passes unknown metadata through), so entries
// that are not {host, name?, namespace?} objects with a host are skipped.
func istioServices(md *corev3.Metadata) []telemetry.Service {
	list := md.GetFilterMetadata()[vocab.IstioMetadata].GetFields()[vocab.IstioServicesKey].GetListValue().GetValues()
	var out []telemetry.Service
	for _, v := range list {
		if len(out) == maxIstioServices {
			break
		}
		f := v.GetStructValue().GetFields()
		host := f["host"].GetStringValue()
		if host == "" {
			continue
		}
		s := telemetry.Service{Host: host, Name: f["name"].GetStringValue(), Namespace: f["namespace"].GetStringValue()}
		if s.Name == "" {
			s.Name = host
		}
		if s.Namespace == "" {
			s.Namespace = telemetry.Unknown
		}
		out = append(out, s)
	}
	return out
}
