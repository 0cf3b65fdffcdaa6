package vocab

// Istio's ports, which Strait keeps so that tools and habits carry over.
const (
	AdminPort           = 15000 // proxy admin (loopback)
	OutboundCapturePort = 15001 // outbound traffic redirected by iptables
	DebugPort           = 15004 // Istio's agent debug port: reserved, not served
	InboundCapturePort  = 15006 // inbound traffic redirected by iptables
	HBONEPort           = 15008 // HBONE tunnel
	XDSPlaintextPort    = 15010 // straitd: plaintext xDS
	XDSTLSPort          = 15012 // straitd: mTLS xDS and the CA
	MonitoringPort      = 15014 // straitd: metrics, debug and the config API
	StatusPort          = 15020 // proxy: merged metrics and agent status
	HealthPort          = 15021 // proxy: health checks
	DNSPort             = 15053 // proxy: DNS
	PrometheusPort      = 15090 // proxy: Prometheus stats
)

// ProxyUID is the uid (and gid) the proxy runs as; iptables never redirects its traffic.
const ProxyUID = 1337

// ProxyListenPorts are the TCP ports the proxy itself listens on (admin, capture, HBONE, status,
// health, Prometheus): inbound connections to them are never redirected. The slice is a copy.
func ProxyListenPorts() []uint16 {
	return []uint16{AdminPort, OutboundCapturePort, InboundCapturePort, HBONEPort, StatusPort, HealthPort, PrometheusPort}
}

// ReservedPort reports whether p is one of the proxy's own ports (ProxyListenPorts, DebugPort and
// DNSPort), which a workload port cannot be captured on.
func ReservedPort(p uint32) bool {
	switch p {
	case AdminPort, OutboundCapturePort, DebugPort, InboundCapturePort, HBONEPort, StatusPort, HealthPort,
		DNSPort, PrometheusPort:
		return true
	}
	return false
}
