package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"
)

// configDump is a decoded /config_dump: Envoy's ConfigDump, one typed section per kind. A section
// the dump lacks is nil.
type configDump struct {
	bootstrap *adminv3.BootstrapConfigDump
	clusters  *adminv3.ClustersConfigDump
	listeners *adminv3.ListenersConfigDump
	routes    *adminv3.RoutesConfigDump
	endpoints *adminv3.EndpointsConfigDump
	secrets   *adminv3.SecretsConfigDump
}

// dumpDecoding reads what the proxy's admin interface writes (protojson, proto field names, Any
// with "@type"; the Any types resolve through the registry proxyconfig_types.go fills). Fields a
// newer proxy or Envoy adds are skipped rather than refused.
var dumpDecoding = protojson.UnmarshalOptions{DiscardUnknown: true}

// parseConfigDump decodes a /config_dump body.
func parseConfigDump(b []byte) (*configDump, error) {
	var cd adminv3.ConfigDump
	if err := dumpDecoding.Unmarshal(b, &cd); err != nil {
		if strings.Contains(err.Error(), "unable to resolve") {
			return nil, fmt.Errorf("decoding the config dump: it holds a type this strait does not know (is the proxy newer than strait?): %w", err)
		}
		return nil, fmt.Errorf("decoding the config dump: %w", err)
	}
	d := &configDump{}
	for _, a := range cd.GetConfigs() {
		m, err := a.UnmarshalNew()
		if err != nil {
			return nil, fmt.Errorf("decoding config dump section %s: %w", a.GetTypeUrl(), err)
		}
		switch v := m.(type) {
		case *adminv3.BootstrapConfigDump:
			d.bootstrap = v
		case *adminv3.ClustersConfigDump:
			d.clusters = v
		case *adminv3.ListenersConfigDump:
			d.listeners = v
		case *adminv3.RoutesConfigDump:
			d.routes = v
		case *adminv3.EndpointsConfigDump:
			d.endpoints = v
		case *adminv3.SecretsConfigDump:
			d.secrets = v
		}
	}
	return d, nil
}

// isConfigDump reports whether b looks like a /config_dump body (rather than /clusters).
func isConfigDump(b []byte) bool {
	var probe map[string]json.RawMessage
	if json.Unmarshal(b, &probe) != nil {
		return false
	}
	_, ok := probe["configs"]
	return ok
}

// parseClusters decodes a /clusters?format=json body.
func parseClusters(b []byte) ([]*adminv3.ClusterStatus, error) {
	var cs adminv3.Clusters
	if err := dumpDecoding.Unmarshal(b, &cs); err != nil {
		return nil, fmt.Errorf("decoding /clusters: %w", err)
	}
	return cs.GetClusterStatuses(), nil
}

// dumpNodeID returns the node ID in a config dump's bootstrap section.
func dumpNodeID(b []byte) (string, error) {
	d, err := parseConfigDump(b)
	if err != nil {
		return "", err
	}
	if d.bootstrap == nil {
		return "", fmt.Errorf("the config dump has no bootstrap section to name the proxy")
	}
	return d.bootstrap.GetBootstrap().GetNode().GetId(), nil
}

// unpack decodes one Any resource into a new T.
func unpack[T proto.Message](a *anypb.Any, what string) (T, error) {
	var zero T
	m, err := a.UnmarshalNew()
	if err != nil {
		return zero, fmt.Errorf("decoding %s: %w", what, err)
	}
	t, ok := m.(T)
	if !ok {
		return zero, fmt.Errorf("decoding %s: got %s", what, a.GetTypeUrl())
	}
	return t, nil
}

// clusterList returns the active clusters, dynamic then static, sorted as istioctl does: by
// service FQDN, subset, port, direction.
func (d *configDump) clusterList() ([]*clusterv3.Cluster, error) {
	var out []*clusterv3.Cluster
	for _, c := range d.clusters.GetDynamicActiveClusters() {
		if c.GetCluster() == nil {
			continue
		}
		cl, err := unpack[*clusterv3.Cluster](c.GetCluster(), "cluster")
		if err != nil {
			return nil, err
		}
		out = append(out, cl)
	}
	for _, c := range d.clusters.GetStaticClusters() {
		if c.GetCluster() == nil {
			continue
		}
		cl, err := unpack[*clusterv3.Cluster](c.GetCluster(), "static cluster")
		if err != nil {
			return nil, err
		}
		out = append(out, cl)
	}
	sort.SliceStable(out, func(i, j int) bool { return clusterKeyLess(out[i].GetName(), out[j].GetName()) })
	return out, nil
}

// listenerList returns the active listeners, dynamic then static (warming ones are not yet
// serving, and istioctl leaves them out too).
func (d *configDump) listenerList() ([]*listenerv3.Listener, error) {
	var out []*listenerv3.Listener
	for _, l := range d.listeners.GetDynamicListeners() {
		if l.GetActiveState().GetListener() == nil {
			continue
		}
		ln, err := unpack[*listenerv3.Listener](l.GetActiveState().GetListener(), "listener "+l.GetName())
		if err != nil {
			return nil, err
		}
		out = append(out, ln)
	}
	for _, l := range d.listeners.GetStaticListeners() {
		if l.GetListener() == nil {
			continue
		}
		ln, err := unpack[*listenerv3.Listener](l.GetListener(), "static listener")
		if err != nil {
			return nil, err
		}
		out = append(out, ln)
	}
	return out, nil
}

// routeList returns the route configurations, dynamic then static, those named by a port number
// first in port order, then the others by name.
func (d *configDump) routeList() ([]*routev3.RouteConfiguration, error) {
	var out []*routev3.RouteConfiguration
	for _, r := range d.routes.GetDynamicRouteConfigs() {
		if r.GetRouteConfig() == nil {
			continue
		}
		rc, err := unpack[*routev3.RouteConfiguration](r.GetRouteConfig(), "route configuration")
		if err != nil {
			return nil, err
		}
		out = append(out, rc)
	}
	for _, r := range d.routes.GetStaticRouteConfigs() {
		if r.GetRouteConfig() == nil {
			continue
		}
		rc, err := unpack[*routev3.RouteConfiguration](r.GetRouteConfig(), "static route configuration")
		if err != nil {
			return nil, err
		}
		out = append(out, rc)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, aerr := strconv.Atoi(out[i].GetName())
		b, berr := strconv.Atoi(out[j].GetName())
		switch {
		case aerr == nil && berr == nil:
			return a < b
		case aerr == nil || berr == nil:
			return aerr == nil
		}
		return out[i].GetName() < out[j].GetName()
	})
	return out, nil
}

// errNoEDS is edsStatuses' error for a dump without an endpoints section.
var errNoEDS = errors.New("the config dump has no endpoints section")

// edsStatuses renders the dump's EDS part as /clusters would: one ClusterStatus per
// ClusterLoadAssignment, with each endpoint's address, EDS health status, weight and locality
// (what only the proxy knows, outlier ejection and active health checks, is absent).
func (d *configDump) edsStatuses() ([]*adminv3.ClusterStatus, error) {
	if d.endpoints == nil {
		return nil, errNoEDS
	}
	var out []*adminv3.ClusterStatus
	add := func(a *anypb.Any) error {
		if a == nil {
			return nil
		}
		cla, err := unpack[*endpointv3.ClusterLoadAssignment](a, "endpoints")
		if err != nil {
			return err
		}
		cs := &adminv3.ClusterStatus{Name: cla.GetClusterName(), AddedViaApi: true}
		for _, le := range cla.GetEndpoints() {
			for _, ep := range le.GetLbEndpoints() {
				cs.HostStatuses = append(cs.HostStatuses, &adminv3.HostStatus{
					Address:      ep.GetEndpoint().GetAddress(),
					HealthStatus: &adminv3.HostHealthStatus{EdsHealthStatus: ep.GetHealthStatus()},
					Weight:       ep.GetLoadBalancingWeight().GetValue(),
					Hostname:     ep.GetEndpoint().GetHostname(),
					Priority:     le.GetPriority(),
					Locality:     le.GetLocality(),
				})
			}
		}
		out = append(out, cs)
		return nil
	}
	for _, e := range d.endpoints.GetDynamicEndpointConfigs() {
		if err := add(e.GetEndpointConfig()); err != nil {
			return nil, err
		}
	}
	for _, e := range d.endpoints.GetStaticEndpointConfigs() {
		if err := add(e.GetEndpointConfig()); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// filterSlice returns the elements keep accepts, as a new slice.
func filterSlice[T any](in []T, keep func(T) bool) []T {
	out := make([]T, 0, len(in))
	for _, v := range in {
		if keep(v) {
			out = append(out, v)
		}
	}
	return out
}

// messageJSON renders like istioctl: protojson with JSON (lowerCamelCase) names, Any with "@type".
var messageJSON = protojson.MarshalOptions{}

// writeMessages writes msgs as a JSON array indented by four spaces (istioctl's -o json), or as
// that array converted to YAML.
func writeMessages[M proto.Message](w io.Writer, format string, msgs []M) error {
	items := make([]json.RawMessage, len(msgs))
	for i, m := range msgs {
		b, err := messageJSON.Marshal(m)
		if err != nil {
			return fmt.Errorf("rendering json: %w", err)
		}
		items[i] = b
	}
	b, err := json.MarshalIndent(items, "", "    ")
	if err != nil {
		return fmt.Errorf("rendering json: %w", err)
	}
	return writeRaw(w, format, b)
}

// writeMessage writes one message as JSON indented by four spaces, or as YAML.
func writeMessage(w io.Writer, format string, m proto.Message) error {
	b, err := messageJSON.Marshal(m)
	if err != nil {
		return fmt.Errorf("rendering json: %w", err)
	}
	return writeRaw(w, format, b)
}

// writeRaw writes a JSON document re-indented by four spaces (json), or converted to YAML.
func writeRaw(w io.Writer, format string, b []byte) error {
	var out []byte
	switch format {
	case "yaml":
		y, err := yaml.JSONToYAML(b)
		if err != nil {
			return fmt.Errorf("rendering yaml: %w", err)
		}
		out = y
	default:
		var buf bytes.Buffer
		if err := json.Indent(&buf, bytes.TrimSpace(b), "", "    "); err != nil {
			return fmt.Errorf("rendering json: %w", err)
		}
		buf.WriteByte('\n')
		out = buf.Bytes()
	}
	_, err := w.Write(out)
	return err
}
