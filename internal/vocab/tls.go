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
