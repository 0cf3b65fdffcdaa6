package listener

import (
	"strconv"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/registry"
	"github.com/strait-mesh/strait/controlplane/translate/cluster"
)

// ProxylessName is the name of a proxyless gRPC API listener and of its route configuration:
// "host:port", the target a client dials as xds:///host:port.
func ProxylessName(host string, port uint32) string {
	return host + ":" + strconv.FormatUint(uint64(port), 10)
}

// BuildProxyless returns one API listener per reachable service port of the scope, named
// "host:port", whose http_connection_manager fetches route configuration "host:port" over ADS and
// runs fault injection and the router (the filters gRPC's xDS client implements). Wildcard hosts
// and services without endpoints to dial (resolution NONE) are skipped.
func BuildProxyless(scope *mesh.Scope) []*listenerv3.Listener {
	var out []*listenerv3.Listener
	for _, svc := range scope.Services {
		if (len(svc.Hostname) > 0 && svc.Hostname[0] == '*') || svc.Resolution == registry.ResolutionNone {
			continue
		}
		for _, p := range scope.Ports(svc) {
			name := ProxylessName(svc.Hostname, p.Number)
			m := &hcmv3.HttpConnectionManager{
				StatPrefix:     name,
				CodecType:      hcmv3.HttpConnectionManager_AUTO,
				RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{ConfigSource: cluster.ADS(), RouteConfigName: name}},
				HttpFilters:    HTTPFilters(true),
			}
			out = append(out, &listenerv3.Listener{
				Name:        name,
				ApiListener: &listenerv3.ApiListener{ApiListener: mustAny(m)},
			})
		}
	}
	return out
}
