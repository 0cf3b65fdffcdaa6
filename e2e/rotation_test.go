package e2e

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
)

// The Done-when tests of workload identity: certificates rotate, the CA's root rotates and the
// CA goes away and comes back, all under a bounded load through a client and a server sidecar in
// explicit mode, without a failed request.

// rotationRequestsPerConn limits the requests of one connection from the client sidecar to the
// server sidecar (DestinationRule connectionPool.http.maxRequestsPerConnection), so that the pair
// makes a new mutual TLS handshake every few requests, with the certificates and trust bundles of
// that moment, instead of one connection for the whole test.
const rotationRequestsPerConn = 5

// rotationYAML registers reviews (port 9080) on the server sidecar's address as a workload with
// a sidecar (service account reviews, tlsMode istio: automatic mutual TLS), gives the client's
// sidecar an outbound listener on its own address and the server's sidecar an inbound listener on
// its address in explicit mode (as sidecarYAML and mtlsYAML do) and no outbound listener at all
// (a default one would bind 127.0.0.1:9080, which other tests' sidecars bind too), makes mutual
// TLS STRICT (a hop that is not mutual TLS fails), and limits the requests per connection with a
// DestinationRule that leaves automatic mTLS on.
func rotationYAML(clientIP, serverIP, appAddr string) string {
	return staticServiceYAML("reviews.e2e.svc.cluster.local", 9080, "http", "HTTP", mtlsEndpoint(serverIP)) + "---\n" +
		explicitSidecarYAML("client", "egress", "bind: "+clientIP, `hosts: ["e2e/*"]`) + "---\n" +
		explicitSidecarYAML("reviews", "ingress", "defaultEndpoint: "+appAddr, "bind: "+serverIP) + "  egress:\n  - hosts: [\"~/*\"]\n---\n" +
		strictPeerAuthnYAML + "---\n" +
		trafficPolicyYAML("reviews.e2e.svc.cluster.local", fmt.Sprintf("    connectionPool: {http: {maxRequestsPerConnection: %d}}\n", rotationRequestsPerConn))
}

// rotationPair is a client and a server sidecar with mesh identities, and the URL and host
// through which the client application reaches the server.
type rotationPair struct {
	client, server *testenv.Proxy
	serverIP       string
	url, host      string
}

// pairIPs returns a client and a server address in 127.<second>.0.0/16, at random: concurrent
// runs of these tests on one machine (another checkout's, or -count) must not bind each other's
// addresses or send their load through each other's sidecars.
func pairIPs(second int) (clientIP, serverIP string) {
	x, y := rand.IntN(256), 1+rand.IntN(250)
	return fmt.Sprintf("127.%d.%d.%d", second, x, y), fmt.Sprintf("127.%d.%d.%d", second, x, y+1)
}

// startRotationPair starts the server and the client sidecar with identities from sd's CA,
// asking for certificates of lifetime, and waits until a request crosses them as mutual TLS.
func startRotationPair(t *testing.T, sd *testenv.Straitd, clientIP, serverIP string, lifetime time.Duration) *rotationPair {
	t.Helper()
	sidecar := func(name, ip, app, sa string) *testenv.Proxy {
		extra := append([]string{"--interception-mode", "NONE", "--cert-lifetime", lifetime.String()}, sd.Identity(t, "e2e", sa)...)
		return testenv.StartProxy(t, sd.XDS, testenv.ProxyOptions{Mode: "sidecar", Name: name, Namespace: "e2e", IP: ip,
			Labels: map[string]string{"app": app}, Extra: extra})
	}
	p := &rotationPair{
		server:   sidecar("reviews-1", serverIP, "reviews", "reviews"),
		client:   sidecar("client-1", clientIP, "client", "client"),
		serverIP: serverIP,
		url:      fmt.Sprintf("http://%s:9080/hello", clientIP),
		host:     "reviews.e2e.svc.cluster.local:9080",
	}
	testenv.Eventually(t, 30*time.Second, func() error { return checkMTLSReply(do(h1Client, request{URL: p.url, Host: p.host})) })
	return p
}

// checkMTLSReply accepts only the server application's answer to a request that crossed the
// pair as mutual TLS with both identities (the server sidecar's x-forwarded-client-cert).
func checkMTLSReply(rep *reply, err error) error {
	if err != nil {
		return err
	}
	if rep.Code != http.StatusOK || rep.Echo == nil || rep.Echo.Backend != "reviews" {
		return fmt.Errorf("status %d: %.200s", rep.Code, rep.Body)
	}
	if h := rep.Echo.Headers["x-forwarded-client-cert"]; !strings.Contains(h, "By="+spiffeReviews) || !strings.Contains(h, "URI="+spiffeClient) {
		return fmt.Errorf("x-forwarded-client-cert %q: want By=%s and URI=%s", h, spiffeReviews, spiffeClient)
	}
	return nil
}

// meshLoad sends requests through the pair at a fixed rate, one at a time, until Stop, maxCount
// requests or maxDuration, whichever comes first; every answer must pass checkMTLSReply.
type meshLoad struct {
	sent, failed atomic.Int64
	mu           sync.Mutex
	failures     []string // the first ones, with their time
	start        time.Time
	stop, done   chan struct{}
	stopOnce     sync.Once
}

func startMeshLoad(t *testing.T, p *rotationPair, rate, maxCount int, maxDuration time.Duration) *meshLoad {
	t.Helper()
	l := &meshLoad{start: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 2, DisableCompression: true}}
	go func() {
		defer close(l.done)
		defer c.CloseIdleConnections()
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		deadline := time.NewTimer(maxDuration)
		defer deadline.Stop()
		for i := 0; i < maxCount; i++ {
			select {
			case <-l.stop:
				return
			case <-deadline.C:
				return
			case <-tick.C:
			}
			l.sent.Add(1)
			if err := checkMTLSReply(do(c, request{URL: p.url, Host: p.host})); err != nil {
				l.failed.Add(1)
				l.mu.Lock()
				if len(l.failures) < 20 {
					l.failures = append(l.failures, fmt.Sprintf("%s: %v", time.Since(l.start).Round(time.Millisecond), err))
				}
				l.mu.Unlock()
			}
		}
	}()
	t.Cleanup(l.Stop)
	return l
}

// Stop ends the load and waits for its last request.
func (l *meshLoad) Stop() {
	l.stopOnce.Do(func() { close(l.stop) })
	<-l.done
}

// running reports whether the load is still sending.
func (l *meshLoad) running() bool {
	select {
	case <-l.done:
		return false
	default:
		return true
	}
}

// check fails the test for any failed request and logs the load's figures.
func (l *meshLoad) check(t *testing.T) {
	t.Helper()
	sent, failed := l.sent.Load(), l.failed.Load()
	t.Logf("load: %d requests in %s, %d failed", sent, time.Since(l.start).Round(time.Second), failed)
	if failed > 0 {
		l.mu.Lock()
		defer l.mu.Unlock()
		t.Errorf("%d of %d requests failed; the first:\n%s", failed, sent, strings.Join(l.failures, "\n"))
	}
}

// proxySecrets is what a proxy's /config_dump shows of its agent's secrets: the "default"
// certificate (its serial is the secret's version) and the "ROOTCA" trust bundle.
type proxySecrets struct {
	Serial string
	Leaf   *x509.Certificate
	Roots  []*x509.Certificate
}

// rootFingerprint is a certificate's SHA-256 fingerprint in lowercase hex, as straitd's roots
// API names roots.
func rootFingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// RootFingerprints returns the fingerprints of the trust bundle, sorted.
func (s proxySecrets) RootFingerprints() []string {
	out := make([]string, len(s.Roots))
	for i, r := range s.Roots {
		out[i] = rootFingerprint(r)
	}
	slices.Sort(out)
	return out
}

// Issuer returns the fingerprint of the root of the trust bundle that signed the certificate, or
// "" if none did.
func (s proxySecrets) Issuer() string {
	for _, r := range s.Roots {
		if s.Leaf != nil && s.Leaf.CheckSignatureFrom(r) == nil {
			return rootFingerprint(r)
		}
	}
	return ""
}

// readProxySecrets reads the agent's secrets from the proxy's /config_dump.
func readProxySecrets(p *testenv.Proxy) (proxySecrets, error) {
	var out proxySecrets
	code, body, err := p.AdminGet("/config_dump?resource=dynamic_active_secrets")
	if err != nil {
		return out, err
	}
	if code != http.StatusOK {
		return out, fmt.Errorf("/config_dump: %d %.200s", code, body)
	}
	type inline struct {
		InlineBytes []byte `json:"inline_bytes"`
	}
	var dump struct {
		Configs []struct {
			Name        string `json:"name"`
			VersionInfo string `json:"version_info"`
			Secret      struct {
				TLSCertificate *struct {
					CertificateChain inline `json:"certificate_chain"`
				} `json:"tls_certificate"`
				ValidationContext *struct {
					TrustedCA inline `json:"trusted_ca"`
				} `json:"validation_context"`
			} `json:"secret"`
		} `json:"configs"`
	}
	if err := json.Unmarshal([]byte(body), &dump); err != nil {
		return out, fmt.Errorf("decoding /config_dump: %w", err)
	}
	for _, s := range dump.Configs {
		switch {
		case s.Name == "default" && s.Secret.TLSCertificate != nil:
			certs, err := parseCertsPEM(s.Secret.TLSCertificate.CertificateChain.InlineBytes)
			if err != nil {
				return out, fmt.Errorf("secret default: %w", err)
			}
			out.Serial, out.Leaf = s.VersionInfo, certs[0]
		case s.Name == "ROOTCA" && s.Secret.ValidationContext != nil:
			if out.Roots, err = parseCertsPEM(s.Secret.ValidationContext.TrustedCA.InlineBytes); err != nil {
				return out, fmt.Errorf("secret ROOTCA: %w", err)
			}
		}
	}
	if out.Leaf == nil || len(out.Roots) == 0 {
		return out, fmt.Errorf("/config_dump holds no default certificate or ROOTCA bundle:\n%.500s", body)
	}
	if fmt.Sprintf("%x", out.Leaf.SerialNumber) != out.Serial {
		return out, fmt.Errorf("the default secret's version %q is not its certificate's serial %x", out.Serial, out.Leaf.SerialNumber)
	}
	return out, nil
}

func parseCertsPEM(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no PEM certificate")
	}
	return out, nil
}

// certWatch polls the secrets of proxies (by name) every 250 ms until the test ends, and keeps
// every serial it saw with the time it first saw it.
type certWatch struct {
	mu      sync.Mutex
	cur     map[string]proxySecrets
	serials map[string][]serialSeen
	lastErr map[string]error
}

type serialSeen struct {
	serial string
	at     time.Time
}

func watchCerts(t *testing.T, proxies map[string]*testenv.Proxy) *certWatch {
	t.Helper()
	w := &certWatch{cur: map[string]proxySecrets{}, serials: map[string][]serialSeen{}, lastErr: map[string]error{}}
	poll := func() {
		for name, p := range proxies {
			s, err := readProxySecrets(p)
			w.mu.Lock()
			w.lastErr[name] = err
			if err == nil {
				w.cur[name] = s
				if seen := w.serials[name]; len(seen) == 0 || seen[len(seen)-1].serial != s.Serial {
					w.serials[name] = append(seen, serialSeen{s.Serial, time.Now()})
				}
			}
			w.mu.Unlock()
		}
	}
	poll()
	for name := range proxies {
		if err := w.lastErr[name]; err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				poll()
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return w
}

// state returns the latest secrets seen of a proxy and the serials it had while watched.
func (w *certWatch) state(name string) (proxySecrets, []serialSeen) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cur[name], slices.Clone(w.serials[name])
}

// current returns the latest secrets seen of a proxy.
func (w *certWatch) current(name string) proxySecrets {
	s, _ := w.state(name)
	return s
}

// renewals returns how many times a proxy's certificate changed while watched.
func (w *certWatch) renewals(name string) int {
	_, seen := w.state(name)
	return len(seen) - 1
}

// changedAt returns when the proxy's current certificate was first seen.
func (w *certWatch) changedAt(name string) time.Time {
	_, seen := w.state(name)
	return seen[len(seen)-1].at
}

// waitAll waits until cond (called without w's lock held) holds for every proxy named, failing the test after timeout (a
// bound for "eventually", not a timing assertion), and returns how long it waited.
func (w *certWatch) waitAll(t *testing.T, what string, timeout time.Duration, names []string, cond func(name string, s proxySecrets) bool) time.Duration {
	t.Helper()
	start := time.Now()
	testenv.Eventually(t, timeout, func() error {
		for _, name := range names {
			s := w.current(name)
			if !cond(name, s) {
				w.mu.Lock()
				err := w.lastErr[name]
				w.mu.Unlock()
				return fmt.Errorf("%s: not yet for %s (serial %s, roots %v, last poll error %v)", what, name,
					s.Serial, short(s.RootFingerprints()), err)
			}
		}
		return nil
	})
	took := time.Since(start)
	t.Logf("%s after %s", what, took.Round(100*time.Millisecond))
	return took
}

// short abbreviates fingerprints for logs.
func short(fps []string) []string {
	out := make([]string, len(fps))
	for i, fp := range fps {
		out[i] = fp[:min(12, len(fp))]
	}
	return out
}

// caRootStates lists straitd's CA roots through `strait ca roots -o json`: fingerprint → state.
func caRootStates(t *testing.T, sd *testenv.Straitd) map[string]string {
	t.Helper()
	out, err := strait(t, sd, "ca", "roots", "-o", "json")
	if err != nil {
		t.Fatalf("strait ca roots: %v\n%s", err, out)
	}
	var resp struct {
		Roots []struct{ Fingerprint, State string }
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatalf("strait ca roots -o json: %v\n%s", err, out)
	}
	m := map[string]string{}
	for _, r := range resp.Roots {
		m[r.Fingerprint] = r.State
	}
	return m
}

// straitCA runs `strait ca args...` and fails the test on an error.
func straitCA(t *testing.T, sd *testenv.Straitd, args ...string) string {
	t.Helper()
	out, err := strait(t, sd, append([]string{"ca"}, args...)...)
	if err != nil {
		t.Fatalf("strait ca %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// pairCounters are the pair's counters of the client → server hop.
type pairCounters struct {
	conns, requests, retries int // client sidecar: connections (each a mutual TLS handshake), requests, retries
	connectFail              int // client sidecar: failed connections (a handshake the client refused)
	tlsErrors                int // server sidecar: failed TLS handshakes (a client certificate it refused)
}

func (c pairCounters) String() string {
	return fmt.Sprintf("%d connections (mutual TLS handshakes), %d requests, %d retries, %d failed connections, %d failed server handshakes",
		c.conns, c.requests, c.retries, c.connectFail, c.tlsErrors)
}

func (c pairCounters) minus(d pairCounters) pairCounters {
	return pairCounters{c.conns - d.conns, c.requests - d.requests, c.retries - d.retries, c.connectFail - d.connectFail, c.tlsErrors - d.tlsErrors}
}

// readPairCounters reads the counters from both sidecars' /stats.
func readPairCounters(t *testing.T, p *rotationPair) pairCounters {
	t.Helper()
	const cluster = "cluster.outbound|9080||reviews.e2e.svc.cluster.local."
	client := proxyStats(t, p.client)
	server := proxyStats(t, p.server)
	return pairCounters{
		conns:       client[cluster+"upstream_cx_total"],
		requests:    client[cluster+"upstream_rq_total"],
		retries:     client[cluster+"upstream_rq_retry"],
		connectFail: client[cluster+"upstream_cx_connect_fail"],
		tlsErrors:   server["listener."+p.serverIP+"_9080.ssl.connection_error"],
	}
}

// proxyStats reads a proxy's counters and gauges (/stats).
func proxyStats(t *testing.T, p *testenv.Proxy) map[string]int {
	t.Helper()
	code, body, err := p.AdminGet("/stats")
	if err != nil || code != http.StatusOK {
		t.Fatalf("%s /stats: %d %v", p.Name, code, err)
	}
	m := map[string]int{}
	for _, line := range strings.Split(body, "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok {
			m[k], _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return m
}

// checkHandshakes fails the test if, since base, the server sidecar refused a handshake or the
// client sidecar failed to connect to it, and logs the hop's figures. (Retries are reported, not
// failed: a request retried on a fresh connection is not a failed request; a refused handshake
// behind it would be counted by the checks.)
func checkHandshakes(t *testing.T, p *rotationPair, what string, base pairCounters) pairCounters {
	t.Helper()
	now := readPairCounters(t, p)
	d := now.minus(base)
	t.Logf("%s: client sidecar → server sidecar: %s", what, d)
	if d.tlsErrors != 0 || d.connectFail != 0 {
		t.Errorf("%s: %d failed server handshakes and %d failed connections, want none", what, d.tlsErrors, d.connectFail)
	}
	return now
}

// TestCertRotationAndRootRotationUnderLoad: with 2-minute workload certificates, a client and a
// server sidecar renew their certificates (each at least twice) and then go through a root
// rotation — stage a new root, wait until both trust it, activate it, wait until both hold a
// certificate of it, remove the old root, wait until both trust the new root only — all under a
// bounded load of at least 5 minutes through the pair (20 requests/s, each verified as mutual TLS
// with both identities) without a failed request or a failed handshake.
func TestCertRotationAndRootRotationUnderLoad(t *testing.T) {
	skipShort(t)
	t.Parallel()
	clientIP, serverIP := pairIPs(95)
	const lifetime = 2 * time.Minute
	const rate, minLoad, maxLoad = 20, 5 * time.Minute, 7 * time.Minute
	app := startBackend(t, "127.0.0.1", "reviews", backendOptions{})
	sd := testenv.StartStraitd(t, map[string]string{"mesh.yaml": rotationYAML(clientIP, serverIP, app.Addr())},
		"--workload-cert-ttl", lifetime.String())
	pair := startRotationPair(t, sd, clientIP, serverIP, lifetime)
	names := []string{"client", "server"}
	w := watchCerts(t, map[string]*testenv.Proxy{"client": pair.client, "server": pair.server})
	for _, name := range names {
		if s := w.current(name); s.Leaf.NotAfter.Sub(s.Leaf.NotBefore) > lifetime+lifetime/10+time.Second {
			t.Fatalf("%s: certificate valid %v..%v, want a lifetime of %v (plus the CA's backdating)", name, s.Leaf.NotBefore, s.Leaf.NotAfter, lifetime)
		}
	}
	counters := readPairCounters(t, pair)
	load := startMeshLoad(t, pair, rate, rate*int(maxLoad/time.Second), maxLoad)

	// Certificate rotation: each proxy renews at about half the lifetime.
	w.waitAll(t, "each proxy's certificate renewed twice", 3*lifetime, names, func(name string, _ proxySecrets) bool { return w.renewals(name) >= 2 })
	counters = checkHandshakes(t, pair, "renewals", counters)

	// Root rotation, with the load running.
	roots := caRootStates(t, sd)
	if len(roots) != 1 {
		t.Fatalf("CA roots before the rotation: %v", roots)
	}
	var old string
	for fp := range roots {
		old = fp
	}
	for _, name := range names {
		if got := w.current(name).RootFingerprints(); !slices.Equal(got, []string{old}) {
			t.Fatalf("%s trusts %v, want the CA's root %s", name, got, old)
		}
	}
	var staged struct{ Changed struct{ Fingerprint string } }
	out := straitCA(t, sd, "stage-root", "-o", "json")
	if err := json.Unmarshal([]byte(out), &staged); err != nil || staged.Changed.Fingerprint == "" {
		t.Fatalf("strait ca stage-root -o json: %v\n%s", err, out)
	}
	next := staged.Changed.Fingerprint
	both := []string{old, next}
	slices.Sort(both)
	t.Logf("staged root %s (old root %s)", next[:12], old[:12])
	w.waitAll(t, "both proxies trust the staged root", lifetime, names, func(_ string, s proxySecrets) bool {
		return slices.Equal(s.RootFingerprints(), both)
	})
	if got := caRootStates(t, sd); got[old] != "signing" || got[next] != "staged" {
		t.Fatalf("CA roots after staging: %v", got)
	}
	counters = checkHandshakes(t, pair, "root staged", counters)

	straitCA(t, sd, "activate-root")
	if got := caRootStates(t, sd); got[old] != "trusted" || got[next] != "signing" {
		t.Fatalf("CA roots after activating: %v", got)
	}
	w.waitAll(t, "both proxies hold a certificate of the new root", lifetime, names, func(_ string, s proxySecrets) bool {
		return s.Issuer() == next
	})
	counters = checkHandshakes(t, pair, "root activated", counters)

	straitCA(t, sd, "remove-root", old)
	if got := caRootStates(t, sd); len(got) != 1 || got[next] != "signing" {
		t.Fatalf("CA roots after removing the old root: %v", got)
	}
	w.waitAll(t, "both proxies trust the new root only", lifetime, names, func(_ string, s proxySecrets) bool {
		return slices.Equal(s.RootFingerprints(), []string{next}) && s.Issuer() == next
	})
	if !load.running() {
		t.Errorf("the load ended (after %d requests) before the rotation did", load.sent.Load())
	}
	counters = checkHandshakes(t, pair, "old root removed", counters)

	// The load runs at least minLoad in all.
	select {
	case <-time.After(time.Until(load.start.Add(minLoad))):
	case <-load.done:
	}
	load.Stop()
	load.check(t)
	if d := time.Since(load.start); d < minLoad {
		t.Errorf("the load ran %s, want at least %s", d.Round(time.Second), minLoad)
	}
	for _, name := range names {
		t.Logf("%s: %d renewals", name, w.renewals(name))
	}
	checkHandshakes(t, pair, "rest of the load", counters)
}

// expiryGaugeRE is the agent's certificate expiry gauge on /stats/prometheus.
var expiryGaugeRE = regexp.MustCompile(`(?m)^istio_agent_cert_expiry_seconds\{resource_name="default"\} (-?\d+)$`)

func expirySeconds(t *testing.T, p *testenv.Proxy) int {
	t.Helper()
	_, body, err := p.AdminGet("/stats/prometheus")
	if err != nil {
		t.Fatal(err)
	}
	m := expiryGaugeRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("%s: no certificate expiry gauge on /stats/prometheus", p.Name)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// The agent's warnings (proxy/agent), as strait-proxy logs them: a failed renewal (the CA
// unreachable), and a certificate in the last part of its validity (WarnFraction) that is not
// renewed yet.
const (
	agentRenewFailed = `level=WARN msg="requesting the workload certificate failed"`
	agentExpiresSoon = `level=WARN msg="workload certificate expires soon and is not renewed yet"`
)

// TestCAOutageKeepsTrafficAndRenewsAfterRestart: with 60-second workload certificates, straitd
// stops right after both sidecars renewed and stays away for longer than half the lifetime (until
// both agents warned that their certificate expires soon). Traffic through the pair goes on
// without a failed request (the proxies serve their last config and certificates), each proxy's
// expiry gauge falls, and each logs the warnings. straitd then restarts on the same ports and data
// dir (so its CA keeps the same root), and both proxies renew within a bounded time.
func TestCAOutageKeepsTrafficAndRenewsAfterRestart(t *testing.T) {
	skipShort(t)
	t.Parallel()
	clientIP, serverIP := pairIPs(97)
	// The agent warns in the last 20% of the validity (the lifetime plus the CA's 10% backdating),
	// 46.8 s after receipt; the outage lasts about that, leaving each certificate several seconds
	// to be renewed once straitd is back.
	const lifetime = 60 * time.Second
	const rate = 20
	app := startBackend(t, "127.0.0.1", "reviews", backendOptions{})
	addr := func() string { return fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)) }
	ports := []string{"--http-listen", addr(), "--mesh-address", addr(), "--xds-listen", addr(), "--workload-cert-ttl", lifetime.String()}
	sd := testenv.StartStraitd(t, map[string]string{"mesh.yaml": rotationYAML(clientIP, serverIP, app.Addr())}, ports...)
	pair := startRotationPair(t, sd, clientIP, serverIP, lifetime)
	names := []string{"client", "server"}
	proxies := map[string]*testenv.Proxy{"client": pair.client, "server": pair.server}
	w := watchCerts(t, proxies)
	counters := readPairCounters(t, pair)
	load := startMeshLoad(t, pair, rate, rate*240, 4*time.Minute)
	rootsBefore := caRootStates(t, sd)

	// Stop straitd right after both proxies renewed, within a few seconds of each other, so that
	// both certificates have most of their lifetime left when the outage begins.
	const spread = 6 * time.Second
	w.waitAll(t, "both proxies renewed within "+spread.String()+" of each other", 3*lifetime, names, func(name string, _ proxySecrets) bool {
		for _, n := range names {
			if w.renewals(n) < 1 || time.Since(w.changedAt(n)) > spread {
				return false
			}
		}
		return true
	})
	atStop := map[string]string{}
	for _, name := range names {
		atStop[name] = w.current(name).Serial
	}
	sd.Stop(5 * time.Second)
	stopped := time.Now()
	t.Logf("straitd stopped; certificates %v", atStop)

	// The outage: the gauge falls, the agents warn, the certificates stay.
	last := map[string]int{}
	for _, name := range names {
		last[name] = expirySeconds(t, proxies[name])
	}
	samples, sampled := 0, time.Now()
	testenv.WaitFor(t, "both agents' expiry warnings", lifetime, func() bool {
		if time.Since(sampled) < 2*time.Second {
			return false
		}
		samples, sampled = samples+1, time.Now()
		for _, name := range names {
			if e := expirySeconds(t, proxies[name]); e >= last[name] {
				t.Errorf("%s: the expiry gauge went from %d to %d during the outage", name, last[name], e)
			} else {
				last[name] = e
			}
		}
		return strings.Contains(pair.client.Output(), agentExpiresSoon) && strings.Contains(pair.server.Output(), agentExpiresSoon)
	})
	if d := lifetime/2 + time.Second - time.Since(stopped); d > 0 {
		time.Sleep(d) // longer than half a lifetime in any case
	}
	for _, name := range names {
		p := proxies[name]
		if !strings.Contains(p.Output(), agentRenewFailed) {
			t.Errorf("%s: no %q warning in its log", name, agentRenewFailed)
		}
		if s := w.current(name); s.Serial != atStop[name] {
			t.Errorf("%s: certificate %s changed to %s while straitd was down", name, atStop[name], s.Serial)
		}
		if last[name] <= 0 {
			t.Fatalf("%s: the certificate expired during the outage (gauge %d)", name, last[name])
		}
	}
	outage := time.Since(stopped)
	t.Logf("outage of %s (half the lifetime: %s); expiry gauges before the restart: %v (%d samples)", outage.Round(100*time.Millisecond), lifetime/2, last, samples)
	counters = checkHandshakes(t, pair, "until the restart (the outage included)", counters)

	// straitd comes back on the same ports and data dir: the same root, and both proxies renew.
	restarted := time.Now()
	sd2 := testenv.StartStraitd(t, nil, append(ports, "--config-dir", sd.ConfigDir, "--data-dir", sd.DataDir)...)
	if got := caRootStates(t, sd2); len(got) != 1 || !maps.Equal(got, rootsBefore) {
		t.Fatalf("CA roots after the restart: %v, before: %v", got, rootsBefore)
	}
	w.waitAll(t, "both proxies renewed after straitd's restart", 30*time.Second, names, func(name string, s proxySecrets) bool {
		return s.Serial != atStop[name]
	})
	for _, name := range names {
		s := w.current(name)
		if _, ok := rootsBefore[s.Issuer()]; !ok {
			t.Errorf("%s: the renewed certificate is not signed by the CA's root", name)
		}
		t.Logf("%s: renewed %s after the restart; %d renewals in all", name, w.changedAt(name).Sub(restarted).Round(100*time.Millisecond), w.renewals(name))
	}
	time.Sleep(3 * time.Second) // traffic on the renewed certificates
	load.Stop()
	load.check(t)
	checkHandshakes(t, pair, "restart and renewals", counters)
}
