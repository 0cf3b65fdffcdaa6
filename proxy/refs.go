package proxy

import (
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/strait-mesh/strait/proxy/xdspb"
	clusterv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/cluster/v3"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/transport_sockets/tls/v3"
)

// refs are the names of dependent resources one resource refers to: the RDS route configurations
// of its http_connection_managers and the SDS secrets of its TLS contexts. The proxy subscribes to
// exactly these names, as Envoy does.
type refs struct {
	routes  map[string]bool
	secrets map[string]bool
}

func newRefs() refs { return refs{routes: map[string]bool{}, secrets: map[string]bool{}} }

// maxRefDepth bounds the walk; xDS messages are far shallower.
const maxRefDepth = 64

// collect walks m, including the typed configs packed in Any fields, and records references.
func (r refs) collect(m proto.Message) { r.walk(m.ProtoReflect(), 0) }

func (r refs) walk(m protoreflect.Message, depth int) {
	if depth > maxRefDepth || !m.IsValid() {
		return
	}
	switch v := m.Interface().(type) {
	case *anypb.Any:
		inner, err := anypb.UnmarshalNew(v, proto.UnmarshalOptions{Resolver: xdspb.Resolver})
		if err == nil {
			r.walk(inner.ProtoReflect(), depth+1)
		}
		return
	case *tlsv3.SdsSecretConfig:
		if v.GetName() != "" {
			r.secrets[v.GetName()] = true
		}
	case *hcmv3.Rds:
		if v.GetRouteConfigName() != "" {
			r.routes[v.GetRouteConfigName()] = true
		}
	}
	m.Range(func(fd protoreflect.FieldDescriptor, val protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
			return true
		}
		switch {
		case fd.IsList():
			l := val.List()
			for i := 0; i < l.Len(); i++ {
				r.walk(l.Get(i).Message(), depth+1)
			}
		case fd.IsMap():
			if fd.MapValue().Kind() == protoreflect.MessageKind {
				val.Map().Range(func(_ protoreflect.MapKey, v protoreflect.Value) bool {
					r.walk(v.Message(), depth+1)
					return true
				})
			}
		default:
			r.walk(val.Message(), depth+1)
		}
		return true
	})
}

// edsName is the EDS resource name of an EDS cluster: eds_cluster_config.service_name, or the
// cluster's name.
func edsName(c *clusterv3.Cluster) string {
	if n := c.GetEdsClusterConfig().GetServiceName(); n != "" {
		return n
	}
	return c.GetName()
}

// isEDS reports whether a cluster takes its endpoints from EDS.
func isEDS(c *clusterv3.Cluster) bool { return c.GetType() == clusterv3.Cluster_EDS }

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
