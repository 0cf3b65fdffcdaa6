package config

// The Envoy extensions whose typed configs an EnvoyFilter patch may name: importing them
// registers their messages, so that DecodeEnvoyPatch resolves their type URLs. Some of them
// (Lua, Wasm, ...) are known only so that a patch using them is refused with
// a message naming the filter strait-proxy does not implement, rather than an unknown type.
import (
	_ "github.com/cncf/xds/go/udpa/type/v1"
	_ "github.com/cncf/xds/go/xds/type/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/ratelimit/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_to_metadata/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/lua/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/http_inspector/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/connection_limit/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/ext_authz/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/local_ratelimit/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/ratelimit/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// ProxyHTTPFilterTypes are the typed_config type URLs of the HTTP filters strait-proxy
// implements (proxy/l7's pipeline). An EnvoyFilter that adds another HTTP filter is refused at
// apply time; the test TestProxyFilterTypes in controlplane/translate/envoyfilter keeps this
// list equal to what strait-proxy's compilers accept.
var ProxyHTTPFilterTypes = []string{
	"type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
	"type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
	"type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors",
	"type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
	"type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
	"type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
	"type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
	"type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit",
}

// ProxyNetworkFilterTypes are the typed_config type URLs of the network filters strait-proxy
// implements (proxy/listener), kept equal to its compilers by the same test.
var ProxyNetworkFilterTypes = []string{
	"type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
	"type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
	"type.googleapis.com/envoy.extensions.filters.network.connection_limit.v3.ConnectionLimit",
	"type.googleapis.com/envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit",
	"type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC",
	"type.googleapis.com/envoy.extensions.filters.network.ext_authz.v3.ExtAuthz",
	"type.googleapis.com/envoy.extensions.filters.network.ratelimit.v3.RateLimit",
}
