package testenv

import (
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	netextauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/ext_authz/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"
)

// AuthorizationServer serves a as a real envoy.service.auth.v3 Authorization service (grpc-go)
// on a free loopback port until the test ends, and returns its address.
func AuthorizationServer(t testing.TB, a authv3.AuthorizationServer) string {
	t.Helper()
	return ServeGRPC(t, "127.0.0.1:0", func() *grpc.Server {
		gs := grpc.NewServer()
		authv3.RegisterAuthorizationServer(gs, a)
		return gs
	}).Addr()
}

// IstioExtAuthzEnabled is the filter_enabled_metadata istiod sets on an ext_authz filter for
// CUSTOM policies: the shadow effective policy id that rbacFilter ("envoy.filters.http.rbac" or
// "envoy.filters.network.rbac") wrote starts with "istio-ext-authz".
func IstioExtAuthzEnabled(rbacFilter string) *matcherv3.MetadataMatcher {
	return &matcherv3.MetadataMatcher{
		Filter: rbacFilter,
		Path:   []*matcherv3.MetadataMatcher_PathSegment{{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: "istio_ext_authz_shadow_effective_policy_id"}}},
		Value: &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "istio-ext-authz"}}}},
	}
}

// istioAuthzGRPCService is the grpc_service istiod emits for an envoyExtAuthzGrpc provider
// served by cluster.
func istioAuthzGRPCService(cluster string) *corev3.GrpcService {
	return &corev3.GrpcService{
		TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{
			ClusterName: cluster, Authority: "ext-authz.foo.svc.cluster.local"}},
		Timeout: durationpb.New(600 * time.Second),
	}
}

// IstioExtAuthzGRPC is the HTTP ext_authz filter istiod emits for an envoyExtAuthzGrpc provider
// (service ext-authz.foo) served by cluster.
func IstioExtAuthzGRPC(cluster string) *extauthzv3.ExtAuthz {
	return &extauthzv3.ExtAuthz{
		Services:              &extauthzv3.ExtAuthz_GrpcService{GrpcService: istioAuthzGRPCService(cluster)},
		StatusOnError:         &typev3.HttpStatus{Code: typev3.StatusCode_Forbidden},
		TransportApiVersion:   corev3.ApiVersion_V3,
		FilterEnabledMetadata: IstioExtAuthzEnabled("envoy.filters.http.rbac"),
	}
}

// IstioNetworkExtAuthz is the network ext_authz filter istiod emits for an envoyExtAuthzGrpc
// provider (service ext-authz.foo) served by cluster, for TCP traffic.
func IstioNetworkExtAuthz(cluster string) *netextauthzv3.ExtAuthz {
	return &netextauthzv3.ExtAuthz{
		StatPrefix:            "tcp.",
		GrpcService:           istioAuthzGRPCService(cluster),
		TransportApiVersion:   corev3.ApiVersion_V3,
		FilterEnabledMetadata: IstioExtAuthzEnabled("envoy.filters.network.rbac"),
	}
}

// IstioExtAuthzHTTP is the HTTP ext_authz filter istiod emits for an envoyExtAuthzHttp provider
// (service ext-authz.foo, path prefix /check) served by cluster, that sends the headers req
// allows and lets the authorizer's x-ext-authz-check-result and x-user go upstream,
// x-ext-authz-check-result and set-cookie to the client, and x-session to the client on
// success.
func IstioExtAuthzHTTP(cluster string, req *extauthzv3.AuthorizationRequest) *extauthzv3.ExtAuthz {
	return &extauthzv3.ExtAuthz{
		Services: &extauthzv3.ExtAuthz_HttpService{HttpService: &extauthzv3.HttpService{
			ServerUri: &corev3.HttpUri{Uri: "http://ext-authz.foo.svc.cluster.local", Timeout: durationpb.New(600 * time.Second),
				HttpUpstreamType: &corev3.HttpUri_Cluster{Cluster: cluster}},
			PathPrefix:           "/check",
			AuthorizationRequest: req,
			AuthorizationResponse: &extauthzv3.AuthorizationResponse{
				AllowedUpstreamHeaders:        headerList("x-ext-authz-check-result", "x-user"),
				AllowedClientHeaders:          headerList("x-ext-authz-check-result", "set-cookie"),
				AllowedClientHeadersOnSuccess: headerList("x-session"),
			},
		}},
		StatusOnError:         &typev3.HttpStatus{Code: typev3.StatusCode_Forbidden},
		TransportApiVersion:   corev3.ApiVersion_V3,
		FilterEnabledMetadata: IstioExtAuthzEnabled("envoy.filters.http.rbac"),
	}
}

// headerList matches the header names given, in any case, as istiod writes header lists.
func headerList(names ...string) *matcherv3.ListStringMatcher {
	l := &matcherv3.ListStringMatcher{}
	for _, n := range names {
		l.Patterns = append(l.Patterns, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: n}, IgnoreCase: true})
	}
	return l
}
