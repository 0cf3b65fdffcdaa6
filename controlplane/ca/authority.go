package ca

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for Options.
const (
	// DefaultWorkloadLifetime is a workload certificate's lifetime when the request names none
	// (Istio's DEFAULT_WORKLOAD_CERT_TTL).
	DefaultWorkloadLifetime = 24 * time.Hour
	// DefaultMaxWorkloadLifetime caps a requested lifetime (Istio's MAX_WORKLOAD_CERT_TTL).
	DefaultMaxWorkloadLifetime = 90 * 24 * time.Hour
	// DefaultRootLifetime is a self-signed root's lifetime (Istio's self-signed root: 10 years).
	DefaultRootLifetime = 10 * 365 * 24 * time.Hour
)

// Options configure an Authority. Exactly one of Dir and PluginDir is required.
type Options struct {
	// TrustDomain is the mesh's trust domain (MeshConfig trustDomain); default "cluster.local".
	// It names the organisation of a self-signed root and is the only trust domain signed.
	TrustDomain string
	// Dir selects the self-signed mode: the root is created on first start and persisted here
	// (see selfsigned.go for the layout). straitd uses <data-dir>/ca.
	Dir string
	// PluginDir selects the plug-in mode: the CA is an intermediate whose certificates are read
	// from this directory in Istio's cacerts layout (ca-cert.pem, ca-key.pem, root-cert.pem,
	// cert-chain.pem; see plugin.go). The directory is only read.
	PluginDir string
	// DefaultLifetime is a workload certificate's lifetime when the request names none (default
	// 24 h); MaxLifetime caps a requested one (default 90 days). Both are also capped by the
	// signing chain's own expiry.
	DefaultLifetime time.Duration
	MaxLifetime     time.Duration
	// RootLifetime is the lifetime of a root this Authority creates (default 10 years).
	RootLifetime time.Duration
	// OnTrustBundleChange, if set, is called with the new trust bundle after a root is staged,
	// activated or removed (not at New). It is called synchronously, after the change is
	// persisted and visible, from the goroutine that made it; it must not call back into the
	// Authority's root-changing methods.
	OnTrustBundleChange func(roots []*x509.Certificate)
	// Logger receives the Authority's logs (default slog.Default()).
	Logger *slog.Logger
	// Now is the clock (default time.Now); tests set it.
	Now func() time.Time
	// Registerer, when set, receives the CA's metrics (Istio's citadel_server_*): the CSR
	// counters the mesh server's Service counts (NewMeshServer) and the expiry gauges.
	Registerer prometheus.Registerer
}

// Authority is the mesh's certificate authority: a signing key and certificate, the chain from
// that certificate to a root, and the trust bundle (every root a mesh peer must accept; several
// during a root rotation). Create it with New. All methods are safe for concurrent use; signing
// never blocks on a root change, which swaps the whole signing state atomically.
type Authority struct {
	opts  Options
	log   *slog.Logger
	state atomic.Pointer[state]
	mu    sync.Mutex // serialises root changes (self-signed mode)
	// metrics are counted by the Service NewMeshServer creates; nil until New registered them.
	metrics *Metrics
}

// state is one immutable view of the CA. A root change builds a new state and swaps it in.
type state struct {
	signer crypto.Signer
	// cert is the signing certificate: the self-signed root, or the plug-in ca-cert.pem.
	cert *x509.Certificate
	// chain is what follows a leaf in every certificate chain: cert and the CA certificates above
	// it, issuer-last, without the root (empty when cert is the root itself).
	chain []*x509.Certificate
	// roots is the trust bundle; the root that anchors cert is last (Istio's clients take the
	// last certificate of a CSR response as the root).
	roots []*x509.Certificate
	pool  *x509.CertPool
	// notAfter is the earliest expiry on the path cert → root: no leaf outlives it.
	notAfter time.Time
	// staged is the self-signed root that is trusted but not yet signing, if any.
	staged    *x509.Certificate
	stagedKey crypto.Signer
	// generation increases with every change, so cached derivatives (a serving certificate) can
	// tell they are stale.
	generation uint64
}

// New creates the Authority: in self-signed mode it loads the persisted root, or creates and
// persists one on first start; in plug-in mode it loads and validates the cacerts directory.
// Errors name the file and the failed check. New does not start goroutines.
func New(o Options) (*Authority, error) {
	if o.TrustDomain == "" {
		o.TrustDomain = DefaultTrustDomain
	}
	if err := validateTrustDomain(o.TrustDomain); err != nil {
		return nil, fmt.Errorf("checking CA options: %w", err)
	}
	if o.DefaultLifetime <= 0 {
		o.DefaultLifetime = DefaultWorkloadLifetime
	}
	if o.MaxLifetime <= 0 {
		o.MaxLifetime = DefaultMaxWorkloadLifetime
	}
	if o.DefaultLifetime > o.MaxLifetime {
		o.DefaultLifetime = o.MaxLifetime
	}
	if o.RootLifetime <= 0 {
		o.RootLifetime = DefaultRootLifetime
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	a := &Authority{opts: o, log: o.Logger.With("component", "ca")}
	var st *state
	var err error
	switch {
	case o.Dir != "" && o.PluginDir != "":
		return nil, errors.New("checking CA options: set either Dir (self-signed root) or PluginDir (plug-in certificates), not both")
	case o.PluginDir != "":
		st, err = a.loadPlugin(o.PluginDir)
	case o.Dir != "":
		st, err = a.loadOrCreateSelfSigned(o.Dir)
	default:
		return nil, errors.New("checking CA options: Dir or PluginDir is required")
	}
	if err != nil {
		return nil, err
	}
	st.generation = 1
	a.state.Store(st)
	if a.metrics, err = newMetrics(o.Registerer, a); err != nil {
		return nil, err
	}
	a.log.Info("certificate authority ready", "mode", a.Mode(), "trustDomain", o.TrustDomain,
		"signer", st.cert.Subject.String(), "signerNotAfter", st.cert.NotAfter, "roots", len(st.roots))
	return a, nil
}

// newState derives the chain, pool, expiry bound and order of a state from its parts.
// intermediates are the CA certificates between cert and anchor, the root that cert chains to
// (anchor may be cert itself); anchor is moved to the end of roots.
func newState(signer crypto.Signer, cert *x509.Certificate, intermediates []*x509.Certificate, anchor *x509.Certificate, roots []*x509.Certificate, staged *x509.Certificate) *state {
	var chain []*x509.Certificate
	if !cert.Equal(anchor) {
		chain = append([]*x509.Certificate{cert}, intermediates...)
	}
	ordered := make([]*x509.Certificate, 0, len(roots)+1)
	for _, r := range roots {
		if !r.Equal(anchor) && !slices.ContainsFunc(ordered, r.Equal) {
			ordered = append(ordered, r)
		}
	}
	ordered = append(ordered, anchor)
	pool := x509.NewCertPool()
	for _, r := range ordered {
		pool.AddCert(r)
	}
	notAfter := cert.NotAfter
	for _, c := range append(slices.Clone(intermediates), anchor) {
		if c.NotAfter.Before(notAfter) {
			notAfter = c.NotAfter
		}
	}
	return &state{signer: signer, cert: cert, chain: chain, roots: ordered, pool: pool, notAfter: notAfter, staged: staged}
}

// Mode returns "self-signed" or "plug-in".
func (a *Authority) Mode() string {
	if a.opts.PluginDir != "" {
		return "plug-in"
	}
	return "self-signed"
}

// TrustDomain returns the trust domain this Authority signs for.
func (a *Authority) TrustDomain() string { return a.opts.TrustDomain }

// TrustBundle returns the roots every mesh peer must trust (for SDS "ROOTCA"), the current
// signing root last. The slice is a copy; the certificates are shared and must not be modified.
func (a *Authority) TrustBundle() []*x509.Certificate {
	return slices.Clone(a.state.Load().roots)
}

// TrustBundlePEM returns TrustBundle as one PEM bundle.
func (a *Authority) TrustBundlePEM() []byte { return encodeCerts(a.state.Load().roots) }

// TrustPool returns the trust bundle as a pool for verification. The pool is shared: callers
// must not add to it. A root change replaces it; call TrustPool per verification.
func (a *Authority) TrustPool() *x509.CertPool { return a.state.Load().pool }

// SigningCertificate returns the certificate that signs workload certificates, and the chain
// sent after every leaf: the signing certificate and the intermediates above it, issuer-last,
// without the root (empty for a self-signed root).
func (a *Authority) SigningCertificate() (cert *x509.Certificate, chain []*x509.Certificate) {
	st := a.state.Load()
	return st.cert, slices.Clone(st.chain)
}

// anchor returns the root the signing certificate chains to: the last of the trust bundle.
func (a *Authority) anchor() *x509.Certificate {
	roots := a.state.Load().roots
	return roots[len(roots)-1]
}

// Generation returns a number that increases whenever the signing certificate or the trust
// bundle changes.
func (a *Authority) Generation() uint64 { return a.state.Load().generation }

// Now returns the Authority's clock reading.
func (a *Authority) Now() time.Time { return a.opts.Now() }

// swap installs a new state (with the mutex held) and notifies OnTrustBundleChange.
func (a *Authority) swap(st *state) {
	st.generation = a.state.Load().generation + 1
	a.state.Store(st)
	if f := a.opts.OnTrustBundleChange; f != nil {
		f(slices.Clone(st.roots))
	}
}
