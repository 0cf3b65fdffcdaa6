package ratelimit

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	rlconfv3 "github.com/envoyproxy/go-control-plane/envoy/config/ratelimit/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rlhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/controlplane/config"
	ext "github.com/strait-mesh/strait/controlplane/config/extensionsv1alpha1"
	"github.com/strait-mesh/strait/internal/vocab"
)

// Global rules.
const (
	// Domain is the rate limit service domain of the Global rules' checks; straitd's service
	// takes its descriptors from the RateLimits (GlobalRules).
	Domain = "strait"
	// MaxGlobalRules is the most Global rules that apply to one connection manager: each is a
	// filter with a stage of its own, 1 to 10 (stage 0 stays free for EnvoyFilters).
	MaxGlobalRules = 10
	// GlobalTimeout bounds each check (Envoy's default of 20 ms is meant for a service beside
	// the proxy; straitd's may be a network hop away).
	GlobalTimeout = time.Second
	// serviceConnectTimeout is the rate limit service cluster's connect_timeout.
	serviceConnectTimeout = time.Second
	// httpProtocolOptions is the key of the cluster's HTTP/2 protocol options.
	httpProtocolOptions = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
)

// errNoService is a Global rule's error when straitd's rate limit service is off.
var errNoService = errors.New("scope Global needs straitd's rate limit service, which is not enabled (straitd --ratelimit-listen) or has no address proxies can reach (--ratelimit-address); the RateLimits of this proxy's listener are not applied")

// GlobalRule is a Global rule as straitd's rate limit service counts it: the descriptor
// [RuleKey=ID, MatchKey=1 × Width] followed by one of the key lists of ByShapes (a key with any
// value) has Requests per Per, per distinct list of values.
type GlobalRule struct {
	ID       string
	Width    int
	ByShapes [][]string
	Requests uint32
	Per      time.Duration
}

// GlobalRules returns the Global rules of every RateLimit in objs, in order. The descriptor
// of each is the one its filters send, whatever the proxy and port (Filters pads it to Width).
func GlobalRules(objs []*config.Object) []GlobalRule {
	var out []GlobalRule
	for _, o := range objs {
		rl, ok := o.Spec.(*ext.RateLimit)
		if !ok {
			continue
		}
		for i, r := range rl.GetRules() {
			if r.GetScope() != config.RateLimitScopeGlobal {
				continue
			}
			out = append(out, GlobalRule{ID: ruleID(o, i, r), Width: globalWidth(r), ByShapes: byShapes(byEntries(r.GetBy())),
				Requests: r.GetLimit().GetRequests(), Per: r.GetLimit().GetPer().AsDuration()})
		}
	}
	return out
}

// globalWidth is the number of MatchKey entries of a Global rule's descriptor: one per to
// entry (at least one), so that it does not depend on the port (ports select entries).
func globalWidth(r *ext.RateLimitRule) int {
	return max(1, len(r.GetMatch().GetTo()))
}

// globalFilter builds the envoy.filters.http.ratelimit filter of a Global rule for a
// connection manager on port, at stage, and the route rate_limits of that stage that produce
// its descriptor for the requests it counts; nil when the rule matches no request there.
func globalFilter(id string, r *ext.RateLimitRule, port, stage uint32) (*hcmv3.HttpFilter, []*routev3.RateLimit, error) {
	alts, _ := alternatives(r.GetMatch(), port)
	if len(alts) == 0 {
		return nil, nil, nil
	}
	rls, _ := descriptors(id, alts, globalWidth(r), whenMatchers(r.GetMatch().GetWhen()), byEntries(r.GetBy()), nil)
	for _, rl := range rls {
		rl.Stage = wrapperspb.UInt32(stage)
	}
	status := uint32(429)
	if s := r.GetResponse().GetStatus(); s != 0 {
		status = s
	}
	c := &rlhttpv3.RateLimit{
		Domain:                  Domain,
		Stage:                   stage,
		Timeout:                 durationpb.New(GlobalTimeout),
		FailureModeDeny:         r.GetOnServiceError() == config.RateLimitOnErrorDeny,
		RateLimitedStatus:       &typev3.HttpStatus{Code: typev3.StatusCode(status)},
		EnableXRatelimitHeaders: rlhttpv3.RateLimit_DRAFT_VERSION_03,
		RateLimitService: &rlconfv3.RateLimitServiceConfig{
			GrpcService: &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
				EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: vocab.RateLimitServiceCluster}}},
			TransportApiVersion: corev3.ApiVersion_V3,
		},
	}
	hs := r.GetResponse().GetHeaders()
	for _, k := range sortedKeys(hs) {
		c.ResponseHeadersToAdd = append(c.ResponseHeadersToAdd, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: k, Value: hs[k]},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		})
	}
	tc, err := anypb.New(c)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding the global rate limit filter: %w", err)
	}
	return &hcmv3.HttpFilter{Name: FilterPrefix + id, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: tc}}, rls, nil
}

// Cluster returns the cluster vocab.RateLimitServiceCluster that reaches straitd's rate limit
// service at address (host:port, as the proxies reach it): plaintext HTTP/2 (gRPC), STATIC
// for an IP address, STRICT_DNS for a name.
func Cluster(address string) (*clusterv3.Cluster, error) {
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("rate limit service address %q: %w", address, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return nil, fmt.Errorf("rate limit service address %q: bad port", address)
	}
	if host == "" {
		return nil, fmt.Errorf("rate limit service address %q: no host", address)
	}
	typ := clusterv3.Cluster_STRICT_DNS
	if ip := net.ParseIP(host); ip != nil {
		if ip.IsUnspecified() {
			return nil, fmt.Errorf("rate limit service address %q: an unspecified address is where to listen, not where proxies connect", address)
		}
		typ = clusterv3.Cluster_STATIC
	}
	opts, err := anypb.New(&httpv3.HttpProtocolOptions{UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{
		ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
			Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}}}}})
	if err != nil {
		return nil, fmt.Errorf("encoding the rate limit service cluster's protocol options: %w", err)
	}
	return &clusterv3.Cluster{
		Name:                          vocab.RateLimitServiceCluster,
		ClusterDiscoveryType:          &clusterv3.Cluster_Type{Type: typ},
		ConnectTimeout:                durationpb.New(serviceConnectTimeout),
		TypedExtensionProtocolOptions: map[string]*anypb.Any{httpProtocolOptions: opts},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: vocab.RateLimitServiceCluster,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
						Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)}}}}}}}}}},
		},
	}, nil
}

// RouteConfiguration returns rc with rls added to the rate_limits of every route that forwards
// to a cluster (the only ones the global filter checks), with include_vh_rate_limits so that
// the virtual hosts' own rate_limits (an EnvoyFilter's) still apply as they did when the route
// had none; rc itself when rls is empty. rc is never modified.
func RouteConfiguration(rc *routev3.RouteConfiguration, rls []*routev3.RateLimit) *routev3.RouteConfiguration {
	if len(rls) == 0 || rc == nil {
		return rc
	}
	out := proto.Clone(rc).(*routev3.RouteConfiguration)
	for _, vh := range out.GetVirtualHosts() {
		for _, rt := range vh.GetRoutes() {
			a := rt.GetRoute()
			if a == nil {
				continue
			}
			for _, rl := range rls {
				a.RateLimits = append(a.RateLimits, proto.Clone(rl).(*routev3.RateLimit))
			}
			a.IncludeVhRateLimits = wrapperspb.Bool(true)
		}
	}
	return out
}
