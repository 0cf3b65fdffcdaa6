package ca

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Files of the self-signed mode, in Options.Dir (mode 0700). Each file is written atomically
// (temporary file, fsync, rename), and a root's certificate and key share one file, so a crash
// at any point leaves a consistent state: a change is one rename.
const (
	// rootFile holds the signing root: its CERTIFICATE and its PKCS#8 PRIVATE KEY (mode 0600).
	rootFile = "root.pem"
	// stagedRootFile holds a root created by StageRoot: trusted, not yet signing (mode 0600).
	stagedRootFile = "next-root.pem"
	// previousRootsFile holds retired roots that are still trusted, certificates only (mode 0600).
	previousRootsFile = "previous-roots.pem"
)

// rootBackdate is how far a new root's NotBefore is set in the past, for peers whose clocks lag.
const rootBackdate = time.Hour

// ErrPluginMode is returned by the root rotation methods in plug-in mode, whose roots come from
// the operator's root-cert.pem.
var ErrPluginMode = errors.New("root rotation is not available for plug-in certificates: change root-cert.pem")

// Fingerprint returns a certificate's SHA-256 fingerprint in lowercase hex: how roots are named
// to RemoveRoot and in logs.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// loadOrCreateSelfSigned loads the persisted roots from dir, or creates the first root there.
// A first root is only created when dir holds no root file at all, so a lost root.pem is an
// error rather than a silently new (and untrusted) root.
func (a *Authority) loadOrCreateSelfSigned(dir string) (*state, error) {
	tightened, err := ensurePrivateDir(dir)
	if err != nil {
		return nil, err
	}
	if tightened {
		a.log.Warn("CA dir was accessible by group or others; restricted to its owner", "dir", dir)
	}
	rootPath := filepath.Join(dir, rootFile)
	if _, err := os.Lstat(rootPath); errors.Is(err, fs.ErrNotExist) {
		for _, other := range []string{stagedRootFile, previousRootsFile} {
			if _, err := os.Lstat(filepath.Join(dir, other)); err == nil {
				return nil, fmt.Errorf("loading CA root: %s is missing but %s exists; refusing to create a new root (restore %s)", rootPath, other, rootFile)
			}
		}
		key, cert, err := a.newRoot()
		if err != nil {
			return nil, err
		}
		if err := writeRootFile(rootPath, cert, key); err != nil {
			return nil, fmt.Errorf("persisting new CA root: %w", err)
		}
		a.log.Info("created self-signed CA root", "file", rootPath, "fingerprint", Fingerprint(cert), "notAfter", cert.NotAfter)
	}
	key, cert, err := a.readRootFile(rootPath, true)
	if err != nil {
		return nil, err
	}
	stagedKey, staged, err := a.readRootFile(filepath.Join(dir, stagedRootFile), false)
	if err != nil {
		return nil, err
	}
	previous, err := readPreviousRoots(filepath.Join(dir, previousRootsFile))
	if err != nil {
		return nil, err
	}
	roots := previous
	if staged != nil {
		roots = append([]*x509.Certificate{staged}, previous...)
	}
	st := newState(key, cert, nil, cert, roots, staged)
	st.stagedKey = stagedKey
	return st, nil
}

// newRoot creates a self-signed root: ECDSA P-256, subject O=<trust domain>, CA, RootLifetime.
func (a *Authority) newRoot() (crypto.Signer, *x509.Certificate, error) {
	key, err := newECDSAKey()
	if err != nil {
		return nil, nil, err
	}
	now := a.opts.Now()
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{Organization: []string{a.opts.TrustDomain}},
		NotBefore:             now.Add(-rootBackdate),
		NotAfter:              now.Add(a.opts.RootLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	cert, err := newCertificate(tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("creating self-signed root: %w", err)
	}
	return key, cert, nil
}

func writeRootFile(path string, cert *x509.Certificate, key crypto.Signer) error {
	keyPEM, err := encodeKey(key)
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(encodeCert(cert), keyPEM...), 0o600)
}

// readRootFile reads and checks a root file: owner-only mode, one certificate and its key, a
// self-signed CA that is valid now. A missing file is an error only if required.
func (a *Authority) readRootFile(path string, required bool) (crypto.Signer, *x509.Certificate, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) && !required {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("loading CA root: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, nil, fmt.Errorf("loading CA root: %s holds a private key but has mode %04o; it must be readable by its owner only (chmod 600)", path, fi.Mode().Perm())
	}
	data, err := readFileLimited(path, MaxPEMBundleSize)
	if err != nil {
		return nil, nil, fmt.Errorf("loading CA root: %w", err)
	}
	certPart, keyPart, ok := strings.Cut(string(data), "-----BEGIN PRIVATE KEY-----")
	if !ok {
		return nil, nil, fmt.Errorf("loading CA root: %s has no PRIVATE KEY block", path)
	}
	certs, err := ParsePEMBundle([]byte(certPart))
	if err != nil {
		return nil, nil, fmt.Errorf("loading CA root from %s: %w", path, err)
	}
	if len(certs) != 1 {
		return nil, nil, fmt.Errorf("loading CA root: %s has %d certificates, want 1", path, len(certs))
	}
	key, err := parsePrivateKey([]byte("-----BEGIN PRIVATE KEY-----" + keyPart))
	if err != nil {
		return nil, nil, fmt.Errorf("loading CA root key from %s: %w", path, err)
	}
	cert := certs[0]
	if err := checkCACert(cert, key, a.opts.Now()); err != nil {
		return nil, nil, fmt.Errorf("loading CA root from %s: %w", path, err)
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		return nil, nil, fmt.Errorf("loading CA root from %s: not self-signed: %w", path, err)
	}
	return key, cert, nil
}

// checkCACert checks that cert is a CA certificate usable for signing now and that key is its
// private key.
func checkCACert(cert *x509.Certificate, key crypto.Signer, now time.Time) error {
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return fmt.Errorf("certificate %q is not a CA (basic constraints CA:TRUE missing)", cert.Subject)
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("certificate %q lacks key usage keyCertSign", cert.Subject)
	}
	if now.Before(cert.NotBefore) {
		return fmt.Errorf("certificate %q is not valid before %s", cert.Subject, cert.NotBefore.UTC().Format(time.RFC3339))
	}
	if now.After(cert.NotAfter) {
		return fmt.Errorf("certificate %q expired at %s", cert.Subject, cert.NotAfter.UTC().Format(time.RFC3339))
	}
	if key != nil {
		if err := checkCAKey(key.Public()); err != nil {
			return err
		}
		if !publicKeysEqual(key.Public(), cert.PublicKey) {
			return fmt.Errorf("private key does not match certificate %q", cert.Subject)
		}
	}
	return nil
}

func readPreviousRoots(path string) ([]*x509.Certificate, error) {
	data, err := readFileLimited(path, MaxPEMBundleSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("loading previous CA roots: %w", err)
	}
	certs, err := ParsePEMBundle(data)
	if err != nil {
		return nil, fmt.Errorf("loading previous CA roots from %s: %w", path, err)
	}
	for _, c := range certs {
		if !c.BasicConstraintsValid || !c.IsCA {
			return nil, fmt.Errorf("loading previous CA roots from %s: %q is not a CA", path, c.Subject)
		}
	}
	return certs, nil
}

// rebuildPool recomputes the pool of st after its roots changed.
func rebuildPool(st *state) *state {
	st.pool = x509.NewCertPool()
	for _, r := range st.roots {
		st.pool.AddCert(r)
	}
	return st
}

// StageRoot starts a root rotation (self-signed mode): it creates a new root, persists it and
// adds it to the trust bundle, while the current root keeps signing. Once every peer trusts the
// new root (the bundle reached every proxy), call ActivateStagedRoot. It returns the new root.
// Only one root can be staged at a time.
func (a *Authority) StageRoot() (*x509.Certificate, error) {
	if a.opts.PluginDir != "" {
		return nil, ErrPluginMode
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	cur := a.state.Load()
	if cur.staged != nil {
		return nil, fmt.Errorf("staging a CA root: root %s is already staged", Fingerprint(cur.staged))
	}
	key, cert, err := a.newRoot()
	if err != nil {
		return nil, err
	}
	if err := writeRootFile(filepath.Join(a.opts.Dir, stagedRootFile), cert, key); err != nil {
		return nil, fmt.Errorf("staging a CA root: %w", err)
	}
	st := *cur
	st.staged, st.stagedKey = cert, key
	st.roots = append([]*x509.Certificate{cert}, cur.roots...)
	a.swap(rebuildPool(&st))
	a.log.Info("staged a new CA root: trusted, not yet signing", "fingerprint", Fingerprint(cert))
	return cert, nil
}

// ActivateStagedRoot makes the staged root the signing root (self-signed mode). The previous
// root stays in the trust bundle, so certificates it signed keep verifying until they expire;
// remove it then with RemoveRoot.
func (a *Authority) ActivateStagedRoot() error {
	if a.opts.PluginDir != "" {
		return ErrPluginMode
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	cur := a.state.Load()
	if cur.staged == nil {
		return errors.New("activating the staged CA root: no root is staged")
	}
	var previous []*x509.Certificate
	for _, r := range cur.roots {
		if !r.Equal(cur.staged) {
			previous = append(previous, r)
		}
	}
	// Order matters for crash safety: the old root is recorded as trusted before the rename that
	// retires it.
	if err := writeFileAtomic(filepath.Join(a.opts.Dir, previousRootsFile), encodeCerts(previous), 0o600); err != nil {
		return fmt.Errorf("activating the staged CA root: %w", err)
	}
	if err := renameAtomic(filepath.Join(a.opts.Dir, stagedRootFile), filepath.Join(a.opts.Dir, rootFile)); err != nil {
		return fmt.Errorf("activating the staged CA root: %w", err)
	}
	a.swap(newState(cur.stagedKey, cur.staged, nil, cur.staged, previous, nil))
	a.log.Info("activated CA root", "fingerprint", Fingerprint(cur.staged), "previous", Fingerprint(cur.cert))
	return nil
}

// RemoveRoot removes a root, named by its Fingerprint, from the trust bundle (self-signed mode):
// a retired root whose certificates have expired, or a staged root that is discarded. The
// signing root cannot be removed.
func (a *Authority) RemoveRoot(fingerprint string) error {
	if a.opts.PluginDir != "" {
		return ErrPluginMode
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	cur := a.state.Load()
	fingerprint = strings.ToLower(fingerprint)
	if Fingerprint(cur.cert) == fingerprint {
		return errors.New("removing a CA root: it is the signing root; stage and activate another root first")
	}
	st := *cur
	switch {
	case cur.staged != nil && Fingerprint(cur.staged) == fingerprint:
		if err := removeSynced(filepath.Join(a.opts.Dir, stagedRootFile)); err != nil {
			return fmt.Errorf("removing the staged CA root: %w", err)
		}
		st.staged, st.stagedKey = nil, nil
	case slices.ContainsFunc(cur.roots, func(r *x509.Certificate) bool { return Fingerprint(r) == fingerprint }):
		var previous []*x509.Certificate
		for _, r := range cur.roots {
			if Fingerprint(r) != fingerprint && !r.Equal(cur.cert) && (cur.staged == nil || !r.Equal(cur.staged)) {
				previous = append(previous, r)
			}
		}
		path := filepath.Join(a.opts.Dir, previousRootsFile)
		var err error
		if len(previous) == 0 {
			err = removeSynced(path)
		} else {
			err = writeFileAtomic(path, encodeCerts(previous), 0o600)
		}
		if err != nil {
			return fmt.Errorf("removing a CA root: %w", err)
		}
	default:
		return fmt.Errorf("removing a CA root: no root with fingerprint %q in the trust bundle", truncate(fingerprint, 64))
	}
	st.roots = slices.DeleteFunc(slices.Clone(cur.roots), func(r *x509.Certificate) bool { return Fingerprint(r) == fingerprint })
	a.swap(rebuildPool(&st))
	a.log.Info("removed CA root from the trust bundle", "fingerprint", fingerprint)
	return nil
}
