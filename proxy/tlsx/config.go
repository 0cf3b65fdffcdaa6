// Package tlsx builds crypto/tls configurations from Envoy's DownstreamTlsContext and
// UpstreamTlsContext. Certificates and validation contexts named through SDS are looked up in a
// Secrets source at handshake time, so that a rotated secret is used by the next connection
// without rebuilding listeners or clusters. Unsupported fields are errors that name the field.
//
// Peer validation follows Envoy, not crypto/tls defaults: without a validation context the peer
// certificate is not verified (on either side); with one, the chain is verified against
// trusted_ca and the leaf must match one of the subject-alt-name matchers, if any. Host names are
// not verified implicitly (Envoy does not either); use SAN matchers. Verification runs in
// VerifyConnection, so it also applies to resumed sessions.
package tlsx

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/strait-mesh/strait/proxy/xdsfield"
	tlsv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/transport_sockets/tls/v3"
)

// Server returns the server-side configuration for a DownstreamTlsContext. The returned config is
// immutable and safe for concurrent use by many connections.
func Server(ctx *tlsv3.DownstreamTlsContext, s Secrets) (*tls.Config, error) {
	if ctx == nil {
		return nil, errors.New("downstream tls context is nil")
	}
	if err := xdsfield.Check(ctx, "", "common_tls_context", "require_client_certificate", "require_sni", "disable_stateless_session_resumption"); err != nil {
		return nil, err
	}
	common := ctx.GetCommonTlsContext()
	if common == nil {
		return nil, errors.New("common_tls_context is required")
	}
	base, certs, v, err := compileCommon(common, s)
	if err != nil {
		return nil, err
	}
	if len(certs) == 0 {
		return nil, errors.New("common_tls_context: a server needs tls_certificates or tls_certificate_sds_secret_configs")
	}
	require := ctx.GetRequireClientCertificate().GetValue()
	if require && v == nil {
		return nil, errors.New("require_client_certificate needs a validation context")
	}
	base.SessionTicketsDisabled = ctx.GetDisableStatelessSessionResumption()
	base.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		return pickCertificate(certs, hello)
	}
	if v != nil {
		base.ClientAuth = tls.RequestClientCert
		if require {
			base.ClientAuth = tls.RequireAnyClientCert
		}
		base.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 && !require {
				return nil // validated only if presented, as Envoy does
			}
			val, err := v.get()
			if err != nil {
				return err
			}
			return val.verify(cs.PeerCertificates)
		}
	}
	// crypto/tls aborts the handshake when the client offers ALPN and none overlaps ours; Envoy
	// (BoringSSL) just negotiates no protocol. Serve such clients a copy without NextProtos.
	noALPN := base.Clone()
	noALPN.NextProtos = nil
	requireSNI := ctx.GetRequireSni().GetValue()
	alpn := base.NextProtos
	outer := &tls.Config{
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			if requireSNI && hello.ServerName == "" {
				return nil, errors.New("client sent no server name and require_sni is set")
			}
			if len(alpn) > 0 && len(hello.SupportedProtos) > 0 && !overlaps(alpn, hello.SupportedProtos) {
				return noALPN, nil
			}
			return base, nil
		},
		MinVersion: base.MinVersion,
	}
	return outer, nil
}

func overlaps(a, b []string) bool {
	for _, x := range b {
		if slices.Contains(a, x) {
			return true
		}
	}
	return false
}

// pickCertificate chooses among the context's certificates as Envoy does: one whose names cover
// the SNI and that the client supports, else one the client supports, else the first.
func pickCertificate(certs []*certSource, hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if len(certs) == 1 {
		return certs[0].get()
	}
	var supported, first *tls.Certificate
	var firstErr error
	for _, cs := range certs {
		c, err := cs.get()
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if first == nil {
			first = c
		}
		if hello.SupportsCertificate(c) != nil {
			continue
		}
		if hello.ServerName != "" && c.Leaf != nil && c.Leaf.VerifyHostname(hello.ServerName) == nil {
			return c, nil
		}
		if supported == nil {
			supported = c
		}
	}
	switch {
	case supported != nil:
		return supported, nil
	case first != nil:
		return first, nil
	}
	return nil, firstErr
}

// Client returns the client-side configuration for an UpstreamTlsContext. InsecureSkipVerify is
// set because verification is done by VerifyConnection with Envoy's semantics (see package doc).
// Callers that dial per endpoint may Clone it and set ServerName when the context has no sni.
func Client(ctx *tlsv3.UpstreamTlsContext, s Secrets) (*tls.Config, error) {
	if ctx == nil {
		return nil, errors.New("upstream tls context is nil")
	}
	if err := xdsfield.Check(ctx, "", "common_tls_context", "sni", "max_session_keys", "allow_renegotiation"); err != nil {
		return nil, err
	}
	if ctx.GetAllowRenegotiation() {
		return nil, errors.New("field allow_renegotiation is not supported")
	}
	common := ctx.GetCommonTlsContext()
	if common == nil {
		common = &tlsv3.CommonTlsContext{}
	}
	cfg, certs, v, err := compileCommon(common, s)
	if err != nil {
		return nil, err
	}
	cfg.ServerName = ctx.GetSni()
	cfg.InsecureSkipVerify = true
	if len(certs) > 0 {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return certs[0].get()
		}
	}
	if v != nil {
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			val, err := v.get()
			if err != nil {
				return err
			}
			return val.verify(cs.PeerCertificates)
		}
	}
	keys := 1 // Envoy's default max_session_keys
	if mk := ctx.GetMaxSessionKeys(); mk != nil {
		keys = int(mk.GetValue())
	}
	if keys > 0 {
		var cert *certSource
		if len(certs) > 0 {
			cert = certs[0]
		}
		cfg.ClientSessionCache = &boundSessionCache{size: keys, cert: cert, validator: v}
	}
	return cfg, nil
}

// boundSessionCache is the client's session cache, bound to the SDS secrets of the handshakes
// that put the sessions in it: once the certificate to present or the trust bundle changes, the
// sessions are forgotten and the next connection makes a full handshake. A resumed session
// carries the identity of its first handshake; after a rotation that is the old certificate,
// which the server verifies again (VerifyConnection) and refuses once the old root is gone —
// and crypto/tls keeps offering a session whose resumption failed.
type boundSessionCache struct {
	size      int
	cert      *certSource // nil: no certificate presented
	validator *validator  // nil: no validation

	mu    sync.Mutex
	key   sessionBinding
	inner tls.ClientSessionCache
}

// sessionBinding is what a session is bound to: the secrets' identities (a static certificate or
// validation context never changes).
type sessionBinding struct{ cert, validation *tlsv3.Secret }

func (c *boundSessionCache) current() tls.ClientSessionCache {
	var key sessionBinding
	if c.cert != nil && c.cert.static == nil {
		key.cert = c.cert.secrets.Secret(c.cert.name)
	}
	if c.validator != nil && c.validator.static == nil {
		key.validation = c.validator.secrets.Secret(c.validator.name)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inner == nil || key != c.key {
		c.key, c.inner = key, tls.NewLRUClientSessionCache(c.size)
	}
	return c.inner
}

func (c *boundSessionCache) Get(sessionKey string) (*tls.ClientSessionState, bool) {
	return c.current().Get(sessionKey)
}

func (c *boundSessionCache) Put(sessionKey string, cs *tls.ClientSessionState) {
	c.current().Put(sessionKey, cs)
}

// compileCommon compiles the parts of CommonTlsContext shared by both sides.
func compileCommon(ctx *tlsv3.CommonTlsContext, s Secrets) (*tls.Config, []*certSource, *validator, error) {
	p := "common_tls_context"
	if err := xdsfield.Check(ctx, p, "tls_params", "tls_certificates", "tls_certificate_sds_secret_configs",
		"validation_context", "validation_context_sds_secret_config", "combined_validation_context", "alpn_protocols"); err != nil {
		return nil, nil, nil, err
	}
	cfg := &tls.Config{}
	if err := applyParams(cfg, ctx.GetTlsParams(), p+".tls_params"); err != nil {
		return nil, nil, nil, err
	}
	for i, a := range ctx.GetAlpnProtocols() {
		if a == "" || len(a) > 255 {
			return nil, nil, nil, fmt.Errorf("%s.alpn_protocols[%d]: invalid protocol name", p, i)
		}
	}
	cfg.NextProtos = slices.Clone(ctx.GetAlpnProtocols())
	certs, err := certSources(ctx, s)
	if err != nil {
		return nil, nil, nil, err
	}
	v, err := compileValidator(ctx, s)
	if err != nil {
		return nil, nil, nil, err
	}
	return cfg, certs, v, nil
}

// LocalCertificate returns the leaf certificate a config from Server presents for serverName
// right now (the current SDS secret), or nil. The listener uses it after a handshake to tell the
// HTTP layer which identity it served (x-forwarded-client-cert By=). It does no parsing in the
// steady state.
func LocalCertificate(cfg *tls.Config, serverName string) *x509.Certificate {
	if cfg == nil || cfg.GetConfigForClient == nil {
		return nil
	}
	hello := &tls.ClientHelloInfo{ServerName: serverName}
	inner, err := cfg.GetConfigForClient(hello)
	if err != nil || inner == nil || inner.GetCertificate == nil {
		return nil
	}
	c, err := inner.GetCertificate(hello)
	if err != nil || c == nil {
		return nil
	}
	return c.Leaf
}
