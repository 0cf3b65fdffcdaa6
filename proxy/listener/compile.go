// Package listener compiles Envoy v3 Listener resources and serves them: it accepts connections,
// recovers the original destination of redirected connections (SO_ORIGINAL_DST), runs the
// tls_inspector and http_inspector listener filters, selects a filter chain with Envoy's
// FilterChainMatch semantics, terminates TLS when the chain has a DownstreamTlsContext, runs
// the chain's connection_limit, rbac and ext_authz network filters (which share the
// connection's dynamic metadata: the RBAC filter's shadow decision enables ext_authz, as Istio's
// CUSTOM action needs), and hands the connection to the chain's terminal network filter: an
// HTTP connection manager (package l7) or a TCP proxy (package l4).
//
// A compiled *Listener is immutable configuration plus the bookkeeping of its own connections
// (for the connection limit and for draining). The proxy core builds one per LDS resource with
// Compile, serves it on a bound socket with Serve, and retires it with Drain or Close.
package listener

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/strait-mesh/strait/internal/vocab"
	"github.com/strait-mesh/strait/proxy/l4"
	"github.com/strait-mesh/strait/proxy/l7"
	"github.com/strait-mesh/strait/proxy/sniff"
	"github.com/strait-mesh/strait/proxy/stats"
	"github.com/strait-mesh/strait/proxy/tlsx"
	"github.com/strait-mesh/strait/proxy/xdsfield"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	listenerv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/listener/v3"
	httpinspv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/listener/http_inspector/v3"
	origdstv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/listener/original_dst/v3"
	tlsinspv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/transport_sockets/tls/v3"
)

// Env is what a listener needs from the proxy core. Implementations answer from the current
// runtime config and must be safe for concurrent use.
type Env interface {
	// Secret resolves SDS secrets for TLS transport sockets, at handshake time.
	tlsx.Secrets
	// HTTP returns the environment of HTTP connection managers (routes and clusters).
	HTTP() l7.Env
	// HTTPOptions returns the process-level options for l7.New (stats store, access log hook).
	HTTPOptions() l7.Options
	// TCP returns the environment of TCP proxies.
	TCP() l4.Env
	// Stats is where listener statistics go.
	Stats() *stats.Store
	// Handoff returns the listener that serves connections whose original destination is dst,
	// for listeners with use_original_dst (Envoy's hand-off to the listener bound to the original
	// destination; Registry.Lookup implements the lookup), or nil to keep the connection.
	Handoff(dst netip.AddrPort) *Listener
}

// Admission is process-wide admission control of accepted connections: the overload manager
// (package overload implements it). The accept loop consults it before the listener's own limit;
// its methods must be cheap (atomic operations) and safe for concurrent use.
type Admission interface {
	// AcceptingConnections reports false while envoy.overload_actions.stop_accepting_connections
	// is active; new connections are then closed at once (downstream_cx_overload_reject).
	AcceptingConnections() bool
	// AcquireConnection takes a slot of the global downstream connection limit
	// (overload.global_downstream_max_connections); false when none is left, and the connection
	// is closed at once (downstream_global_cx_overflow).
	AcquireConnection() bool
	// ReleaseConnection returns a slot taken by AcquireConnection, when the connection closes.
	ReleaseConnection()
}

// AdmissionEnv, when implemented by an Env, subjects its listeners to process-wide admission
// control. Admission is called once, at Compile; nil means none.
type AdmissionEnv interface {
	Admission() Admission
}

// HTTPFactory, when implemented by an Env, replaces l7.New for http_connection_manager chains.
// Tests use it to serve HTTP chains with a small local handler.
type HTTPFactory interface {
	NewHTTP(hcm *hcmv3.HttpConnectionManager) (Terminal, error)
}

// Well-known type URLs of the filters and transport sockets this package implements.
const (
	typeOriginalDst    = "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst"
	typeTLSInspector   = "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
	typeHTTPInspector  = "type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"
	typeHCM            = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
	typeTCPProxy       = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
	typeConnLimit      = "type.googleapis.com/envoy.extensions.filters.network.connection_limit.v3.ConnectionLimit"
	typeDownstreamTLS  = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
	typeRawBuffer      = "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"
	defaultFilterTmout = 15 * time.Second
	// defaultHandshakeTimeout bounds a TLS handshake when the chain sets no
	// transport_socket_connect_timeout (Envoy has none; an unbounded handshake is a slowloris).
	defaultHandshakeTimeout = 15 * time.Second
)

// Listener is a compiled Envoy Listener. Create it with Compile.
type Listener struct {
	name        string
	addr        netip.AddrPort
	bindToPort  bool
	ipv4Compat  bool // an IPv6 wildcard listener also accepts IPv4 (v4-mapped) connections
	transparent bool
	freebind    bool
	reusePort   bool
	modifyOnly  bool // drain_type MODIFY_ONLY
	statPrefix  string

	useOriginalDst bool // hand off to the listener of the original destination
	restoreDst     bool // original_dst listener filter: local address := SO_ORIGINAL_DST
	inspect        sniff.Options

	match        *matcher
	defaultChain *chain
	chains       []*chain // all chains incl. the default one, for draining

	env Env
	st  listenerStats

	adm          Admission // process-wide admission control, nil if none
	ignoreGlobal bool      // ignore_global_conn_limit: not counted in the global limit

	maxConns atomic.Int64 // 0: unlimited
	active   atomic.Int64

	mu       sync.Mutex
	conns    map[*trackedConn]struct{}
	lns      []closer
	draining bool          // Drain called: sockets closed, open connections finish
	closed   bool          // Close called: connections refused and cut
	idle     chan struct{} // closed when draining and active reaches 0
}

type closer interface{ Close() error }

type listenerStats struct {
	cxTotal, cxDestroy, overflow, noChain, preCxTimeout, filterError, tlsError *stats.Counter
	globalOverflow, overloadReject                                             *stats.Counter
	cxActive                                                                   *stats.Gauge
	// Inspector stats, process-wide as in Envoy (tls_inspector.*, http_inspector.*).
	tlsFound, tlsNotFound, sniFound, alpnFound, helloTooLarge *stats.Counter
	http10Found, http11Found, http2Found, httpNotFound        *stats.Counter
}

// Name returns the listener's name.
func (l *Listener) Name() string { return l.name }

// Address returns the listener's socket address.
func (l *Listener) Address() netip.AddrPort { return l.addr }

// BindToPort reports whether the listener owns a socket (false for Istio's virtual listeners,
// which only receive connections handed off by a use_original_dst listener).
func (l *Listener) BindToPort() bool { return l.bindToPort }

// DrainOnlyOnModify reports drain_type MODIFY_ONLY: the listener drains when it is changed or
// removed, but not on a global drain (/drain_listeners, shutdown), as in Envoy.
func (l *Listener) DrainOnlyOnModify() bool { return l.modifyOnly }

// SetMaxConnections sets the listener's connection limit (0: unlimited). Connections accepted
// beyond it are closed at once and counted in downstream_cx_overflow. Safe at any time.
func (l *Listener) SetMaxConnections(n int) { l.maxConns.Store(int64(n)) }

var listenerFields = []string{"name", "address", "stat_prefix", "filter_chains", "use_original_dst",
	"default_filter_chain", "listener_filters", "listener_filters_timeout",
	"continue_on_listener_filters_timeout", "traffic_direction", "metadata", "bind_to_port",
	"drain_type", "connection_balance_config", "transparent", "freebind", "enable_reuse_port",
	"ignore_global_conn_limit"}

// Compile builds a Listener from its xDS resource. Everything the proxy does not implement is an
// error naming the field or filter, so that the update is NACKed. Compile does not bind.
func Compile(lr *listenerv3.Listener, env Env) (*Listener, error) {
	if lr == nil {
		return nil, errors.New("compiling listener: nil resource")
	}
	if env == nil {
		return nil, errors.New("compiling listener: nil environment")
	}
	l, err := compile(lr, env)
	if err != nil {
		return nil, fmt.Errorf("compiling listener %q: %w", lr.GetName(), err)
	}
	return l, nil
}

func compile(lr *listenerv3.Listener, env Env) (*Listener, error) {
	if err := xdsfield.Check(lr, "", listenerFields...); err != nil {
		return nil, err
	}
	addr, err := socketAddress(lr.GetAddress())
	if err != nil {
		return nil, err
	}
	l := &Listener{
		name:        lr.GetName(),
		addr:        addr,
		bindToPort:  lr.GetBindToPort() == nil || lr.GetBindToPort().GetValue(),
		ipv4Compat:  lr.GetAddress().GetSocketAddress().GetIpv4Compat(),
		transparent: lr.GetTransparent().GetValue(),
		freebind:    lr.GetFreebind().GetValue(),
		reusePort:   lr.GetEnableReusePort().GetValue(),
		modifyOnly:  lr.GetDrainType() == listenerv3.Listener_MODIFY_ONLY,
		statPrefix:  lr.GetStatPrefix(),
		env:         env,
		conns:       map[*trackedConn]struct{}{},

		ignoreGlobal: lr.GetIgnoreGlobalConnLimit(),
	}
	if ae, ok := env.(AdmissionEnv); ok {
		l.adm = ae.Admission()
	}
	if l.statPrefix == "" {
		l.statPrefix = statAddress(addr)
	}
	l.useOriginalDst = lr.GetUseOriginalDst().GetValue()
	if cb := lr.GetConnectionBalanceConfig(); cb != nil {
		// Envoy balances connections across worker threads; goroutines need no balancing, so
		// exact_balance holds trivially. Other balancers are extensions we do not have.
		if err := xdsfield.Check(cb, "connection_balance_config", "exact_balance"); err != nil {
			return nil, err
		}
	}
	if err := l.compileListenerFilters(lr); err != nil {
		return nil, err
	}
	l.st = newListenerStats(env.Stats(), l.statPrefix)
	var specs []*chain
	for i, fc := range lr.GetFilterChains() {
		c, err := compileChain(fc, env, fmt.Sprintf("filter_chains[%d]", i))
		if err != nil {
			return nil, err
		}
		specs = append(specs, c)
	}
	if l.match, err = newMatcher(specs); err != nil {
		return nil, err
	}
	l.chains = specs
	if dfc := lr.GetDefaultFilterChain(); dfc != nil {
		if dfc.GetFilterChainMatch() != nil {
			return nil, errors.New("default_filter_chain.filter_chain_match must be empty")
		}
		if l.defaultChain, err = compileChain(dfc, env, "default_filter_chain"); err != nil {
			return nil, err
		}
		l.chains = append(l.chains, l.defaultChain)
	}
	if len(l.chains) == 0 {
		return nil, errors.New("no filter chains")
	}
	return l, nil
}

func (l *Listener) compileListenerFilters(lr *listenerv3.Listener) error {
	l.inspect.Timeout = defaultFilterTmout
	if d := lr.GetListenerFiltersTimeout(); d != nil {
		if err := d.CheckValid(); err != nil {
			return fmt.Errorf("listener_filters_timeout: %w", err)
		}
		l.inspect.Timeout = d.AsDuration() // 0 disables the timeout, as in Envoy
	}
	l.inspect.ContinueOnTimeout = lr.GetContinueOnListenerFiltersTimeout()
	for i, lf := range lr.GetListenerFilters() {
		path := fmt.Sprintf("listener_filters[%d]", i)
		if err := xdsfield.Check(lf, path, "name", "typed_config"); err != nil {
			return err
		}
		kind := lf.GetTypedConfig().GetTypeUrl()
		if kind == "" {
			// Legacy configs name the filter without a typed config.
			switch lf.GetName() {
			case vocab.FilterOriginalDst:
				kind = typeOriginalDst
			case vocab.FilterTLSInspector:
				kind = typeTLSInspector
			case vocab.FilterHTTPInspector:
				kind = typeHTTPInspector
			}
		}
		switch kind {
		case typeOriginalDst:
			var c origdstv3.OriginalDst
			if err := unmarshalOptional(lf.GetTypedConfig(), &c, path); err != nil {
				return err
			}
			if err := xdsfield.Check(&c, path+".typed_config"); err != nil {
				return err
			}
			l.restoreDst = true
		case typeTLSInspector:
			var c tlsinspv3.TlsInspector
			if err := unmarshalOptional(lf.GetTypedConfig(), &c, path); err != nil {
				return err
			}
			if err := xdsfield.Check(&c, path+".typed_config", "initial_read_buffer_size",
				"close_connection_on_client_hello_parsing_errors", "max_client_hello_size"); err != nil {
				return err
			}
			l.inspect.TLS = true
			l.inspect.CloseOnClientHelloError = c.GetCloseConnectionOnClientHelloParsingErrors()
			if m := c.GetMaxClientHelloSize(); m != nil {
				l.inspect.MaxClientHelloSize = int(min(m.GetValue(), 64*1024))
			}
		case typeHTTPInspector:
			var c httpinspv3.HttpInspector
			if err := unmarshalOptional(lf.GetTypedConfig(), &c, path); err != nil {
				return err
			}
			if err := xdsfield.Check(&c, path+".typed_config"); err != nil {
				return err
			}
			l.inspect.HTTP = true
		default:
			return fmt.Errorf("%s: listener filter %q (%s) is not supported", path, lf.GetName(), kind)
		}
	}
	return nil
}

// compileTyped decodes a, the typed_config of the filter at path, as an M and compiles it with
// compile, which names it path+".typed_config" in its errors.
func compileTyped[M any, PM interface {
	*M
	proto.Message
}, C any](a *anypb.Any, path string, compile func(PM, string) (C, error)) (C, error) {
	cfg := PM(new(M))
	if err := a.UnmarshalTo(cfg); err != nil {
		var zero C
		return zero, fmt.Errorf("decoding %s: %w", path, err)
	}
	return compile(cfg, path+".typed_config")
}

func unmarshalOptional(a *anypb.Any, m proto.Message, path string) error {
	if a == nil {
		return nil
	}
	if err := a.UnmarshalTo(m); err != nil {
		return fmt.Errorf("decoding %s.typed_config: %w", path, err)
	}
	return nil
}

func socketAddress(a *corev3.Address) (netip.AddrPort, error) {
	if a == nil {
		return netip.AddrPort{}, errors.New("address is required")
	}
	if err := xdsfield.Check(a, "address", "socket_address"); err != nil {
		return netip.AddrPort{}, err
	}
	sa := a.GetSocketAddress()
	if err := xdsfield.Check(sa, "address.socket_address", "address", "port_value", "protocol", "ipv4_compat"); err != nil {
		return netip.AddrPort{}, err
	}
	if sa.GetProtocol() != corev3.SocketAddress_TCP {
		return netip.AddrPort{}, errors.New("address.socket_address.protocol: only TCP is supported")
	}
	ip, err := netip.ParseAddr(sa.GetAddress())
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("address.socket_address.address: %w", err)
	}
	if sa.GetPortValue() > 65535 {
		return netip.AddrPort{}, fmt.Errorf("address.socket_address.port_value %d out of range", sa.GetPortValue())
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(sa.GetPortValue())), nil
}

// statAddress renders an address as Envoy does in listener stat names: "0.0.0.0_15001",
// "[::]_80" becomes "[__]_80".
func statAddress(a netip.AddrPort) string {
	s := a.Addr().String()
	if a.Addr().Is6() {
		s = "[" + strings.ReplaceAll(s, ":", "_") + "]"
	}
	return s + "_" + strconv.Itoa(int(a.Port()))
}

// envStats is the runtime's statistics store, or a private one when env has none.
func envStats(env Env) *stats.Store {
	if s := env.Stats(); s != nil {
		return s
	}
	return stats.NewStore()
}

// promName is the Prometheus name of an untagged statistic: "envoy_" and name with its dots
// as underscores.
func promName(name string) string { return "envoy_" + strings.ReplaceAll(name, ".", "_") }

// untaggedCounter is s's counter name, exported to Prometheus as promName(name).
func untaggedCounter(s *stats.Store, name string) *stats.Counter {
	return s.Counter(name, promName(name))
}

func newListenerStats(s *stats.Store, prefix string) listenerStats {
	if s == nil {
		s = stats.NewStore()
	}
	tag := stats.Tag{Name: "envoy_listener_address", Value: prefix}
	c := func(n string) *stats.Counter {
		return s.Counter("listener."+prefix+"."+n, "envoy_listener_"+n, tag)
	}
	return listenerStats{
		cxTotal:        c("downstream_cx_total"),
		cxDestroy:      c("downstream_cx_destroy"),
		overflow:       c("downstream_cx_overflow"),
		globalOverflow: c("downstream_global_cx_overflow"),
		overloadReject: c("downstream_cx_overload_reject"),
		noChain:        c("no_filter_chain_match"),
		preCxTimeout:   c("downstream_pre_cx_timeout"),
		filterError:    c("downstream_listener_filter_error"),
		tlsError:       c("ssl.connection_error"),
		cxActive:       s.Gauge("listener."+prefix+".downstream_cx_active", "envoy_listener_downstream_cx_active", tag),
		tlsFound:       s.Counter("tls_inspector.tls_found", "envoy_tls_inspector_tls_found"),
		tlsNotFound:    s.Counter("tls_inspector.tls_not_found", "envoy_tls_inspector_tls_not_found"),
		sniFound:       s.Counter("tls_inspector.sni_found", "envoy_tls_inspector_sni_found"),
		alpnFound:      s.Counter("tls_inspector.alpn_found", "envoy_tls_inspector_alpn_found"),
		helloTooLarge:  s.Counter("tls_inspector.client_hello_too_large", "envoy_tls_inspector_client_hello_too_large"),
		http10Found:    s.Counter("http_inspector.http10_found", "envoy_http_inspector_http10_found"),
		http11Found:    s.Counter("http_inspector.http11_found", "envoy_http_inspector_http11_found"),
		http2Found:     s.Counter("http_inspector.http2_found", "envoy_http_inspector_http2_found"),
		httpNotFound:   s.Counter("http_inspector.http_not_found", "envoy_http_inspector_http_not_found"),
	}
}

// tlsConfig compiles a chain's DownstreamTlsContext.
func tlsConfig(ctx *tlsv3.DownstreamTlsContext, env Env, path string) (*tls.Config, error) {
	cfg, err := tlsx.Server(ctx, env)
	if err != nil {
		return nil, fmt.Errorf("%s.transport_socket: %w", path, err)
	}
	return cfg, nil
}
