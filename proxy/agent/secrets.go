package agent

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"slices"
	"time"

	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	tlsv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/transport_sockets/tls/v3"
)

// The SDS secret names the agent serves, Istio's: listeners and clusters that name them in
// tls_certificate_sds_secret_configs / validation_context_sds_secret_config get them from the
// agent, every other name comes from the control plane over xDS.
const (
	// SecretDefault is the workload's certificate chain and private key.
	SecretDefault = "default"
	// SecretRootCA is the mesh trust bundle.
	SecretRootCA = "ROOTCA"
)

// ErrNoCertificate is returned by GetCertificate and GetClientCertificate before the first
// certificate was issued.
var ErrNoCertificate = errors.New("the workload certificate is not available yet")

// workload is one immutable issued certificate (the "default" secret).
type workload struct {
	cert     *tls.Certificate // leaf and intermediates, with the key and the parsed leaf
	secret   *tlsv3.Secret
	received time.Time
	renewAt  time.Time
	method   string // how the CSR was authenticated
}

// Certificate returns the current workload certificate (SDS "default"): the leaf and its
// intermediates, the private key, and the parsed leaf in Leaf; nil before the first certificate.
// It is one atomic load, safe to call per handshake; the value must not be modified.
func (a *Agent) Certificate() *tls.Certificate {
	if w := a.cert.Load(); w != nil {
		return w.cert
	}
	return nil
}

// GetCertificate has the shape of tls.Config.GetCertificate: a server config built once serves
// every new certificate from its next handshake on.
func (a *Agent) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := a.Certificate(); c != nil {
		return c, nil
	}
	return nil, ErrNoCertificate
}

// GetClientCertificate has the shape of tls.Config.GetClientCertificate. Before the first
// certificate it fails the handshake (as Envoy does not connect while its SDS secret is
// missing) rather than connecting without a client certificate.
func (a *Agent) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	if c := a.Certificate(); c != nil {
		return c, nil
	}
	return nil, ErrNoCertificate
}

// Roots returns the current trust bundle (SDS "ROOTCA") as a pool for verifying mesh peers. One
// atomic load; the pool is shared and must not be modified. Never nil.
func (a *Agent) Roots() *x509.CertPool { return a.roots.Load().pool }

// RootsPEM returns the current trust bundle as PEM. The slice must not be modified.
func (a *Agent) RootsPEM() []byte { return a.roots.Load().pem }

// RootCertificates returns the certificates of the current trust bundle. The slice is a copy;
// the certificates must not be modified.
func (a *Agent) RootCertificates() []*x509.Certificate { return slices.Clone(a.roots.Load().certs) }

// Secret returns the agent's secret of that SDS name as Envoy's Secret, or nil for another name
// or before the first certificate: "default" is a tls_certificate (PEM chain and private key,
// inline), "ROOTCA" a validation_context with trusted_ca (inline PEM). It has the shape of
// tlsx.Secrets. A new *Secret is built only when the secret changes, so a consumer can cache
// what it derives from one by pointer identity (as tlsx does). The private key it holds must
// not be logged or dumped.
func (a *Agent) Secret(name string) *tlsv3.Secret {
	switch name {
	case SecretDefault:
		if w := a.cert.Load(); w != nil {
			return w.secret
		}
	case SecretRootCA:
		return a.roots.Load().secret
	}
	return nil
}

// Subscribe returns a channel that receives a value after every change of "default" or
// "ROOTCA" (changes that happen before the receiver reads are coalesced into one value: read
// the current secrets then), and a function that ends the subscription. Sending never blocks
// the agent.
func (a *Agent) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	a.subMu.Lock()
	a.subs[ch] = struct{}{}
	a.subMu.Unlock()
	return ch, func() {
		a.subMu.Lock()
		delete(a.subs, ch)
		a.subMu.Unlock()
	}
}

func (a *Agent) notify() {
	a.subMu.Lock()
	defer a.subMu.Unlock()
	for ch := range a.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func tlsCertificateSecret(chainPEM, keyPEM []byte) *tlsv3.Secret {
	return &tlsv3.Secret{
		Name: SecretDefault,
		Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: chainPEM}},
			PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: keyPEM}},
		}},
	}
}

func validationSecret(rootsPEM []byte) *tlsv3.Secret {
	return &tlsv3.Secret{
		Name: SecretRootCA,
		Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: rootsPEM}},
		}},
	}
}
