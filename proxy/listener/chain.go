package listener

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/anypb"

	"github.com/strait-mesh/strait/proxy/l4"
	"github.com/strait-mesh/strait/proxy/l7"
	"github.com/strait-mesh/strait/proxy/stats"
	"github.com/strait-mesh/strait/proxy/telemetry"
	"github.com/strait-mesh/strait/proxy/xdsfield"
	listenerv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/listener/v3"
	connlimitv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/connection_limit/v3"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/tcp_proxy/v3"
	rawv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/transport_sockets/raw_buffer/v3"
	tlsv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/transport_sockets/tls/v3"
)

// ConnInfo describes an accepted connection after listener filters and TLS termination.
type ConnInfo struct {
	// Source is the peer address; OriginalDst the destination the client connected to (after
	// SO_ORIGINAL_DST recovery, else the local address).
	Source, OriginalDst netip.AddrPort
	// TLS reports that the listener terminated TLS; the net.Conn passed on is a *tls.Conn.
	TLS bool
	// ServerName is the SNI seen by the tls_inspector or the TLS handshake.
	ServerName string
	// ALPN is the negotiated protocol for terminated TLS, or the protocol the http_inspector
	// detected ("http/1.1", "h2c", ...) for plaintext; empty when unknown.
	ALPN string
	// PeerCertificates is the verified client chain (leaf first) for mutual TLS.
	PeerCertificates []*x509.Certificate
	// LocalCertificate is the certificate the listener presented, for terminated TLS.
	LocalCertificate *x509.Certificate
	// FilterChain is the name of the selected filter chain.
	FilterChain string
}

// Terminal is the last network filter of a chain; it owns the connection once ServeConn is
// called, serves it until done and closes it. Drain asks it to finish open connections
// gracefully (bounded by ctx); Close ends them at once.
type Terminal interface {
	ServeConn(c net.Conn, info ConnInfo)
	Drain(ctx context.Context) error
	Close() error
}

// chain is a compiled FilterChain.
type chain struct {
	name             string
	match            chainMatch
	tls              *tls.Config // nil: raw_buffer
	handshakeTimeout time.Duration
	limit            *connLimit  // envoy.filters.network.connection_limit, nil if none
	filters          []netFilter // rbac, local_ratelimit, ext_authz, ratelimit, ..., in order
	term             Terminal
	// ctx is done when the listener closes: it cancels the filters' pending work (checks).
	ctx    context.Context
	cancel context.CancelFunc
}

// connLimit is a compiled connection_limit network filter: at most max concurrent connections on
// the chain; others are closed after delay.
type connLimit struct {
	max     int64
	delay   time.Duration
	active  atomic.Int64
	limited *stats.Counter
	gauge   *stats.Gauge
}

func compileChain(fc *listenerv3.FilterChain, env Env, path string) (*chain, error) {
	if err := xdsfield.Check(fc, path, "filter_chain_match", "filters", "transport_socket", "metadata", "name",
		"transport_socket_connect_timeout"); err != nil {
		return nil, err
	}
	c := &chain{name: fc.GetName(), handshakeTimeout: defaultHandshakeTimeout}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if c.name == "" {
		c.name = path
	}
	var err error
	if c.match, err = compileChainMatch(fc.GetFilterChainMatch(), path+".filter_chain_match"); err != nil {
		return nil, err
	}
	if d := fc.GetTransportSocketConnectTimeout(); d != nil {
		if err := d.CheckValid(); err != nil {
			return nil, fmt.Errorf("%s.transport_socket_connect_timeout: %w", path, err)
		}
		if d.AsDuration() > 0 {
			c.handshakeTimeout = d.AsDuration()
		}
	}
	if ts := fc.GetTransportSocket(); ts != nil {
		p := path + ".transport_socket"
		if err := xdsfield.Check(ts, p, "name", "typed_config"); err != nil {
			return nil, err
		}
		switch ts.GetTypedConfig().GetTypeUrl() {
		case typeDownstreamTLS:
			var ctx tlsv3.DownstreamTlsContext
			if err := ts.GetTypedConfig().UnmarshalTo(&ctx); err != nil {
				return nil, fmt.Errorf("decoding %s: %w", p, err)
			}
			if c.tls, err = tlsConfig(&ctx, env, path); err != nil {
				return nil, err
			}
		case typeRawBuffer:
			var rb rawv3.RawBuffer
			if err := ts.GetTypedConfig().UnmarshalTo(&rb); err != nil {
				return nil, fmt.Errorf("decoding %s: %w", p, err)
			}
		default:
			return nil, fmt.Errorf("%s: transport socket %q (%s) is not supported", p, ts.GetName(), ts.GetTypedConfig().GetTypeUrl())
		}
	}
	filters := fc.GetFilters()
	if len(filters) == 0 {
		return nil, fmt.Errorf("%s.filters: a chain needs a terminal filter (http_connection_manager or tcp_proxy)", path)
	}
	for i, f := range filters {
		p := fmt.Sprintf("%s.filters[%d]", path, i)
		if err := xdsfield.Check(f, p, "name", "typed_config"); err != nil {
			return nil, err
		}
		last := i == len(filters)-1
		a := f.GetTypedConfig()
		if nf, ok := netFilterCompilers[a.GetTypeUrl()]; ok {
			if last {
				return nil, fmt.Errorf("%s: %s cannot be the terminal filter", p, nf.name)
			}
			x, err := nf.compile(c.ctx, a, env, p)
			if err != nil {
				return nil, err
			}
			c.filters = append(c.filters, x)
			continue
		}
		switch a.GetTypeUrl() {
		case typeConnLimit:
			if last {
				return nil, fmt.Errorf("%s: connection_limit cannot be the terminal filter", p)
			}
			var cl connlimitv3.ConnectionLimit
			if err := a.UnmarshalTo(&cl); err != nil {
				return nil, fmt.Errorf("decoding %s: %w", p, err)
			}
			if c.limit, err = compileConnLimit(&cl, env, p); err != nil {
				return nil, err
			}
		case typeHCM, typeTCPProxy:
			if !last {
				return nil, fmt.Errorf("%s: %q is a terminal filter and must be last", p, f.GetName())
			}
			if c.term, err = compileTerminal(a.GetTypeUrl(), f.GetTypedConfig(), env, p); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("%s: network filter %q (%s) is not supported", p, f.GetName(), a.GetTypeUrl())
		}
	}
	if err := attachIstioStats(c); err != nil {
		return nil, err
	}
	return c, nil
}

// netFilterCompilers are the non-terminal network filters that run on a connection (netFilter), by
// type URL: the name their errors use and their compiler. ctx is done when the listener closes.
var netFilterCompilers = map[string]struct {
	name    string
	compile func(ctx context.Context, a *anypb.Any, env Env, path string) (netFilter, error)
}{
	typeNetworkRBAC: {"rbac", func(_ context.Context, a *anypb.Any, env Env, path string) (netFilter, error) {
		return compileNetworkRBAC(a, env, path)
	}},
	typeNetworkLocalRateLimit: {"local_ratelimit", func(_ context.Context, a *anypb.Any, env Env, path string) (netFilter, error) {
		return compileNetworkLocalRateLimit(a, env, path)
	}},
	typeNetworkExtAuthz: {"ext_authz", func(ctx context.Context, a *anypb.Any, env Env, path string) (netFilter, error) {
		return compileNetworkExtAuthz(ctx, a, env, path)
	}},
	typeNetworkGlobalRateLimit: {"ratelimit", func(ctx context.Context, a *anypb.Any, env Env, path string) (netFilter, error) {
		return compileNetworkGlobalRateLimit(ctx, a, env, path)
	}},
	// istio.stats: its own type, or a TypedStruct carrying it (istiostats.go).
	telemetry.TypeStatsPluginConfig: {"istio.stats", compileIstioStats},
	telemetry.TypeUDPATypedStruct:   {"istio.stats", compileIstioStats},
	telemetry.TypeXDSTypedStruct:    {"istio.stats", compileIstioStats},
}

func compileConnLimit(cl *connlimitv3.ConnectionLimit, env Env, path string) (*connLimit, error) {
	if err := xdsfield.Check(cl, path+".typed_config", "stat_prefix", "max_connections", "delay"); err != nil {
		return nil, err
	}
	if cl.GetStatPrefix() == "" {
		return nil, fmt.Errorf("%s: stat_prefix is required", path)
	}
	if cl.GetMaxConnections() == nil || cl.GetMaxConnections().GetValue() < 1 {
		return nil, fmt.Errorf("%s: max_connections must be at least 1", path)
	}
	lim := &connLimit{max: int64(cl.GetMaxConnections().GetValue())}
	if d := cl.GetDelay(); d != nil {
		if err := d.CheckValid(); err != nil {
			return nil, fmt.Errorf("%s.delay: %w", path, err)
		}
		lim.delay = d.AsDuration()
	}
	s := envStats(env)
	tag := stats.Tag{Name: "envoy_connection_limit_prefix", Value: cl.GetStatPrefix()}
	lim.limited = s.Counter("connection_limit."+cl.GetStatPrefix()+".limited_connections", "envoy_connection_limit_limited_connections", tag)
	lim.gauge = s.Gauge("connection_limit."+cl.GetStatPrefix()+".active_connections", "envoy_connection_limit_active_connections", tag)
	return lim, nil
}

// acquire takes a slot; false means the connection must be closed (after delay).
func (cl *connLimit) acquire() bool {
	if cl.active.Add(1) > cl.max {
		cl.active.Add(-1)
		cl.limited.Inc()
		return false
	}
	cl.gauge.Inc()
	return true
}

func (cl *connLimit) release() {
	cl.active.Add(-1)
	cl.gauge.Dec()
}

func compileTerminal(typeURL string, a *anypb.Any, env Env, path string) (Terminal, error) {
	switch typeURL {
	case typeHCM:
		var hcm hcmv3.HttpConnectionManager
		if err := a.UnmarshalTo(&hcm); err != nil {
			return nil, fmt.Errorf("decoding %s: %w", path, err)
		}
		if f, ok := env.(HTTPFactory); ok {
			t, err := f.NewHTTP(&hcm)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			return t, nil
		}
		h, err := l7.New(&hcm, env.HTTP(), env.HTTPOptions())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return httpTerminal{h}, nil
	case typeTCPProxy:
		var tp tcpv3.TcpProxy
		if err := a.UnmarshalTo(&tp); err != nil {
			return nil, fmt.Errorf("decoding %s: %w", path, err)
		}
		p, err := l4.New(&tp, env.TCP())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return newTCPTerminal(p), nil
	}
	return nil, errors.New("unreachable")
}

// httpTerminal adapts an l7.Handler.
type httpTerminal struct{ h *l7.Handler }

func (t httpTerminal) ServeConn(c net.Conn, info ConnInfo) {
	alpn := info.ALPN
	switch alpn {
	case "h2c": // http_inspector saw the h2 preface: the connection speaks h2
		alpn = "h2"
	case "http/1.0":
		alpn = "http/1.1"
	}
	t.h.ServeConn(c, l7.ConnInfo{
		OriginalDst:      info.OriginalDst,
		Source:           info.Source,
		TLS:              info.TLS,
		SNI:              info.ServerName,
		ALPN:             alpn,
		PeerCertificates: info.PeerCertificates,
		LocalCertificate: info.LocalCertificate,
	})
}

func (t httpTerminal) Drain(ctx context.Context) error { return t.h.Drain(ctx) }
func (t httpTerminal) Close() error                    { return t.h.Close() }

// tcpTerminal adapts an l4.TCPProxy: Drain waits for its connections to end (a TCP stream has no
// graceful stop signal), Close cancels them.
type tcpTerminal struct {
	p      *l4.TCPProxy
	ctx    context.Context
	cancel context.CancelFunc
	active atomic.Int64
	idle   chan struct{}
}

func newTCPTerminal(p *l4.TCPProxy) *tcpTerminal {
	ctx, cancel := context.WithCancel(context.Background())
	return &tcpTerminal{p: p, ctx: ctx, cancel: cancel, idle: make(chan struct{}, 1)}
}

func (t *tcpTerminal) ServeConn(c net.Conn, info ConnInfo) {
	t.active.Add(1)
	defer func() {
		if t.active.Add(-1) == 0 {
			select {
			case t.idle <- struct{}{}:
			default:
			}
		}
	}()
	t.p.Serve(t.ctx, c, l4.ConnInfo{Source: info.Source, OriginalDst: info.OriginalDst, ServerName: info.ServerName,
		PeerCertificates: info.PeerCertificates, LocalCertificate: info.LocalCertificate})
}

func (t *tcpTerminal) Drain(ctx context.Context) error {
	for t.active.Load() > 0 {
		select {
		case <-t.idle:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (t *tcpTerminal) Close() error {
	t.cancel()
	return nil
}
