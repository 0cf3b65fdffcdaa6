package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/strait-mesh/strait/proxy/agent"
)

// XDSTLS configures TLS (and optionally mutual TLS) to the control plane, as Istio's port 15012.
// Files are read at every handshake, so certificates rotated on disk apply on the next
// reconnect without a restart.
type XDSTLS struct {
	RootCA     string // PEM file of the CA that signed the control plane's certificate (required)
	CertChain  string // PEM client certificate chain for mutual TLS (optional, with Key)
	Key        string // PEM private key of CertChain
	ServerName string // name to verify in the server certificate (default: the address host)
}

// maxPEMFile bounds the size of a certificate or key file.
const maxPEMFile = 1 << 20

func readPEM(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Size() > maxPEMFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxPEMFile)
	}
	return os.ReadFile(path)
}

// config builds the TLS configuration of the xDS connection; nil settings mean plaintext (a
// nil configuration). A ServerName left empty is the address's host (internal/grpclite fills
// it in before the handshake, which VerifyConnection then sees as cs.ServerName).
func (x *XDSTLS) config() (*tls.Config, error) {
	if x == nil {
		return nil, nil
	}
	if x.RootCA == "" {
		return nil, errors.New("xds tls: a root CA file is required")
	}
	if (x.CertChain == "") != (x.Key == "") {
		return nil, errors.New("xds tls: client certificate and key go together")
	}
	// Fail at startup on unreadable files rather than at the first handshake.
	if _, err := x.roots(); err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: x.ServerName}
	if x.CertChain != "" {
		if _, err := x.clientCert(); err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return x.clientCert() }
	}
	// The roots are re-read per handshake: verify the chain ourselves with the current pool.
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		roots, err := x.roots()
		if err != nil {
			return err
		}
		if len(cs.PeerCertificates) == 0 {
			return errors.New("xds tls: server sent no certificate")
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		_, err = cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: cs.ServerName, Roots: roots, Intermediates: inter})
		if err != nil {
			return fmt.Errorf("xds tls: verifying the control plane's certificate: %w", err)
		}
		return nil
	}
	return cfg, nil
}

func (x *XDSTLS) roots() (*x509.CertPool, error) {
	b, err := readPEM(x.RootCA)
	if err != nil {
		return nil, fmt.Errorf("xds tls: reading root CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("xds tls: %s holds no PEM certificate", x.RootCA)
	}
	return pool, nil
}

func (x *XDSTLS) clientCert() (*tls.Certificate, error) {
	c, err := readPEM(x.CertChain)
	if err != nil {
		return nil, fmt.Errorf("xds tls: reading client certificate: %w", err)
	}
	k, err := readPEM(x.Key)
	if err != nil {
		return nil, fmt.Errorf("xds tls: reading client key: %w", err)
	}
	cert, err := tls.X509KeyPair(c, k)
	if err != nil {
		return nil, fmt.Errorf("xds tls: client key pair: %w", err)
	}
	return &cert, nil
}

// agentTLS connects to the control plane's mesh port (Istio's 15012) over mutual TLS as
// the workload: the agent's current certificate as the client certificate, the control plane's
// certificate verified for serverName against the agent's current trust bundle. Both are read
// per handshake, so a renewed certificate or a rotated root applies on the next reconnect.
func agentTLS(a *agent.Agent, serverName string) *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName,
		GetClientCertificate: a.GetClientCertificate,
		InsecureSkipVerify:   true, // verified below against the current bundle
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("xds tls: server sent no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: serverName, Roots: a.Roots(), Intermediates: inter}); err != nil {
				return fmt.Errorf("xds tls: verifying the control plane's certificate: %w", err)
			}
			return nil
		}}
	return cfg
}
