package extauthz

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/netip"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strait-mesh/strait/internal/vocab"
	"github.com/strait-mesh/strait/proxy/authz"
	"github.com/strait-mesh/strait/proxy/grpcunary"
	"github.com/strait-mesh/strait/proxy/xdsfield"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	netextauthzv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/ext_authz/v3"
	authv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/service/auth/v3"
)

// Names of the network filter.
const (
	// NetworkFilterName is the network filter's well-known name, and the connection dynamic
	// metadata namespace its authorization service's metadata is written to.
	NetworkFilterName = vocab.FilterNetworkExtAuthz
	// NetworkTypeURL is the type URL of the network filter's configuration.
	NetworkTypeURL = "type.googleapis.com/envoy.extensions.filters.network.ext_authz.v3.ExtAuthz"
	// DurationMetadataKey is the key, in NetworkFilterName's namespace, of the duration of an
	// allowing check in milliseconds (Envoy's ext_authz_duration).
	DurationMetadataKey = "ext_authz_duration"
)

// NetworkConfig is a compiled network ExtAuthz (envoy.filters.network.ext_authz): one gRPC check
// per connection. It is immutable and safe for concurrent use.
type NetworkConfig struct {
	// Cluster is grpc_service.envoy_grpc.cluster_name, where checks are sent.
	Cluster string
	// Timeout bounds one check (grpc_service.timeout, 200ms when unset); 0: no bound beyond the
	// caller's context.
	Timeout time.Duration
	// FailureModeAllow lets a connection continue when its check fails.
	FailureModeAllow bool
	// StatPrefix is the statistics' prefix as Envoy builds it: "ext_authz.<stat_prefix>.".
	StatPrefix string

	grpc               grpcunary.Client
	enabledMeta        *authz.MetadataMatcher
	includeTLSSession  bool
	metadataNamespaces []string
}

var networkFields = []string{"stat_prefix", "grpc_service", "failure_mode_allow", "transport_api_version",
	"filter_enabled_metadata", "include_tls_session", "metadata_context_namespaces"}

// CompileNetwork compiles a network ExtAuthz; path names it in errors (e.g.
// "filter_chains[0].filters[1].typed_config"). Fields this package does not implement
// (include_peer_certificate, bootstrap_metadata_labels_key, send_tls_alert_on_denial,
// typed_metadata_context_namespaces, shadow_mode, and a google_grpc service) are
// *xdsfield.UnsupportedError naming them.
func CompileNetwork(cfg *netextauthzv3.ExtAuthz, path string) (*NetworkConfig, error) {
	if cfg == nil {
		return nil, fmt.Errorf("%s: missing ExtAuthz config", path)
	}
	if err := xdsfield.Check(cfg, path, networkFields...); err != nil {
		return nil, err
	}
	if cfg.GetStatPrefix() == "" {
		return nil, fmt.Errorf("%s.stat_prefix: empty", path)
	}
	if v := cfg.GetTransportApiVersion(); v != corev3.ApiVersion_V3 && v != corev3.ApiVersion_AUTO {
		return nil, xdsfield.Unsupported(path+".transport_api_version", "%s (only V3)", v)
	}
	if cfg.GetGrpcService() == nil {
		return nil, fmt.Errorf("%s.grpc_service: missing", path)
	}
	g, err := compileGRPCClient(path+".grpc_service", cfg.GetGrpcService())
	if err != nil {
		return nil, err
	}
	c := &NetworkConfig{
		Cluster:           g.Cluster,
		Timeout:           g.Timeout,
		FailureModeAllow:  cfg.GetFailureModeAllow(),
		StatPrefix:        "ext_authz." + cfg.GetStatPrefix() + ".",
		grpc:              g,
		includeTLSSession: cfg.GetIncludeTlsSession(),
	}
	if m := cfg.GetFilterEnabledMetadata(); m != nil {
		if c.enabledMeta, err = authz.CompileMetadataMatcher(path+".filter_enabled_metadata", m); err != nil {
			return nil, err
		}
	}
	if c.metadataNamespaces, err = metadataNamespaces(path, cfg.GetMetadataContextNamespaces()); err != nil {
		return nil, err
	}
	return c, nil
}

// Enabled reports whether a connection is checked: filter_enabled_metadata (when set) on the
// connection's dynamic metadata md.
func (c *NetworkConfig) Enabled(md func(namespace string) *structpb.Struct) bool {
	return c.enabledMeta == nil || c.enabledMeta.Match(md)
}

// Connection is what a network check sees of a connection. The caller owns it; Check only
// reads it.
type Connection struct {
	// Source is the downstream peer's address; Destination the local address it connected to
	// (the original destination of a redirected connection).
	Source, Destination netip.AddrPort
	// TLS says the listener terminated TLS; SNI is the server name the client sent.
	TLS bool
	SNI string
	// PeerCertificate is the client's verified leaf certificate, LocalCertificate the one the
	// proxy presented; nil without.
	PeerCertificate, LocalCertificate *x509.Certificate
	// Metadata returns the connection's dynamic metadata namespace, or nil; it may be nil.
	Metadata func(namespace string) *structpb.Struct
}

// Check asks the authorization service about conn through rt, within Timeout and ctx, and
// classifies the reply: a CheckResponse with status OK allows, one with an error_response and
// every failure to get a reply are StatusError, anything else is StatusDenied. Only Status,
// Err and Metadata of the Response are set. It never returns nil.
func (c *NetworkConfig) Check(ctx context.Context, rt RoundTripper, conn *Connection) *Response {
	cr, err := callCheck(ctx, &c.grpc, rt, c.checkRequest(conn))
	if err != nil {
		return errorResponse(err)
	}
	res := &Response{Status: checkStatus(cr), Metadata: checkMetadata(cr)}
	if res.Status == StatusError {
		res.Err = fmt.Errorf("the authorization service sent an error_response (grpc-status %d)", cr.GetStatus().GetCode())
	}
	return res
}

// checkRequest builds the CheckRequest of a connection as Envoy's createTcpCheck does: source
// and destination addresses and principals, the SNI with include_tls_session, the
// metadata_context_namespaces of the connection's metadata; no request attributes.
func (c *NetworkConfig) checkRequest(conn *Connection) *authv3.CheckRequest {
	var srcP, dstP string
	if conn.TLS {
		srcP, dstP = CertPrincipal(conn.PeerCertificate), CertPrincipal(conn.LocalCertificate)
	}
	ac := &authv3.AttributeContext{
		Source:      peer(conn.Source, srcP, ""),
		Destination: peer(conn.Destination, dstP, ""),
	}
	if c.includeTLSSession && conn.TLS {
		ac.TlsSession = &authv3.AttributeContext_TLSSession{Sni: sanitize(conn.SNI)}
	}
	ac.MetadataContext = metadataContext(c.metadataNamespaces, conn.Metadata)
	return &authv3.CheckRequest{Attributes: ac}
}

// CertPrincipal is a certificate's identity as Envoy's ext_authz reports it: the first URI SAN,
// else the first DNS SAN, else the subject; "" for nil.
func CertPrincipal(c *x509.Certificate) string {
	switch {
	case c == nil:
		return ""
	case len(c.URIs) > 0:
		return c.URIs[0].String()
	case len(c.DNSNames) > 0:
		return c.DNSNames[0]
	}
	return c.Subject.String()
}
