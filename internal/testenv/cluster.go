package testenv

import (
	"net"
	"strconv"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/durationpb"
)

// SocketAddr is the TCP socket address of hostport ("host:port").
func SocketAddr(hostport string) *corev3.Address {
	host, port, _ := net.SplitHostPort(hostport)
	p, _ := strconv.ParseUint(port, 10, 32)
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)},
	}}}
}

// LbEndpoints is one locality with an endpoint per address ("host:port").
func LbEndpoints(addrs ...string) []*endpointv3.LocalityLbEndpoints {
	var eps []*endpointv3.LbEndpoint
	for _, a := range addrs {
		eps = append(eps, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{
			Endpoint: &endpointv3.Endpoint{Address: SocketAddr(a)},
		}})
	}
	return []*endpointv3.LocalityLbEndpoints{{LbEndpoints: eps}}
}

// StaticCluster is a STATIC cluster name with connectTimeout and an endpoint per address
// ("host:port").
func StaticCluster(name string, connectTimeout time.Duration, addrs ...string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ConnectTimeout:       durationpb.New(connectTimeout),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment:       &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: LbEndpoints(addrs...)},
	}
}
