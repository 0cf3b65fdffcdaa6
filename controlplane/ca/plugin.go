package ca

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Files of Istio's cacerts layout (the istio-system/cacerts Secret, mounted at /etc/cacerts), read
// from Options.PluginDir.
const (
	// PluginCACert is the intermediate CA certificate that signs workload certificates (one
	// certificate).
	PluginCACert = "ca-cert.pem"
	// PluginCAKey is its private key (PKCS#8, PKCS#1 or SEC 1 PEM).
	PluginCAKey = "ca-key.pem"
	// PluginRootCert is the trust bundle: one or more roots (several during a rotation).
	PluginRootCert = "root-cert.pem"
	// PluginCertChain is the chain from ca-cert.pem upwards: ca-cert.pem first, then any
	// intermediates, optionally the root. Optional: without it ca-cert.pem must be signed by a
	// root in root-cert.pem directly.
	PluginCertChain = "cert-chain.pem"
)

// loadPlugin loads and validates plug-in certificates: ca-key.pem matches ca-cert.pem, ca-cert.pem
// is a CA valid now, cert-chain.pem starts with it, and it chains through cert-chain.pem to a root
// in root-cert.pem with a path that allows both server and client authentication (a workload
// certificate serves both). Each failure names the file and the check.
func (a *Authority) loadPlugin(dir string) (*state, error) {
	now := a.opts.Now()
	read := func(name string, limit int64) ([]byte, error) {
		data, err := readFileLimited(filepath.Join(dir, name), limit)
		if err != nil {
			return nil, fmt.Errorf("loading plug-in CA certificates: %w", err)
		}
		return data, nil
	}
	bundle := func(name string) ([]*x509.Certificate, error) {
		data, err := read(name, MaxPEMBundleSize)
		if err != nil {
			return nil, err
		}
		certs, err := ParsePEMBundle(data)
		if err != nil {
			return nil, fmt.Errorf("loading plug-in CA certificates: %s: %w", name, err)
		}
		return certs, nil
	}

	caCerts, err := bundle(PluginCACert)
	if err != nil {
		return nil, err
	}
	if len(caCerts) != 1 {
		return nil, fmt.Errorf("loading plug-in CA certificates: %s holds %d certificates, want 1 (intermediates belong in %s)", PluginCACert, len(caCerts), PluginCertChain)
	}
	caCert := caCerts[0]
	keyData, err := read(PluginCAKey, maxKeyFileSize)
	if err != nil {
		return nil, err
	}
	key, err := parsePrivateKey(keyData)
	if err != nil {
		return nil, fmt.Errorf("loading plug-in CA certificates: %s: %w", PluginCAKey, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, PluginCAKey)); err == nil && fi.Mode().Perm()&0o077 != 0 {
		// A mounted Kubernetes Secret is often 0644; warn rather than refuse, as istiod does.
		a.log.Warn("plug-in CA key is readable by group or others", "file", filepath.Join(dir, PluginCAKey), "mode", fmt.Sprintf("%04o", fi.Mode().Perm()))
	}
	if err := checkCACert(caCert, key, now); err != nil {
		return nil, fmt.Errorf("loading plug-in CA certificates: %s and %s: %w", PluginCACert, PluginCAKey, err)
	}

	roots, err := bundle(PluginRootCert)
	if err != nil {
		return nil, err
	}
	rootPool := x509.NewCertPool()
	for i, r := range roots {
		if !r.BasicConstraintsValid || !r.IsCA {
			return nil, fmt.Errorf("loading plug-in CA certificates: %s: certificate %d (%q) is not a CA", PluginRootCert, i+1, r.Subject)
		}
		rootPool.AddCert(r)
	}

	interPool := x509.NewCertPool()
	chainData, err := readFileLimited(filepath.Join(dir, PluginCertChain), MaxPEMBundleSize)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("loading plug-in CA certificates: %w", err)
	default:
		chain, err := ParsePEMBundle(chainData)
		if err != nil {
			return nil, fmt.Errorf("loading plug-in CA certificates: %s: %w", PluginCertChain, err)
		}
		if !chain[0].Equal(caCert) {
			return nil, fmt.Errorf("loading plug-in CA certificates: %s must start with the certificate of %s, found %q", PluginCertChain, PluginCACert, chain[0].Subject)
		}
		for _, c := range chain[1:] {
			interPool.AddCert(c)
		}
	}

	var chains [][]*x509.Certificate
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		chains, err = caCert.Verify(x509.VerifyOptions{
			Roots: rootPool, Intermediates: interPool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage},
		})
		if err != nil {
			return nil, fmt.Errorf("loading plug-in CA certificates: %s does not chain through %s to a root in %s (for %s): %w",
				PluginCACert, PluginCertChain, PluginRootCert, usageName(usage), err)
		}
	}
	path := chains[0] // caCert, intermediates..., anchor
	anchor := path[len(path)-1]
	var intermediates []*x509.Certificate
	if len(path) > 2 {
		intermediates = path[1 : len(path)-1]
	}
	st := newState(key, caCert, intermediates, anchor, roots, nil)
	if left := st.notAfter.Sub(now); left < a.opts.MaxLifetime {
		a.log.Warn("plug-in CA chain expires before the maximum workload certificate lifetime; workload certificates are cut short",
			"notAfter", st.notAfter, "left", left.Round(1e9).String())
	}
	return st, nil
}

func usageName(u x509.ExtKeyUsage) string {
	if u == x509.ExtKeyUsageServerAuth {
		return "server authentication"
	}
	return "client authentication"
}
