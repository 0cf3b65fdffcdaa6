package listener

import (
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

// Telemetry is what the Telemetry API and MeshConfig's telemetry settings put on the connection
// managers and TCP proxies of one direction of a proxy (client: sidecar outbound and gateways;
// server: sidecar inbound). Package telemetry builds it; the listener builders only place it.
// The zero value adds nothing. Its messages are shared read-only.
type Telemetry struct {
	// Tracing is the connection manager's tracing; nil: no tracing.
	Tracing *hcmv3.HttpConnectionManager_Tracing
	// RequestID is the connection manager's request_id_extension (set with Tracing).
	RequestID *hcmv3.RequestIDExtension
	// AccessLogSet says that AccessLog replaces MeshConfig's accessLogFile: a Telemetry or
	// defaultProviders.accessLogging selects the access logs (possibly none).
	AccessLogSet bool
	// AccessLog is the access_log list of every connection manager and TCP proxy.
	AccessLog []*accesslogv3.AccessLog
	// HTTPStats is the istio.stats HTTP filter (before the router); nil: none.
	HTTPStats *hcmv3.HttpFilter
	// TCPStats is the istio.stats network filter (before tcp_proxy); nil: none.
	TCPStats *listenerv3.Filter
}

// accessLogOr returns the Telemetry's access logs when it sets them, else MeshConfig's.
func (t Telemetry) accessLogOr(mesh AccessLog) []*accesslogv3.AccessLog {
	if t.AccessLogSet {
		return t.AccessLog
	}
	return mesh.Build()
}

// withTCPStats returns filters with the istio.stats network filter inserted before the last one
// (the tcp_proxy), as istiod orders them; filters itself when there is no stats filter.
func withTCPStats(stats *listenerv3.Filter, filters ...*listenerv3.Filter) []*listenerv3.Filter {
	if stats == nil || len(filters) == 0 {
		return filters
	}
	out := make([]*listenerv3.Filter, 0, len(filters)+1)
	out = append(out, filters[:len(filters)-1]...)
	return append(out, stats, filters[len(filters)-1])
}
