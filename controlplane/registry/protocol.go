package registry

import "strings"

// ParseProtocol maps a protocol name as written in Istio config ("HTTP", "grpc-web", "Mongo", ...)
// to a Protocol, case-insensitively. Unknown or empty names give Unsupported, which means the
// protocol is detected at run time.
func ParseProtocol(s string) Protocol {
	switch strings.ToLower(s) {
	case "http":
		return HTTP
	case "http2":
		return HTTP2
	case "https":
		return HTTPS
	case "grpc":
		return GRPC
	case "grpc-web":
		return GRPCWeb
	case "tcp":
		return TCP
	case "tls":
		return TLS
	case "mongo":
		return Mongo
	case "redis":
		return Redis
	case "mysql":
		return MySQL
	case "udp":
		return UDP
	}
	return Unsupported
}

// ProtocolFromPortName selects a protocol from an Istio port name: the name itself or its prefix
// before the first '-' ("http", "http-foo", "grpc-api", "tcp-db"); "grpc-web" and "grpc-web-*" give
// GRPCWeb. Unknown prefixes give Unsupported.
func ProtocolFromPortName(name string) Protocol {
	n := strings.ToLower(name)
	if n == "grpc-web" || strings.HasPrefix(n, "grpc-web-") {
		return GRPCWeb
	}
	if i := strings.IndexByte(n, '-'); i >= 0 {
		n = n[:i]
	}
	return ParseProtocol(n)
}

// ProtocolFromAppProtocol maps a Kubernetes appProtocol value. Besides Istio's protocol names it
// understands the standard kubernetes.io/h2c (HTTP2), kubernetes.io/ws and kubernetes.io/wss (HTTP).
func ProtocolFromAppProtocol(app string) Protocol {
	switch strings.ToLower(app) {
	case "kubernetes.io/h2c":
		return HTTP2
	case "kubernetes.io/ws", "kubernetes.io/wss":
		return HTTP
	}
	return ParseProtocol(app)
}

// SelectProtocol picks a port's protocol the way Istio does, in order of precedence: an explicit
// protocol field (ServiceEntry's ports[].protocol; Kubernetes only when it is UDP), then appProtocol,
// then the port name convention. When nothing matches the result is Unsupported (auto-detect).
//
// Istio's ServiceEntry conversion reads only the protocol field; Strait also honours the port name
// convention when the field is empty, which yields the same protocol for every conventional name.
func SelectProtocol(name, protocol, appProtocol string) Protocol {
	if p := ParseProtocol(protocol); p != Unsupported {
		return p
	}
	if appProtocol != "" {
		if p := ProtocolFromAppProtocol(appProtocol); p != Unsupported {
			return p
		}
	}
	return ProtocolFromPortName(name)
}

// IsTLS reports whether the protocol carries TLS end to end (routed by SNI, not inspected).
func (p Protocol) IsTLS() bool { return p == HTTPS || p == TLS }

// IsTCP reports whether traffic on the protocol is proxied as opaque TCP (including TLS by SNI and
// the database protocols Strait forwards as TCP).
func (p Protocol) IsTCP() bool {
	switch p {
	case TCP, TLS, HTTPS, Mongo, Redis, MySQL:
		return true
	}
	return false
}
