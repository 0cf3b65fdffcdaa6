package authz

import (
	"crypto/x509"
	"net/netip"

	"google.golang.org/protobuf/types/known/structpb"
)

// Connection is what the network RBAC filter (and the connection-level rules of the HTTP one)
// sees of a downstream connection. Implementations are called on the request path: they must not
// block and should not allocate (return stored values).
type Connection interface {
	// DestinationIP is the local address the connection was accepted on, after the original
	// destination was restored (Envoy's downstream local address). Invalid when unknown.
	DestinationIP() netip.Addr
	// DestinationPort is the local port (Envoy's downstream local address port); 0 when unknown.
	DestinationPort() uint16
	// DirectRemoteIP is the physical peer of the connection (Envoy's direct remote address). It
	// is also what Envoy's deprecated source_ip rule sees, since strait-proxy does not implement
	// the PROXY protocol on downstream listeners.
	DirectRemoteIP() netip.Addr
	// RemoteIP is the downstream client address after x-forwarded-for processing (Envoy's
	// downstream remote address). On a plain TCP connection it equals DirectRemoteIP.
	RemoteIP() netip.Addr
	// RequestedServerName is the TLS SNI the client sent, "" without TLS or SNI.
	RequestedServerName() string
	// Peer describes the downstream TLS peer, or returns nil when the connection is not TLS.
	// A TLS connection whose client sent no certificate returns a non-nil, empty Peer: Envoy's
	// `authenticated` principal without principal_name matches any TLS connection.
	Peer() *Peer
	// Metadata returns the dynamic metadata namespace filter (e.g. "istio_authn",
	// "envoy.filters.http.jwt_authn"), or nil when there is none.
	Metadata(filter string) *structpb.Struct
	// FilterState returns the string serialization of the filter state object key (e.g.
	// Istio's "io.istio.peer_principal" on a waypoint), ok=false when there is no such object or
	// it has no string form.
	FilterState(key string) (value string, ok bool)
}

// Request is what the HTTP RBAC filter sees of a request: the connection it arrived on plus the
// request headers, after the connection manager's normalization. Envoy's header matchers see
// the pseudo-headers :method, :path, :authority and :scheme (and "host", which Envoy's header
// map folds into :authority); those come from the dedicated methods, every other name from
// Header. A pseudo-header whose method returns "" is treated as absent.
type Request interface {
	Connection
	// Method is the :method pseudo-header.
	Method() string
	// Path is the :path pseudo-header, query and fragment included ("" for a CONNECT request,
	// which has none). url_path and uri_template rules strip the query and fragment themselves.
	Path() string
	// Host is the :authority pseudo-header (the Host header in HTTP/1).
	Host() string
	// Scheme is the :scheme pseudo-header.
	Scheme() string
	// Header returns the values of the request header name, which is given in lower case and
	// is never a pseudo-header among the above or "host". Repeated headers are joined with ","
	// before matching, as Envoy does; nil or empty means absent.
	Header(name string) []string
}

// Peer is the downstream TLS peer as Envoy's `authenticated` principal sees it: principal_name
// matches any URI SAN, then any DNS SAN, then the subject. Build it once per connection.
type Peer struct {
	// URISANs are the URI subject alternative names of the peer certificate (SPIFFE IDs).
	URISANs []string
	// DNSSANs are the DNS subject alternative names of the peer certificate.
	DNSSANs []string
	// Subject is the certificate subject in RFC 2253 form; "" without a client certificate.
	Subject string
}

// PeerFromCertificate returns the Peer for a verified client certificate, or an empty Peer for
// a TLS connection without one (c == nil).
func PeerFromCertificate(c *x509.Certificate) *Peer {
	if c == nil {
		return &Peer{}
	}
	p := &Peer{DNSSANs: c.DNSNames, Subject: c.Subject.String()}
	for _, u := range c.URIs {
		p.URISANs = append(p.URISANs, u.String())
	}
	return p
}
