package tlsx

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync/atomic"

	"github.com/strait-mesh/strait/proxy/xdsfield"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	tlsv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/transport_sockets/tls/v3"
)

// Secrets resolves SDS secret names to the latest accepted secret. It is implemented by the proxy
// core over its runtime config and called during TLS handshakes, so it must be safe for concurrent
// use and cheap (an atomic load and a map lookup). It returns nil when the secret is not (yet) known.
type Secrets interface {
	Secret(name string) *tlsv3.Secret
}

// maxDataSource bounds a certificate, key or CA bundle read from a file or the environment.
const maxDataSource = 4 << 20

// readDataSource returns the bytes of an Envoy DataSource: inline_bytes, inline_string, filename
// (read now) or environment_variable.
func readDataSource(ds *corev3.DataSource, path string) ([]byte, error) {
	if ds == nil {
		return nil, fmt.Errorf("%s is required", path)
	}
	if err := xdsfield.Check(ds, path, "filename", "inline_bytes", "inline_string", "environment_variable"); err != nil {
		return nil, err
	}
	switch s := ds.GetSpecifier().(type) {
	case *corev3.DataSource_InlineBytes:
		return s.InlineBytes, nil
	case *corev3.DataSource_InlineString:
		return []byte(s.InlineString), nil
	case *corev3.DataSource_Filename:
		st, err := os.Stat(s.Filename)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
		if st.Size() > maxDataSource {
			return nil, fmt.Errorf("reading %s: file %s is larger than %d bytes", path, s.Filename, maxDataSource)
		}
		b, err := os.ReadFile(s.Filename)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
		return b, nil
	case *corev3.DataSource_EnvironmentVariable:
		v, ok := os.LookupEnv(s.EnvironmentVariable)
		if !ok {
			return nil, fmt.Errorf("reading %s: environment variable %s is not set", path, s.EnvironmentVariable)
		}
		return []byte(v), nil
	}
	return nil, fmt.Errorf("%s has no specifier", path)
}

// parseCertificate builds a tls.Certificate from an Envoy TlsCertificate (PEM chain and key).
func parseCertificate(tc *tlsv3.TlsCertificate, path string) (*tls.Certificate, error) {
	if err := xdsfield.Check(tc, path, "certificate_chain", "private_key"); err != nil {
		return nil, err
	}
	chain, err := readDataSource(tc.GetCertificateChain(), path+".certificate_chain")
	if err != nil {
		return nil, err
	}
	key, err := readDataSource(tc.GetPrivateKey(), path+".private_key")
	if err != nil {
		return nil, err
	}
	c, err := tls.X509KeyPair(chain, key)
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", path, err)
	}
	return &c, nil
}

// parseCAs returns a pool with every certificate of a PEM bundle.
func parseCAs(b []byte, path string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	for len(b) > 0 {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing %s: %w", path, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("parsing %s: no PEM certificates", path)
	}
	return pool, nil
}

// certSource yields the certificate to present, fixed or looked up by SDS name per handshake.
type certSource struct {
	static  *tls.Certificate
	name    string // SDS secret name when static is nil
	secrets Secrets
	cache   atomic.Pointer[certCache]
}

type certCache struct {
	secret *tlsv3.Secret
	cert   *tls.Certificate
	err    error
}

// errNoSecret is returned during a handshake when an SDS secret is not available.
var errNoSecret = errors.New("secret not available")

// get returns the current certificate. For SDS it re-parses only when the Secret object changed
// (the proxy core swaps in a new *Secret on each update), so rotation applies to the next
// handshake and steady-state handshakes do no parsing.
func (s *certSource) get() (*tls.Certificate, error) {
	if s.static != nil {
		return s.static, nil
	}
	sec := s.secrets.Secret(s.name)
	if sec == nil {
		return nil, fmt.Errorf("looking up certificate secret %q: %w", s.name, errNoSecret)
	}
	if c := s.cache.Load(); c != nil && c.secret == sec {
		return c.cert, c.err
	}
	c := &certCache{secret: sec}
	if tc := sec.GetTlsCertificate(); tc == nil {
		c.err = fmt.Errorf("secret %q is not a tls_certificate", s.name)
	} else {
		c.cert, c.err = parseCertificate(tc, "secret "+s.name+".tls_certificate")
	}
	s.cache.Store(c)
	return c.cert, c.err
}

// certSources compiles tls_certificates and tls_certificate_sds_secret_configs.
func certSources(ctx *tlsv3.CommonTlsContext, s Secrets) ([]*certSource, error) {
	var out []*certSource
	for i, tc := range ctx.GetTlsCertificates() {
		c, err := parseCertificate(tc, fmt.Sprintf("common_tls_context.tls_certificates[%d]", i))
		if err != nil {
			return nil, err
		}
		out = append(out, &certSource{static: c})
	}
	for i, sds := range ctx.GetTlsCertificateSdsSecretConfigs() {
		if err := checkSDS(sds, fmt.Sprintf("common_tls_context.tls_certificate_sds_secret_configs[%d]", i), s); err != nil {
			return nil, err
		}
		out = append(out, &certSource{name: sds.GetName(), secrets: s})
	}
	return out, nil
}

// checkSDS validates an SdsSecretConfig. sds_config (where to fetch from) is the proxy core's
// business: it subscribes to every name it finds; here only the name matters.
func checkSDS(sds *tlsv3.SdsSecretConfig, path string, s Secrets) error {
	if err := xdsfield.Check(sds, path, "name", "sds_config"); err != nil {
		return err
	}
	if sds.GetName() == "" {
		return fmt.Errorf("%s.name is required", path)
	}
	if s == nil {
		return fmt.Errorf("%s: no secret source configured", path)
	}
	return nil
}
