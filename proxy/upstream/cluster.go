// Package upstream turns an Envoy v3 Cluster into a live upstream: its endpoints (EDS, STATIC,
// STRICT_DNS, LOGICAL_DNS, ORIGINAL_DST), a load balancer from package balance, connection pools
// per endpoint (HTTP/1.1 keep-alive, HTTP/2 multiplexing, TLS with SNI and ALPN), circuit
// breakers, outlier detection and Envoy's cluster statistics.
//
// The proxy core compiles a Cluster per CDS resource with Compile, feeds it EDS updates with
// SetEndpoints, and closes it with Close when the resource goes away. l7 calls RoundTrip, l4 calls
// Dial; both are safe for concurrent use. The request path reads the current host set through an
// atomic pointer and takes no cluster-wide lock.
package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strait-mesh/strait/proxy/balance"
	"github.com/strait-mesh/strait/proxy/stats"
	"github.com/strait-mesh/strait/proxy/telemetry"
	tlsv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/transport_sockets/tls/v3"
)

// Deps are what a cluster needs from the proxy core.
type Deps struct {
	// Stats receives the cluster's metrics; nil uses a private store.
	Stats *stats.Store
	// ClientTLS builds the client TLS configuration of an UpstreamTlsContext (tlsx.Client bound
	// to the proxy's secrets). Required only by clusters with a TLS transport socket.
	ClientTLS func(*tlsv3.UpstreamTlsContext) (*tls.Config, error)
	// Resolver resolves STRICT_DNS and LOGICAL_DNS hostnames; nil means net.DefaultResolver.
	Resolver *net.Resolver
	// Logger receives DNS and ejection events; nil means slog.Default().
	Logger *slog.Logger
}

// Response flags set on *Error, as in Envoy's access log.
const (
	FlagNoHealthyUpstream   = "UH"
	FlagConnectFailure      = "UF"
	FlagOverflow            = "UO"
	FlagConnectionTerminate = "UC"
	FlagUpstreamTimeout     = "UT"
	FlagDownstreamCanceled  = "DC"
	FlagUpstreamReset       = "UR"
)

// Error is a failed upstream request or connection. Flag is Envoy's response flag (UH, UF, UO,
// UC, UT, DC) for the access log; Err is the cause.
type Error struct {
	Flag string
	Err  error
}

// Error implements error.
func (e *Error) Error() string { return "upstream " + e.Flag + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

var (
	errNoHealthy       = errors.New("no healthy upstream")
	errPendingOverflow = errors.New("pending requests overflow (circuit breaker)")
	errRequestOverflow = errors.New("active requests overflow (circuit breaker)")
	errCxOverflow      = errors.New("connections overflow (circuit breaker)")
	errNoOriginalDst   = errors.New("no original destination for an ORIGINAL_DST cluster")
	errClosed          = errors.New("cluster removed")
)

type origDstKey struct{}

// WithOriginalDst returns ctx carrying the downstream connection's original destination, which
// an ORIGINAL_DST cluster connects to.
func WithOriginalDst(ctx context.Context, addr netip.AddrPort) context.Context {
	return context.WithValue(ctx, origDstKey{}, addr)
}

// OriginalDst returns the original destination carried by ctx.
func OriginalDst(ctx context.Context) (netip.AddrPort, bool) {
	a, ok := ctx.Value(origDstKey{}).(netip.AddrPort)
	return a, ok
}

type discovery int

const (
	discoveryStatic discovery = iota
	discoveryEDS
	discoveryStrictDNS
	discoveryLogicalDNS
	discoveryOriginalDst
)

// protocol is the upstream HTTP protocol choice of a cluster.
type protocol int

const (
	protoHTTP1 protocol = iota
	protoHTTP2
	protoDownstream // use_downstream_protocol
	protoAuto       // auto_config: ALPN over TLS, HTTP/1.1 in plaintext
)

// Cluster is a compiled upstream cluster. Create it with Compile.
type Cluster struct {
	// What every request reads, first and together (the fewest data cache lines).
	set      atomic.Pointer[hostSet]
	st       *clusterStats
	breaker  *breaker
	outlier  *outlierConfig
	kind     discovery
	proto    protocol
	warm     chan struct{}       // DNS clusters: closed after the first resolution
	services []telemetry.Service // filter_metadata.istio.services (services.go)
	http     httpOptions

	name    string
	statsID string
	deps    Deps
	log     *slog.Logger

	lbCfg          balance.Config
	connectTimeout time.Duration
	keepAlive      net.KeepAliveConfig
	defaultTLS     *transport
	sockets        []socketMatch
	hashByHostname bool
	bindAddr       *net.TCPAddr
	slowStart      *slowStart

	// DNS discovery.
	dnsHosts     []dnsTarget
	dnsRefresh   time.Duration
	dnsFamily    dnsFamily
	respectTTL   bool
	origHeader   bool
	cleanupEvery time.Duration

	// mu guards membership changes (EDS, DNS, ejections, original-dst hosts); never taken by a
	// request that finds its host in the current set.
	mu      sync.Mutex
	members []*endpoint
	byKey   map[string]*endpoint
	ramping bool     // some member is in its slow-start window
	orig    sync.Map // netip.AddrPort → *endpoint (ORIGINAL_DST)

	// freed is closed and replaced whenever an upstream connection closes (notifyFreed); a
	// request that waits for a connection slot reads it with one atomic load (connFreed).
	freed atomic.Pointer[freedSignal]

	closed atomic.Bool
	stop   chan struct{}
	wg     sync.WaitGroup
}

// hostSet is an immutable view of the cluster's members and their balancer.
type hostSet struct {
	lb    *balance.Set
	eps   []*endpoint
	panic bool // some priority level is in panic mode (lb_healthy_panic)
}

// Name returns the cluster's name.
func (c *Cluster) Name() string { return c.name }

// HealthyHosts returns the number of healthy and total hosts in the current set.
func (c *Cluster) HealthyHosts() (healthy, total int) {
	hs := c.set.Load()
	return hs.lb.HealthyLen(), hs.lb.Len()
}

// Close removes the cluster: background work (DNS refresh, outlier sweeps, original-dst cleanup)
// stops, idle connections close, and busy ones close when their requests finish. Requests in
// flight may complete; new requests fail with UH.
func (c *Cluster) Close() {
	if c.closed.Swap(true) {
		return
	}
	close(c.stop)
	c.wg.Wait()
	c.mu.Lock()
	eps := c.members
	c.members = nil
	c.byKey = nil
	c.mu.Unlock()
	c.set.Store(&hostSet{lb: emptySet(c.lbCfg)})
	for _, ep := range eps {
		if ep.od.ejected.Load() {
			c.st.odActive.Dec()
		}
		ep.close()
	}
	c.orig.Range(func(k, v any) bool {
		v.(*endpoint).close()
		c.orig.Delete(k)
		return true
	})
}

// connFreed returns a channel closed the next time an upstream connection of this cluster closes
// (a circuit-breaker connection slot frees up).
func (c *Cluster) connFreed() <-chan struct{} {
	return c.freed.Load().ch
}

// notifyFreed wakes the requests waiting on connFreed's channel. The new channel is published
// before the old one closes, so a request woken by it that looks again and waits anew waits on
// the new one; each channel is closed once, by the Swap that replaced it.
func (c *Cluster) notifyFreed() {
	old := c.freed.Swap(newFreedSignal())
	close(old.ch)
}

// freedSignal holds one generation of Cluster.freed's channel.
type freedSignal struct{ ch chan struct{} }

func newFreedSignal() *freedSignal { return &freedSignal{ch: make(chan struct{})} }

// AcquireRetry takes a retry slot of the max_retries circuit breaker (or of the retry budget when
// the thresholds have one). l7 calls it before each retry and ReleaseRetry when the retry
// finishes; false means the breaker is open (Envoy counts upstream_rq_retry_overflow and does not
// retry).
func (c *Cluster) AcquireRetry() bool {
	if !c.breaker.acquireRetry() {
		c.st.rqRetryOverflow.Inc()
		return false
	}
	return true
}

// ReleaseRetry returns a slot taken by AcquireRetry.
func (c *Cluster) ReleaseRetry() { c.breaker.retries.release() }
