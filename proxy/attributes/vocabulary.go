package attributes

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"net/netip"
	"strconv"
	"strings"
)

// attr resolves one attribute of a Record; false: absent.
type attr func(r *Record) (Value, bool)

// Top-level attribute names. Every Envoy name is declared so that an expression using one this
// proxy does not provide gets "not supported" rather than "undeclared".
const (
	nameRequest     = "request"
	nameResponse    = "response"
	nameSource      = "source"
	nameDestination = "destination"
	nameConnection  = "connection"
	nameUpstream    = "upstream"
	nameXDS         = "xds"
	nameMetadata    = "metadata"
)

// unsupportedTop are Envoy's top-level attributes strait-proxy does not provide (yet).
var unsupportedTop = []string{"filter_state", "upstream_filter_state", "plugin_name", "plugin_root_id", "plugin_vm_id"}

// groups maps each top-level attribute to its fields: the vocabulary of Envoy's attributes
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/advanced/attributes) that
// strait-proxy provides. It is read-only after package initialization.
var groups = map[string]map[string]attr{
	nameRequest: {
		"path":          str(func(r *Record) string { return r.Path }),
		"url_path":      str(func(r *Record) string { p, _, _ := strings.Cut(r.Path, "?"); return p }),
		"query":         requestQuery,
		"host":          str(func(r *Record) string { return r.Authority }),
		"scheme":        str(func(r *Record) string { return r.Scheme }),
		"method":        str(func(r *Record) string { return r.Method }),
		"headers":       requestHeaders,
		"headers_bytes": httpOnly(func(r *Record) Value { return intVal(int64(requestHeaderBytes(r))) }),
		"referer":       requestHeader("Referer"),
		"useragent":     requestHeader("User-Agent"),
		"id":            requestHeader("X-Request-Id"),
		"time":          requestTime,
		"protocol":      str(func(r *Record) string { return r.Protocol }),
		"duration":      func(r *Record) (Value, bool) { return durationVal(int64(r.Duration)), !r.Start.IsZero() },
		"size":          httpOnly(requestSize),
		"total_size": httpOnly(func(r *Record) Value {
			return intVal(int64(r.BytesReceived + int64(requestHeaderBytes(r))))
		}),
	},
	nameResponse: {
		"code":         func(r *Record) (Value, bool) { return intVal(int64(r.ResponseCode)), r.ResponseCode != 0 },
		"code_details": str(func(r *Record) string { return r.ResponseCodeDetails }),
		"flags":        func(r *Record) (Value, bool) { return intVal(int64(flagBits(r.ResponseFlags))), true },
		"grpc_status":  responseGRPCStatus,
		"headers":      responseHeaders,
		"trailers":     responseTrailers,
		"headers_bytes": httpOnly(func(r *Record) Value {
			return intVal(int64(headerBytes(r.ResponseHeaders)))
		}),
		"size": httpOnly(func(r *Record) Value { return intVal(int64(r.BytesSent)) }),
		"total_size": httpOnly(func(r *Record) Value {
			return intVal(int64(r.BytesSent + int64(headerBytes(r.ResponseHeaders)+headerBytes(r.ResponseTrailers))))
		}),
	},
	nameSource: {
		"address": addr(func(r *Record) netip.AddrPort { return r.DownstreamRemote }),
		"port":    port(func(r *Record) netip.AddrPort { return r.DownstreamRemote }),
	},
	nameDestination: {
		"address": addr(func(r *Record) netip.AddrPort { return r.DownstreamLocal }),
		"port":    port(func(r *Record) netip.AddrPort { return r.DownstreamLocal }),
	},
	nameConnection: {
		"mtls":                           func(r *Record) (Value, bool) { return boolVal(len(r.PeerCertificates) > 0), true },
		"requested_server_name":          str(func(r *Record) string { return r.RequestedServerName }),
		"subject_local_certificate":      cert(local, func(c *x509.Certificate) string { return c.Subject.String() }),
		"subject_peer_certificate":       cert(peer, func(c *x509.Certificate) string { return c.Subject.String() }),
		"dns_san_local_certificate":      cert(local, firstDNS),
		"dns_san_peer_certificate":       cert(peer, firstDNS),
		"uri_san_local_certificate":      cert(local, firstURI),
		"uri_san_peer_certificate":       cert(peer, firstURI),
		"sha256_peer_certificate_digest": cert(peer, func(c *x509.Certificate) string { s := sha256.Sum256(c.Raw); return hex.EncodeToString(s[:]) }),
		"termination_details":            str(func(r *Record) string { return r.ConnectionTerminationDetails }),
	},
	nameUpstream: {
		"address":                  str(func(r *Record) string { return r.UpstreamHost }),
		"port":                     upstreamPort,
		"local_address":            addr(func(r *Record) netip.AddrPort { return r.UpstreamLocal }),
		"transport_failure_reason": str(func(r *Record) string { return r.UpstreamTransportFailureReason }),
		"request_attempt_count":    func(r *Record) (Value, bool) { return uintVal(uint64(max(r.Attempts, 0))), true },
	},
	nameXDS: {
		"cluster_name": str(func(r *Record) string { return r.UpstreamCluster }),
		"route_name":   str(func(r *Record) string { return r.RouteName }),
	},
	nameMetadata: {
		"filter_metadata": filterMetadata,
	},
}

// str is a string attribute, absent when empty.
func str(f func(*Record) string) attr {
	return func(r *Record) (Value, bool) {
		s := f(r)
		return stringVal(s), s != ""
	}
}

// httpOnly is an attribute of HTTP requests only (a Record with a protocol).
func httpOnly(f func(*Record) Value) attr {
	return func(r *Record) (Value, bool) {
		if r.Protocol == "" {
			return Value{}, false
		}
		return f(r), true
	}
}

// requestHeader is one request header's value (several comma-joined), absent when not sent.
func requestHeader(canonical string) attr {
	return func(r *Record) (Value, bool) {
		vs := values(r.RequestHeaders, canonical)
		if len(vs) == 0 {
			return Value{}, false
		}
		return stringVal(joinValues(vs)), true
	}
}

func requestQuery(r *Record) (Value, bool) {
	if r.Protocol == "" {
		return Value{}, false
	}
	_, q, _ := strings.Cut(r.Path, "?")
	return stringVal(q), true
}

func requestTime(r *Record) (Value, bool) {
	if r.Start.IsZero() {
		return Value{}, false
	}
	return timestampVal(r.Start), true
}

// requestSize is Envoy's request.size: the content-length header when there is one, else the
// body bytes received.
func requestSize(r *Record) Value {
	if vs := values(r.RequestHeaders, "Content-Length"); len(vs) == 1 {
		if n, err := strconv.ParseInt(vs[0], 10, 64); err == nil && n >= 0 {
			return intVal(int64(n))
		}
	}
	return intVal(int64(r.BytesReceived))
}

// requestHeaderBytes approximates Envoy's header map byte size: the lengths of every name and
// value, pseudo-headers included.
func requestHeaderBytes(r *Record) int {
	n := len(":method") + len(r.Method) + len(":path") + len(r.Path) + len(":authority") + len(r.Authority)
	if r.Scheme != "" {
		n += len(":scheme") + len(r.Scheme)
	}
	return n + headerBytes(r.RequestHeaders)
}

// headerBytes sums the names and values of h's fields.
func headerBytes(h Headers) int {
	n := 0
	rangeHeaders(h, func(name, value string) bool {
		n += len(name) + len(value)
		return true
	})
	return n
}

func responseGRPCStatus(r *Record) (Value, bool) {
	if r.GRPCStatus == "" {
		return Value{}, false
	}
	n, err := strconv.Atoi(r.GRPCStatus)
	if err != nil {
		return Value{}, false
	}
	return intVal(int64(n)), true
}

func addr(f func(*Record) netip.AddrPort) attr {
	return func(r *Record) (Value, bool) {
		a := f(r)
		if !a.IsValid() {
			return Value{}, false
		}
		return stringVal(a.String()), true
	}
}

func port(f func(*Record) netip.AddrPort) attr {
	return func(r *Record) (Value, bool) {
		a := f(r)
		if !a.IsValid() {
			return Value{}, false
		}
		return intVal(int64(a.Port())), true
	}
}

func upstreamPort(r *Record) (Value, bool) {
	_, p, err := splitHostPort(r.UpstreamHost)
	if err != nil {
		return Value{}, false
	}
	return intVal(int64(p)), true
}

// splitHostPort splits "host:port" or "[v6]:port".
func splitHostPort(s string) (string, int, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return "", 0, strconv.ErrSyntax
	}
	p, err := strconv.ParseUint(s[i+1:], 10, 16)
	if err != nil {
		return "", 0, err
	}
	return strings.Trim(s[:i], "[]"), int(p), nil
}

func local(r *Record) *x509.Certificate { return r.LocalCertificate }

func peer(r *Record) *x509.Certificate {
	if len(r.PeerCertificates) == 0 {
		return nil
	}
	return r.PeerCertificates[0]
}

// cert is a string attribute of a certificate of the downstream connection, absent without the
// certificate or when empty.
func cert(which func(*Record) *x509.Certificate, f func(*x509.Certificate) string) attr {
	return func(r *Record) (Value, bool) {
		c := which(r)
		if c == nil {
			return Value{}, false
		}
		s := f(c)
		return stringVal(s), s != ""
	}
}

func firstDNS(c *x509.Certificate) string {
	if len(c.DNSNames) == 0 {
		return ""
	}
	return c.DNSNames[0]
}

func firstURI(c *x509.Certificate) string {
	if len(c.URIs) == 0 {
		return ""
	}
	return c.URIs[0].String()
}

func filterMetadata(r *Record) (Value, bool) {
	if len(r.DynamicMetadata) == 0 {
		return Value{}, false
	}
	return mapVal(metadataMap(r.DynamicMetadata)), true
}

// joinValues joins a header's values with commas, as Envoy's attribute maps do.
func joinValues(vs []string) string {
	if len(vs) == 1 {
		return vs[0]
	}
	return strings.Join(vs, ",")
}

// flagShort lists Envoy's response flags in the order of their bits in response.flags
// (Envoy's legacy response flag bit vector: LH is 0x1, UH 0x2, ...).
var flagShort = [...]string{"LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "RL", "UAEX",
	"RLSE", "DC", "URX", "SI", "IH", "DPE", "UMSDR", "RFCF", "NFCF", "DT", "UPE", "NC", "OM", "DF", "DO", "DR", "UDO"}

// FlagNames are the response flags Envoy knows (short names), in bit order.
func FlagNames() []string { return flagShort[:] }

// flagBits renders the access log's flags ("UF,URX") as Envoy's bit vector.
func flagBits(flags string) int64 {
	var bits int64
	for flags != "" && flags != "-" {
		var f string
		f, flags, _ = strings.Cut(flags, ",")
		for i, s := range flagShort {
			if s == f {
				bits |= 1 << i
				break
			}
		}
	}
	return bits
}
