package ca

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for ServingOptions.
var (
	// DefaultServingDNSNames are the names straitd answers to: Istio's discovery address (what
	// proxies and istioctl expect as ServerName), its own name, and localhost.
	DefaultServingDNSNames = []string{"istiod.istio-system.svc", "straitd", "localhost"}
	// DefaultServingIPs lets clients on the same host dial the loopback address.
	DefaultServingIPs = []net.IP{net.IPv4(127, 0, 0, 1)}
)

// DefaultServingLifetime is the lifetime of straitd's serving certificate; it is re-issued at
// half of it.
const DefaultServingLifetime = 24 * time.Hour

// ServingOptions configure straitd's serving certificate.
type ServingOptions struct {
	// DNSNames and IPs are the certificate's SANs; nil means DefaultServingDNSNames and
	// DefaultServingIPs (an empty, non-nil slice means none).
	DNSNames []string
	IPs      []net.IP
	// Lifetime defaults to DefaultServingLifetime.
	Lifetime time.Duration
	// Logger receives re-issue failures (default slog.Default()).
	Logger *slog.Logger
}

// ServingCertificate is straitd's own TLS certificate for its 15012 port, signed by the
// Authority: an ECDSA P-256 key generated in memory, DNS and IP SANs, extended key usage
// serverAuth. It is re-issued on use once half of its lifetime has passed or when the Authority's
// signing root or trust bundle changed. Safe for concurrent use.
type ServingCertificate struct {
	a   *Authority
	o   ServingOptions
	log *slog.Logger

	mu      sync.Mutex
	cur     *tls.Certificate
	gen     uint64    // Authority generation cur was issued under
	renewAt time.Time // when cur is re-issued
}

// NewServingCertificate issues straitd's serving certificate from a.
func NewServingCertificate(a *Authority, o ServingOptions) (*ServingCertificate, error) {
	if o.DNSNames == nil {
		o.DNSNames = DefaultServingDNSNames
	}
	if o.IPs == nil {
		o.IPs = DefaultServingIPs
	}
	if o.Lifetime <= 0 {
		o.Lifetime = DefaultServingLifetime
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &ServingCertificate{a: a, o: o, log: o.Logger.With("component", "ca")}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.issueLocked(); err != nil {
		return nil, err
	}
	return s, nil
}

// Get returns the current serving certificate, re-issuing it first if it is due. If re-issuing
// fails while the current certificate is still valid, that one is returned (and the failure
// logged), so a transient failure never stops straitd from serving.
func (s *ServingCertificate) Get() (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.a.Now()
	if now.Before(s.renewAt) && s.gen == s.a.Generation() {
		return s.cur, nil
	}
	if err := s.issueLocked(); err != nil {
		if now.Before(s.cur.Leaf.NotAfter) {
			s.log.Error("re-issuing straitd's serving certificate; serving the current one", "err", err)
			return s.cur, nil
		}
		return nil, err
	}
	return s.cur, nil
}

// GetCertificate is Get in the shape of tls.Config.GetCertificate.
func (s *ServingCertificate) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.Get()
}

func (s *ServingCertificate) issueLocked() error {
	gen := s.a.Generation()
	st := s.a.state.Load()
	key, err := newECDSAKey()
	if err != nil {
		return fmt.Errorf("issuing straitd's serving certificate: %w", err)
	}
	now := s.a.Now()
	notAfter := now.Add(s.o.Lifetime)
	if notAfter.After(st.notAfter) {
		notAfter = st.notAfter
	}
	tmpl := &x509.Certificate{
		NotBefore:             now.Add(-min(maxBackdate, s.o.Lifetime/10)),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              s.o.DNSNames,
		IPAddresses:           s.o.IPs,
	}
	leaf, err := newCertificate(tmpl, st.cert, key.Public(), st.signer)
	if err != nil {
		return fmt.Errorf("issuing straitd's serving certificate: %w", err)
	}
	chain := [][]byte{leaf.Raw}
	for _, c := range st.chain {
		chain = append(chain, c.Raw)
	}
	s.cur = &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}
	s.gen = gen
	s.renewAt = now.Add(notAfter.Sub(now) / 2)
	return nil
}

// ServerTLSConfig returns the tls.Config for straitd's mesh port (15012, xDS and the CSR API): it
// presents sc, offers ALPN "h2" (gRPC), and requests but does not require a client certificate;
// a certificate that is presented must verify against the Authority's current trust bundle (read
// per handshake, so a root change applies to the next connection) for client authentication, or
// the handshake fails. Whether a request without a certificate may proceed is decided per RPC by
// the Authenticators (the CSR API accepts a bootstrap token), and what identity a verified
// certificate proves is read by CertificateAuthenticator.
func ServerTLSConfig(a *Authority, sc *ServingCertificate) *tls.Config {
	type cached struct {
		gen uint64
		cfg *tls.Config
	}
	var cache atomic.Pointer[cached]
	build := func() *tls.Config {
		return &tls.Config{
			MinVersion:     tls.VersionTLS12,
			NextProtos:     []string{"h2"},
			GetCertificate: sc.GetCertificate,
			ClientAuth:     tls.VerifyClientCertIfGiven,
			ClientCAs:      a.TrustPool(),
		}
	}
	base := build()
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		gen := a.Generation()
		if c := cache.Load(); c != nil && c.gen == gen {
			return c.cfg, nil
		}
		cfg := build()
		cache.Store(&cached{gen: gen, cfg: cfg})
		return cfg, nil
	}
	return base
}
