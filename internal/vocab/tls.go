package vocab

// ALPN values (and the application protocols Envoy's http_inspector reports).
const (
	ALPNH2     = "h2"
	ALPNHTTP11 = "http/1.1"
	ALPNHTTP10 = "http/1.0"
	ALPNH2C    = "h2c"
	// ALPNIstioPeerExchange and ALPNIstio are what Istio's sidecars offer on mesh mTLS.
	ALPNIstioPeerExchange = "istio-peer-exchange"
	ALPNIstio             = "istio"
)

// IstioALPN is the ALPN list Istio offers on mesh mTLS connections. The slice is a copy.
func IstioALPN() []string { return []string{ALPNIstioPeerExchange, ALPNIstio} }

// HTTPALPN is the ALPN list of a server terminating TLS for HTTP. The slice is a copy.
func HTTPALPN() []string { return []string{ALPNH2, ALPNHTTP11} }

// SniffedHTTPALPN are the application protocols http_inspector reports for plaintext HTTP. The
// slice is a copy.
func SniffedHTTPALPN() []string { return []string{ALPNHTTP10, ALPNHTTP11, ALPNH2C} }

// SDS secret names Istio's agents serve.
const (
	SecretDefault = "default" // the workload certificate
	SecretRootCA  = "ROOTCA"  // the mesh root certificates
)

// Automatic mutual TLS: Istio's label on workloads that run a sidecar able to terminate mesh
// mTLS, copied into endpoint metadata under the transport socket match key, where a cluster's
// transport_socket_matches pick mTLS for those endpoints and plaintext for the rest.
const (
	LabelTLSMode           = "security.istio.io/tlsMode"
	TLSModeIstio           = "istio"
	TransportSocketMatchMD = "envoy.transport_socket_match"
	// TLSModeKey is the key of the transport socket match metadata ("tlsMode": "istio").
	TLSModeKey = "tlsMode"
)

// Istio's per-protocol mesh ALPN values: a client sidecar offers them on mTLS to tell the
// server's inbound listener a connection is mesh mTLS (not the application's own TLS).
const (
	ALPNIstioHTTP10 = "istio-http/1.0"
	ALPNIstioHTTP11 = "istio-http/1.1"
	ALPNIstioH2     = "istio-h2"
)

// MeshMTLSALPN are the application protocols that mark a TLS connection as mesh mTLS on a
// PERMISSIVE inbound port (Istio's inbound mTLS chain match). The slice is a copy.
func MeshMTLSALPN() []string {
	return []string{ALPNIstioPeerExchange, ALPNIstio, ALPNIstioHTTP10, ALPNIstioHTTP11, ALPNIstioH2}
}

// IstioMetadata is the filter_metadata namespace istiod writes its own facts under ("istio"):
// a route's config origin, and a cluster's services (IstioServicesKey: a list of {host, name,
// namespace}), where the destination reporter of Istio's metrics finds destination_service.
const (
	IstioMetadata    = "istio"
	IstioServicesKey = "services"
)
