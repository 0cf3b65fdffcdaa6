package proxy

import (
	"fmt"
	"sort"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/strait-mesh/strait/proxy/admin"
	"github.com/strait-mesh/strait/proxy/xdsclient"
	adminv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/admin/v3"
	bootstrapv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/bootstrap/v3"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	tlsv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/transport_sockets/tls/v3"
)

// adminSource implements admin.Source over the proxy.
type adminSource struct{ p *Proxy }

var _ admin.Source = adminSource{}

// Ready reports LIVE once the first clusters and listeners are in and warm.
func (a adminSource) Ready() (bool, string) {
	s := a.p.State()
	return s == StateLive, s
}

// DrainListeners implements /drain_listeners.
func (a adminSource) DrainListeners(inboundOnly bool) { a.p.lds.DrainAll(inboundOnly) }

// Quit implements /quitquitquit.
func (a adminSource) Quit() { a.p.Quit() }

// sortedResources returns a type's accepted resources ordered by name.
func sortedResources(set map[string]*xdsclient.Resource) []*xdsclient.Resource {
	out := make([]*xdsclient.Resource, 0, len(set))
	for _, r := range set {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// dumpResources lists the ConfigDump sections Envoy prints, in its order.
var dumpResources = []string{"bootstrap", "dynamic_active_clusters", "dynamic_listeners", "dynamic_route_configs", "dynamic_endpoint_configs", "dynamic_active_secrets"}

// ConfigDump renders the current runtime's accepted resources in Envoy's ConfigDump shape:
// BootstrapConfigDump, ClustersConfigDump, ListenersConfigDump, RoutesConfigDump,
// EndpointsConfigDump and SecretsConfigDump (private keys and generic secrets redacted; the
// identity agent's "default" and "ROOTCA" among the dynamic secrets, as Istio's SDS shows them).
func (a adminSource) ConfigDump(resource string) (*adminv3.ConfigDump, error) {
	rt := a.p.rt.Load()
	version := func(t string) string {
		v := ""
		for _, r := range rt.Resources[t] {
			if r.Version > v {
				v = r.Version
			}
		}
		return v
	}
	ts := func(r *xdsclient.Resource) *timestamppb.Timestamp { return timestamppb.New(r.Updated) }

	var clusters []*adminv3.ClustersConfigDump_DynamicCluster
	for _, r := range sortedResources(rt.Resources[xdsclient.ClusterType]) {
		clusters = append(clusters, &adminv3.ClustersConfigDump_DynamicCluster{VersionInfo: r.Version, Cluster: r.Any, LastUpdated: ts(r)})
	}
	warming := a.p.lds.WarmingResources()
	var listeners []*adminv3.ListenersConfigDump_DynamicListener
	for _, r := range sortedResources(rt.Resources[xdsclient.ListenerType]) {
		dl := &adminv3.ListenersConfigDump_DynamicListener{Name: r.Name}
		state := &adminv3.ListenersConfigDump_DynamicListenerState{VersionInfo: r.Version, Listener: r.Any, LastUpdated: ts(r)}
		if warming[r] {
			dl.WarmingState = state
		} else {
			dl.ActiveState = state
		}
		listeners = append(listeners, dl)
	}
	var routes []*adminv3.RoutesConfigDump_DynamicRouteConfig
	for _, r := range sortedResources(rt.Resources[xdsclient.RouteType]) {
		routes = append(routes, &adminv3.RoutesConfigDump_DynamicRouteConfig{VersionInfo: r.Version, RouteConfig: r.Any, LastUpdated: ts(r)})
	}
	var endpoints []*adminv3.EndpointsConfigDump_DynamicEndpointConfig
	for _, r := range sortedResources(rt.Resources[xdsclient.EndpointType]) {
		endpoints = append(endpoints, &adminv3.EndpointsConfigDump_DynamicEndpointConfig{VersionInfo: r.Version, EndpointConfig: r.Any, LastUpdated: ts(r)})
	}
	var secrets []*adminv3.SecretsConfigDump_DynamicSecret
	for _, r := range sortedResources(rt.Resources[xdsclient.SecretType]) {
		if a.p.agentOwned(r.Name) {
			continue // the agent's own secret is shown instead
		}
		red, err := anypb.New(redactSecret(r.Message.(*tlsv3.Secret)))
		if err != nil {
			return nil, fmt.Errorf("packing secret %q: %w", r.Name, err)
		}
		secrets = append(secrets, &adminv3.SecretsConfigDump_DynamicSecret{Name: r.Name, VersionInfo: r.Version, LastUpdated: ts(r), Secret: red})
	}
	own, err := a.p.agentSecrets()
	if err != nil {
		return nil, err
	}
	secrets = append(secrets, own...)
	sort.SliceStable(secrets, func(i, j int) bool { return secrets[i].Name < secrets[j].Name })

	sections := map[string][]proto.Message{}
	boot := &adminv3.BootstrapConfigDump{
		Bootstrap: &bootstrapv3.Bootstrap{
			Node: a.p.client.Node(),
			DynamicResources: &bootstrapv3.Bootstrap_DynamicResources{
				AdsConfig: &corev3.ApiConfigSource{
					ApiType:             a.p.adsAPIType(),
					TransportApiVersion: corev3.ApiVersion_V3,
					GrpcServices: []*corev3.GrpcService{{TargetSpecifier: &corev3.GrpcService_GoogleGrpc_{
						GoogleGrpc: &corev3.GrpcService_GoogleGrpc{TargetUri: a.p.opts.XDSAddress, StatPrefix: "xds-grpc"},
					}}},
				},
				LdsConfig: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}, ResourceApiVersion: corev3.ApiVersion_V3},
				CdsConfig: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}, ResourceApiVersion: corev3.ApiVersion_V3},
			},
		},
	}
	sections["bootstrap"] = []proto.Message{boot}
	sections["dynamic_active_clusters"] = msgs(clusters)
	sections["dynamic_listeners"] = msgs(listeners)
	sections["dynamic_route_configs"] = msgs(routes)
	sections["dynamic_endpoint_configs"] = msgs(endpoints)
	sections["dynamic_active_secrets"] = msgs(secrets)

	dump := &adminv3.ConfigDump{}
	if resource != "" {
		items, ok := sections[resource]
		if !ok {
			return nil, fmt.Errorf("unknown resource %q", resource)
		}
		for _, m := range items {
			a, err := anypb.New(m)
			if err != nil {
				return nil, fmt.Errorf("packing %s: %w", resource, err)
			}
			dump.Configs = append(dump.Configs, a)
		}
		return dump, nil
	}
	whole := []proto.Message{
		boot,
		&adminv3.ClustersConfigDump{VersionInfo: version(xdsclient.ClusterType), DynamicActiveClusters: clusters},
		&adminv3.ListenersConfigDump{VersionInfo: version(xdsclient.ListenerType), DynamicListeners: listeners},
		&adminv3.RoutesConfigDump{DynamicRouteConfigs: routes},
		&adminv3.EndpointsConfigDump{DynamicEndpointConfigs: endpoints},
		&adminv3.SecretsConfigDump{DynamicActiveSecrets: secrets},
	}
	for _, m := range whole {
		a, err := anypb.New(m)
		if err != nil {
			return nil, fmt.Errorf("packing config dump: %w", err)
		}
		dump.Configs = append(dump.Configs, a)
	}
	return dump, nil
}

func msgs[M proto.Message](in []M) []proto.Message {
	out := make([]proto.Message, len(in))
	for i, m := range in {
		out[i] = m
	}
	return out
}

// redactSecret returns a copy with private keys and generic secrets replaced by "[redacted]", as
// Envoy's dump does.
func redactSecret(s *tlsv3.Secret) *tlsv3.Secret {
	c := proto.Clone(s).(*tlsv3.Secret)
	redacted := &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "[redacted]"}}
	if tc := c.GetTlsCertificate(); tc != nil {
		if tc.PrivateKey != nil {
			tc.PrivateKey = redacted
		}
		if tc.Password != nil {
			tc.Password = redacted
		}
	}
	if g := c.GetGenericSecret(); g != nil {
		g.Secret = redacted
	}
	return c
}

// adsAPIType reports the ADS flavour in use for the bootstrap dump.
func (p *Proxy) adsAPIType() corev3.ApiConfigSource_ApiType {
	if p.client.Protocol() == "delta" {
		return corev3.ApiConfigSource_DELTA_GRPC
	}
	return corev3.ApiConfigSource_GRPC
}
