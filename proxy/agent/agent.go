package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strait-mesh/strait/internal/grpclite"
)

// Defaults for Options.
const (
	// DefaultCAServerName is the name verified in straitd's serving certificate: Istio's
	// discovery address, which straitd's certificate carries.
	DefaultCAServerName = "istiod.istio-system.svc"
	// DefaultLifetime is the requested certificate lifetime (the CA may cap it).
	DefaultLifetime       = 24 * time.Hour
	DefaultRenewFraction  = 0.5
	DefaultRenewJitter    = 0.1
	DefaultWarnFraction   = 0.2
	DefaultRetryInitial   = time.Second
	DefaultRetryMax       = time.Minute
	DefaultRequestTimeout = 10 * time.Second
)

// credentialMargin: a certificate this close to its expiry is not presented for renewal (the CA
// verifies it when the call arrives); the bootstrap token is used instead, if there is one.
const credentialMargin = 2 * time.Second

// Options configure an Agent.
type Options struct {
	// CAAddress is straitd's CA, host:port of its TLS port 15012 (required). A gRPC target
	// "dns:///host:port" or "passthrough:///host:port" names the same host:port.
	CAAddress string
	// CAServerName is the name verified in straitd's serving certificate (default
	// DefaultCAServerName).
	CAServerName string
	// RootsPEM or RootsFile (exactly one) is the initial trust bundle: the mesh roots, which also
	// authenticate straitd. RootsFile is read once, by New. The bundle is replaced by the roots
	// of each CA response and by UpdateRoots; the CA connection always trusts the current one.
	RootsPEM  []byte
	RootsFile string
	// BootstrapToken or BootstrapTokenFile (exactly one) proves the workload for its first
	// certificate, and again whenever it holds no valid certificate (after an outage longer than
	// the lifetime). The file is read at each use, so it can be replaced.
	BootstrapToken     string
	BootstrapTokenFile string
	// TrustDomain (default "cluster.local"), Namespace and ServiceAccount (required) make the
	// workload's SPIFFE ID, the only URI SAN of the CSR; the issued certificate must carry it.
	TrustDomain    string
	Namespace      string
	ServiceAccount string
	// Lifetime is the requested certificate lifetime (default 24 h; whole seconds, at least 1 s).
	Lifetime time.Duration
	// RenewFraction is the part of a certificate's lifetime after which it is renewed (default
	// 0.5); RenewJitter moves that point by up to ±RenewJitter of the rest of the lifetime
	// (default 0.1; negative: none); WarnFraction is the last part of the lifetime in which a
	// warning is logged (default 0.2). Zero means the default.
	RenewFraction float64
	RenewJitter   float64
	WarnFraction  float64
	// RetryInitial and RetryMax bound the exponential backoff between failed requests (defaults
	// 1 s and 1 min); RequestTimeout bounds one request (default 10 s).
	RetryInitial   time.Duration
	RetryMax       time.Duration
	RequestTimeout time.Duration
	// Logger receives the agent's logs (default slog.Default()). Tokens and keys are never
	// logged.
	Logger *slog.Logger
}

// Agent obtains and renews the workload certificate and holds the trust bundle; see the package
// documentation. Create it with New, then call Run. All methods are safe for concurrent use; the
// handshake-path accessors (Certificate, GetCertificate, GetClientCertificate, Roots, Secret)
// are a single atomic load.
type Agent struct {
	o      Options
	id     *url.URL
	client *caClient
	log    *slog.Logger

	cert    atomic.Pointer[workload]
	roots   atomic.Pointer[bundle]
	rootsMu sync.Mutex // serialises bundle replacement (compare, swap, log)

	subMu sync.Mutex
	subs  map[chan struct{}]struct{}

	ready     chan struct{}
	readyOnce sync.Once
	running   atomic.Bool

	mu sync.Mutex // guards st
	st Status
}

// Status describes the agent's certificate and its last request, for logs, tests and an admin
// endpoint.
type Status struct {
	// Identity is the workload's SPIFFE ID.
	Identity string
	// Serial (hex), NotBefore and NotAfter describe the current certificate (zero before the
	// first); RenewAt is when it is due for renewal.
	Serial              string
	NotBefore, NotAfter time.Time
	RenewAt             time.Time
	// Issued counts the certificates received (the first and every renewal).
	Issued uint64
	// AuthenticatedBy is how the current certificate's request was proved: "bootstrap-token" or
	// "certificate".
	AuthenticatedBy string
	// LastError is the error of the last request if it failed (nil after a success), at
	// LastErrorTime; ConsecutiveFailures counts failures since the last success.
	LastError           error
	LastErrorTime       time.Time
	ConsecutiveFailures int
}

// New checks the options and reads the trust bundle; it contacts nothing. Call Run to obtain the
// certificate.
func New(o Options) (*Agent, error) {
	if o.CAAddress == "" {
		return nil, errors.New("agent: the CA address is required")
	}
	target, err := grpclite.ParseTarget(o.CAAddress)
	if err != nil {
		return nil, fmt.Errorf("agent: the CA address: %w", err)
	}
	if o.CAServerName == "" {
		o.CAServerName = DefaultCAServerName
	}
	if o.TrustDomain == "" {
		o.TrustDomain = DefaultTrustDomain
	}
	id, err := spiffeID(o.TrustDomain, o.Namespace, o.ServiceAccount)
	if err != nil {
		return nil, fmt.Errorf("agent: workload identity: %w", err)
	}
	var rootsPEM []byte
	switch {
	case (o.RootsPEM != nil) == (o.RootsFile != ""):
		return nil, errors.New("agent: exactly one of the trust bundle's PEM and its file is required")
	case o.RootsFile != "":
		if rootsPEM, err = readBundleFile(o.RootsFile); err != nil {
			return nil, fmt.Errorf("agent: reading the trust bundle: %w", err)
		}
	default:
		rootsPEM = o.RootsPEM
	}
	roots, err := ParseTrustBundle(rootsPEM)
	if err != nil {
		return nil, fmt.Errorf("agent: trust bundle %s: %w", o.RootsFile, err)
	}
	switch {
	case o.BootstrapToken != "" && o.BootstrapTokenFile != "":
		return nil, errors.New("agent: set the bootstrap token or its file, not both")
	case o.BootstrapToken == "" && o.BootstrapTokenFile == "":
		return nil, errors.New("agent: a bootstrap token (or its file) is required for the first certificate")
	}
	if err := checkToken(o.BootstrapToken); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if o.Lifetime == 0 {
		o.Lifetime = DefaultLifetime
	}
	if o.Lifetime < time.Second {
		return nil, fmt.Errorf("agent: certificate lifetime %v: want at least 1s", o.Lifetime)
	}
	switch {
	case o.RenewJitter == 0:
		o.RenewJitter = DefaultRenewJitter
	case o.RenewJitter < 0:
		o.RenewJitter = 0
	case o.RenewJitter >= 1:
		return nil, fmt.Errorf("agent: renew jitter %v: want less than 1", o.RenewJitter)
	}
	for _, f := range []struct {
		name string
		p    *float64
		def  float64
	}{{"renew fraction", &o.RenewFraction, DefaultRenewFraction}, {"warn fraction", &o.WarnFraction, DefaultWarnFraction}} {
		if *f.p == 0 {
			*f.p = f.def
		}
		if *f.p <= 0 || *f.p >= 1 {
			return nil, fmt.Errorf("agent: %s %v: want a value in (0, 1)", f.name, *f.p)
		}
	}
	if o.RetryInitial <= 0 {
		o.RetryInitial = DefaultRetryInitial
	}
	if o.RetryMax <= 0 {
		o.RetryMax = DefaultRetryMax
	}
	o.RetryMax = max(o.RetryMax, o.RetryInitial)
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	a := &Agent{
		o:  o,
		id: id,
		client: &caClient{
			target:     target,
			serverName: o.CAServerName,
			token:      o.BootstrapToken,
			tokenFile:  o.BootstrapTokenFile,
		},
		log:   o.Logger.With("component", "agent", "identity", id.String()),
		subs:  map[chan struct{}]struct{}{},
		ready: make(chan struct{}),
		st:    Status{Identity: id.String()},
	}
	a.roots.Store(newBundle(roots))
	return a, nil
}

// Identity returns the workload's SPIFFE ID.
func (a *Agent) Identity() string { return a.id.String() }

// Run obtains the certificate at once and renews it until ctx is done, then returns nil. Failed
// requests are retried with backoff (a refusal too: the token file may be replaced, the CA
// reconfigured); the current certificate stays in use until it is replaced. Run may be called
// once at a time.
func (a *Agent) Run(ctx context.Context) error {
	if !a.running.CompareAndSwap(false, true) {
		return errors.New("agent: Run is already running")
	}
	defer a.running.Store(false)
	bo := backoff{initial: a.o.RetryInitial, max: a.o.RetryMax}
	next := time.Now()
	if w := a.cert.Load(); w != nil {
		next = w.renewAt
	}
	var warnedSoon, warnedExpired *workload // the certificate each warning was logged for
	for {
		now := time.Now()
		wake := next
		if w := a.cert.Load(); w != nil {
			leaf := w.cert.Leaf
			soon := warnAt(leaf.NotBefore, leaf.NotAfter, a.o.WarnFraction)
			switch {
			case !now.Before(leaf.NotAfter):
				if warnedExpired != w {
					warnedExpired = w
					a.log.Warn("workload certificate expired; peers will refuse it until the CA renews it",
						"notAfter", leaf.NotAfter, "lastError", errString(a.LastError()))
				}
			case !now.Before(soon):
				if warnedSoon != w {
					warnedSoon = w
					a.log.Warn("workload certificate expires soon and is not renewed yet",
						"expiresIn", leaf.NotAfter.Sub(now).Round(time.Millisecond), "notAfter", leaf.NotAfter, "lastError", errString(a.LastError()))
				}
				wake = minTime(wake, leaf.NotAfter)
			default:
				wake = minTime(wake, soon)
			}
		}
		if now.Before(wake) {
			t := time.NewTimer(wake.Sub(now))
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, a.o.RequestTimeout)
		err := a.renew(rctx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			bo.reset()
			// At least RetryInitial apart, so a CA that issues certificates that are due at
			// once (its own chain about to expire) is not called in a tight loop.
			next = a.cert.Load().renewAt
			if floor := time.Now().Add(a.o.RetryInitial); next.Before(floor) {
				next = floor
			}
			continue
		}
		delay := bo.next()
		if w := a.cert.Load(); w != nil {
			// While the certificate can still prove the workload, retry well before it no longer
			// can: a CA that returns late in the lifetime is reached before the expiry.
			delay = capRetry(delay, time.Until(w.cert.Leaf.NotAfter)-credentialMargin, a.o.RetryInitial)
		}
		next = time.Now().Add(delay)
		a.failed(err, delay)
	}
}

// renew makes one request and installs its result.
func (a *Agent) renew(ctx context.Context) error {
	cred, err := a.credential()
	if err != nil {
		return err
	}
	key, err := newKey()
	if err != nil {
		return err
	}
	csr, err := newCSR(key, a.id)
	if err != nil {
		return err
	}
	chain, err := a.client.createCertificate(ctx, csr, int64(a.o.Lifetime/time.Second), a.Roots(), cred)
	if err != nil {
		return err
	}
	now := time.Now()
	res, err := parseResponse(chain, key.Public(), a.id, now)
	if err != nil {
		return fmt.Errorf("checking the CA's response: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("encoding the workload key: %w", err)
	}
	tc := &tls.Certificate{PrivateKey: key, Leaf: res.leaf}
	var chainPEM []byte
	for _, c := range append([]*x509.Certificate{res.leaf}, res.intermediates...) {
		tc.Certificate = append(tc.Certificate, c.Raw)
		chainPEM = append(chainPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	w := &workload{
		cert:     tc,
		secret:   tlsCertificateSecret(chainPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})),
		received: now,
		renewAt:  renewAt(now, res.leaf.NotAfter, a.o.RenewFraction, a.o.RenewJitter, jitterSign()),
		method:   cred.method(),
	}
	a.cert.Store(w)
	a.setRoots(res.roots, "CA response")
	a.mu.Lock()
	a.st.Serial = fmt.Sprintf("%x", res.leaf.SerialNumber)
	a.st.NotBefore, a.st.NotAfter, a.st.RenewAt = res.leaf.NotBefore, res.leaf.NotAfter, w.renewAt
	a.st.Issued++
	a.st.AuthenticatedBy = w.method
	a.st.LastError, a.st.LastErrorTime, a.st.ConsecutiveFailures = nil, time.Time{}, 0
	first, serial := a.st.Issued == 1, a.st.Serial
	a.mu.Unlock()
	a.readyOnce.Do(func() { close(a.ready) })
	a.notify()
	msg := "workload certificate renewed"
	if first {
		msg = "workload certificate issued"
	}
	a.log.Info(msg, "serial", serial, "notAfter", res.leaf.NotAfter, "renewIn", w.renewAt.Sub(now).Round(time.Millisecond),
		"authn", w.method, "intermediates", len(res.intermediates), "roots", len(res.roots))
	return nil
}

// credential picks how to prove the workload: its certificate while it is valid, else the
// bootstrap token.
func (a *Agent) credential() (credential, error) {
	if w := a.cert.Load(); w != nil && time.Now().Before(w.cert.Leaf.NotAfter.Add(-credentialMargin)) {
		return credential{cert: w.cert}, nil
	}
	tok, err := a.client.bootstrapToken()
	if err != nil {
		return credential{}, err
	}
	if tok == "" {
		return credential{}, ErrNoCredential
	}
	if err := checkToken(tok); err != nil {
		return credential{}, err
	}
	return credential{token: tok}, nil
}

// failed records and logs a failed request.
func (a *Agent) failed(err error, retryIn time.Duration) {
	a.mu.Lock()
	a.st.LastError, a.st.LastErrorTime = err, time.Now()
	a.st.ConsecutiveFailures++
	n := a.st.ConsecutiveFailures
	a.mu.Unlock()
	level := slog.LevelWarn
	if errors.Is(err, ErrRefused) || errors.Is(err, ErrNoCredential) || errors.Is(err, ErrMalformed) {
		level = slog.LevelError
	}
	attrs := []any{"err", err, "failures", n, "retryIn", retryIn.Round(time.Millisecond)}
	if s, ok := a.CertExpirySeconds(); ok {
		attrs = append(attrs, "certExpiresInSeconds", int64(s))
	} else {
		attrs = append(attrs, "certificate", "none yet")
	}
	a.log.Log(context.Background(), level, "requesting the workload certificate failed", attrs...)
}

// setRoots replaces the trust bundle if certs differ from it (in any order) and reports whether
// it did. The caller notifies subscribers.
func (a *Agent) setRoots(certs []*x509.Certificate, source string) bool {
	a.rootsMu.Lock()
	defer a.rootsMu.Unlock()
	cur := a.roots.Load()
	if sameCerts(cur.certs, certs) {
		return false
	}
	var added, removed []*x509.Certificate
	for _, c := range certs {
		if !containsCert(cur.certs, c) {
			added = append(added, c)
		}
	}
	for _, c := range cur.certs {
		if !containsCert(certs, c) {
			removed = append(removed, c)
		}
	}
	a.roots.Store(newBundle(certs))
	a.log.Info("trust bundle changed", "source", source, "roots", len(certs), "added", fingerprints(added), "removed", fingerprints(removed))
	return true
}

// UpdateRoots replaces the trust bundle with a PEM bundle from another source (a ROOTCA secret
// pushed by xDS). Input that does not parse as a bundle of CA certificates is refused and
// changes nothing. The bundle may be replaced again by the next CA response.
func (a *Agent) UpdateRoots(pemBundle []byte) error {
	certs, err := ParseTrustBundle(pemBundle)
	if err != nil {
		return fmt.Errorf("updating the trust bundle: %w", err)
	}
	if !a.setRoots(certs, "update") {
		return nil
	}
	if c := a.Certificate(); c != nil {
		inter := x509.NewCertPool()
		for _, der := range c.Certificate[1:] {
			if x, err := x509.ParseCertificate(der); err == nil {
				inter.AddCert(x)
			}
		}
		if _, err := c.Leaf.Verify(x509.VerifyOptions{Roots: a.Roots(), Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			a.log.Warn("the new trust bundle does not verify the workload's own certificate; peers using it will refuse this proxy until it renews", "err", err)
		}
	}
	a.notify()
	return nil
}

// CertExpirySeconds returns the time left, in seconds, before the current certificate expires
// (negative once expired), and false before the first certificate. It is the value of Istio's
// metric cert_expiry_seconds{resource_name="default"} (istio_agent_cert_expiry_seconds as
// exported by pilot-agent), computed at each call.
func (a *Agent) CertExpirySeconds() (float64, bool) {
	w := a.cert.Load()
	if w == nil {
		return 0, false
	}
	return time.Until(w.cert.Leaf.NotAfter).Seconds(), true
}

// Ready returns a channel closed once the first certificate is held.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// WaitReady waits for the first certificate. If ctx ends first it returns an error that names
// the last failed request's error.
func (a *Agent) WaitReady(ctx context.Context) error {
	select {
	case <-a.ready:
		return nil
	case <-ctx.Done():
		if err := a.LastError(); err != nil {
			return fmt.Errorf("waiting for the workload certificate: %w; last request: %w", ctx.Err(), err)
		}
		return fmt.Errorf("waiting for the workload certificate: %w", ctx.Err())
	}
}

// LastError returns the error of the last request if it failed, nil after a success.
func (a *Agent) LastError() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.st.LastError
}

// Status returns a snapshot of the agent's state.
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.st
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
