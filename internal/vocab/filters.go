package vocab

// Names of the Envoy filters the control plane emits and the proxy implements. An HTTP filter's
// name is also its key in a route's typed_per_filter_config.
const (
	// Network filters.
	FilterHCM      = "envoy.filters.network.http_connection_manager"
	FilterTCPProxy = "envoy.filters.network.tcp_proxy"

	// HTTP filters.
	FilterRouter = "envoy.filters.http.router"
	FilterFault  = "envoy.filters.http.fault"
	FilterCORS   = "envoy.filters.http.cors"
	// FilterHTTPRBAC and FilterNetworkRBAC enforce AuthorizationPolicy; FilterJWTAuthn verifies
	// RequestAuthentication's tokens and holds their payload as dynamic metadata.
	FilterHTTPRBAC    = "envoy.filters.http.rbac"
	FilterNetworkRBAC = "envoy.filters.network.rbac"
	FilterJWTAuthn    = "envoy.filters.http.jwt_authn"
	// FilterHTTPExtAuthz and FilterNetworkExtAuthz call the external authorizer of a CUSTOM
	// AuthorizationPolicy.
	FilterHTTPExtAuthz    = "envoy.filters.http.ext_authz"
	FilterNetworkExtAuthz = "envoy.filters.network.ext_authz"

	// Listener filters.
	FilterOriginalDst   = "envoy.filters.listener.original_dst"
	FilterTLSInspector  = "envoy.filters.listener.tls_inspector"
	FilterHTTPInspector = "envoy.filters.listener.http_inspector"
)

// HTTPFilters are the HTTP filters, in the order a connection manager runs them (the router
// last). The slice is a copy.
func HTTPFilters() []string { return []string{FilterFault, FilterCORS, FilterRouter} }

// Names of the retry predicates and transport sockets.
const (
	// PreviousHostsPredicate is the retry host predicate that avoids hosts already tried.
	PreviousHostsPredicate = "envoy.retry_host_predicates.previous_hosts"
	// PreviousPrioritiesPredicate is the retry priority that moves retries to other priorities.
	PreviousPrioritiesPredicate = "envoy.retry_priorities.previous_priorities"

	TransportSocketTLS                   = "envoy.transport_sockets.tls"
	TransportSocketRawBuffer             = "envoy.transport_sockets.raw_buffer"
	TransportSocketUpstreamProxyProtocol = "envoy.transport_sockets.upstream_proxy_protocol"
)
