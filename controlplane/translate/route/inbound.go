package route

import (
	"strconv"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/internal/vocab"
)

// Inbound builds the route configuration of the 15006 listener's HTTP filter chain for a
// workload port: route configuration "inbound|port||", one virtual host "inbound|http|port" for
// every domain, one route "default" forwarding everything to cluster inbound|port|| with no
// timeout, no stream duration limit (gRPC's grpc-timeout header is honoured) and no retries
// (Istio's inbound defaults: the client side owns retries and timeouts).
// It depends on nothing but the port.
func Inbound(port uint32) *routev3.RouteConfiguration {
	p := strconv.FormatUint(uint64(port), 10)
	return &routev3.RouteConfiguration{
		Name:             vocab.InboundClusterName(port),
		ValidateClusters: wrapperspb.Bool(false),
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    "inbound|http|" + p,
			Domains: []string{"*"},
			Routes: []*routev3.Route{{
				Name:  DefaultRouteName,
				Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: vocab.InboundClusterName(port)},
					Timeout:          zeroDuration(),
					// No stream limit, and a gRPC client's grpc-timeout header is honoured as the
					// request timeout without cap.
					MaxStreamDuration: &routev3.RouteAction_MaxStreamDuration{
						MaxStreamDuration:    zeroDuration(),
						GrpcTimeoutHeaderMax: zeroDuration(),
					},
				}},
			}},
		}},
	}
}
