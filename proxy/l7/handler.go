package l7

import (
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strait-mesh/strait/proxy/accesslog"
	"github.com/strait-mesh/strait/proxy/authz"
	"github.com/strait-mesh/strait/proxy/balance"
	"github.com/strait-mesh/strait/proxy/httppath"
	"github.com/strait-mesh/strait/proxy/route"
	"github.com/strait-mesh/strait/proxy/stats"
	"github.com/strait-mesh/strait/proxy/telemetry"
	"github.com/strait-mesh/strait/proxy/tracing"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
	uuidv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/request_id/uuid/v3"
)

// Upstream is a cluster requests can be sent to. *upstream.Cluster satisfies it. RoundTrip must
// stream the request body and return the response with its body unread; a failure before a
// response is an error (ideally an *upstream.Error carrying a response flag).
//
// AcquireRetry and ReleaseRetry are the cluster's max_retries circuit breaker and retry budget:
// the router takes a slot before each retry (false: the breaker is open and the failure stands)
// and gives it back when that retry's attempt has returned.
type Upstream interface {
	RoundTrip(req *http.Request, lb balance.Context) (*http.Response, error)
	AcquireRetry() bool
	ReleaseRetry()
}

// Env is what the connection manager needs from the proxy runtime. Implementations answer from
// the current immutable runtime config and must be safe for concurrent use.
type Env interface {
	// Route returns the RDS route table with this name, or nil if it is not (yet) known.
	Route(name string) *route.Table
	// Cluster returns the cluster with this name, or nil if it does not exist.
	Cluster(name string) Upstream
}

// Snapshot identifies one generation of a SnapshotEnv's answers. Its address is the identity:
// a new generation gets a new Snapshot.
type Snapshot struct{ _ byte } // not zero-sized: each one has an address of its own

// SnapshotEnv is an Env that tells when its answers may change: Route and Cluster give the same
// answer for a name as long as Snapshot returns the same *Snapshot, and a Snapshot that was
// replaced is never returned again. The connection manager then keeps the route table and each
// route target's cluster it found for the current Snapshot instead of asking for them on every
// request (envcache.go).
type SnapshotEnv interface {
	Env
	// Snapshot returns the current generation, never nil. It is called on every request.
	Snapshot() *Snapshot
}

// ConnInfo describes one accepted downstream connection.
type ConnInfo struct {
	// OriginalDst is the destination the client connected to (SO_ORIGINAL_DST or local address).
	OriginalDst netip.AddrPort
	// Source is the client's address.
	Source netip.AddrPort
	// TLS reports whether the connection was TLS-terminated by the listener.
	TLS bool
	// SNI is the TLS server name, if any.
	SNI string
	// ALPN is the negotiated application protocol ("h2", "http/1.1" or "").
	ALPN string
	// PeerCertificates is the verified client certificate chain (leaf first), if any.
	PeerCertificates []*x509.Certificate
	// LocalCertificate is the proxy's own certificate on this connection, if any (for the By
	// element of x-forwarded-client-cert).
	LocalCertificate *x509.Certificate

	authzPeer *authz.Peer // the TLS peer as RBAC sees it, built once per connection
}

// Options are the process-level inputs of New.
type Options struct {
	// Stats receives the connection manager and per-cluster statistics. Required.
	Stats *stats.Store
	// Logger receives rare diagnostics; nil discards them.
	Logger *slog.Logger
	// OnComplete, if set, is called once per finished request with its RequestInfo (for access
	// logs and telemetry). It must not retain the pointer after returning.
	OnComplete func(*RequestInfo)
	// ServerName overrides the default server header value ("envoy") when the config does not
	// set server_name.
	ServerName string
	// Overload is the overload manager's state, read on every request (overload.go); nil: none.
	Overload Overload
	// AccessLogFiles are the files the connection manager's access_log writes to (nil:
	// accesslog.Shared, the process's files).
	AccessLogFiles *accesslog.Files
	// Telemetry, if set, records Istio's standard metrics of each finished request
	// (telemetry.go); nil: none.
	Telemetry *telemetry.Recorder
	// Tracing is the node's identity in spans and the exporters' tuning (tracing.go).
	Tracing TracingOptions
	// TrafficDirection is the traffic_direction of the listener serving the connection
	// manager: OUTBOUND makes its spans Envoy's egress spans. UNSPECIFIED falls back to the
	// stat_prefix Istio gives (outbound_...: egress), else ingress as in Envoy.
	TrafficDirection corev3.TrafficDirection
	// DemandTimeout bounds how long a request is held while the proxy demands its virtual host
	// or cluster, when the Env turns on-demand configuration on (ondemand.go); 0:
	// DefaultDemandTimeout.
	DemandTimeout time.Duration
}

// Handler is a compiled HttpConnectionManager.
type Handler struct {
	env   Env
	snaps SnapshotEnv // env when it is one, else nil (envcache.go)
	// tcache is the RDS route table found for a Snapshot (routeTable).
	tcache atomic.Pointer[tableEntry]
	// hostReport: the router learns the upstream host of every request, for the access log,
	// istio.stats dimensions or the source reporter's metrics (needsHostReport,
	// telemetryNeedsHost), found once by New.
	hostReport bool
	opts       Options
	log        *slog.Logger

	statPrefix string
	codec      hcmv3.HttpConnectionManager_CodecType
	rdsName    string
	table      *route.Table // inline route_config
	od         onDemand     // on-demand configuration (ondemand.go); off unless the Env gives a Demander

	useRemoteAddress   bool
	xffTrustedHops     int
	skipXFFAppend      bool
	internalCIDRs      []netip.Prefix // internal_address_config.cidr_ranges; empty: nothing is internal
	generateRequestID  bool
	preserveExternalID bool
	alwaysSetID        bool
	fcc                hcmv3.HttpConnectionManager_ForwardClientCertDetails
	fccDetails         *hcmv3.HttpConnectionManager_SetCurrentClientCertDetails
	serverName         string
	serverHdr          []string
	serverTransform    hcmv3.HttpConnectionManager_ServerHeaderTransformation
	maxHeaderBytes     int
	maxHeaders         int
	underscores        corev3.HttpProtocolOptions_HeadersWithUnderscoresAction
	acceptHTTP10       bool
	streamIdle         time.Duration
	connIdle           time.Duration
	headersTimeout     time.Duration
	requestTimeout     time.Duration // request_timeout; 0: none (timeouts_stream.go)
	maxConnDuration    time.Duration // common_http_protocol_options.max_connection_duration; 0: none
	drainTimeout       time.Duration // drain period after max_connection_duration (drainPeriod)
	maxStreamDuration  time.Duration
	tst                *timeoutStats
	upgrades           map[string]bool
	pathOptions        httppath.Options // normalize_path, merge_slashes, escaped slashes
	escapedSlashes     hcmv3.HttpConnectionManager_PathWithEscapedSlashesAction
	stripAnyPort       bool
	stripMatchingPort  bool
	stripTrailingDot   bool
	guardSt            *guardStats
	h2MaxStreams       uint32
	h2StreamWindow     uint32
	h2ConnWindow       uint32
	suppressEnvoyHdrs  bool

	pipeline   StreamHandler
	accessLog  *accesslog.Logger      // access_log; nil: none (accesslog.go)
	istioStats *telemetry.StatsConfig // the istio.stats filter's configuration; nil: none (istiostats.go)
	tracer     *tracing.Tracer        // tracing; nil: none (tracing.go)
	requestID  *uuidv3.UuidRequestIdConfig
	st         *hcmStats
	clusters   sync.Map // cluster name -> *clusterStats
	routes     sync.Map // virtual host + "\x00" + route stat_prefix -> *routeStats

	mirrorSem chan struct{}
	overload  overloadState // overload.go

	srvOnce sync.Once
	srv     *http.Server
	ln      *chanListener
	conns   sync.Map // net.Conn -> *connState
	// draining is set by Drain and Close: HTTP/1.1 connections of proxy/h1 close after their
	// current response.
	draining atomic.Bool
}

var hcmFields = []string{"codec_type", "stat_prefix", "rds", "route_config", "http_filters",
	"common_http_protocol_options", "http_protocol_options", "http2_protocol_options", "server_name",
	"server_header_transformation", "max_request_headers_kb", "stream_idle_timeout",
	"request_headers_timeout", "request_timeout", "use_remote_address", "xff_num_trusted_hops", "internal_address_config",
	"skip_xff_append", "generate_request_id", "preserve_external_request_id",
	"always_set_request_id_in_response", "forward_client_cert_details", "set_current_client_cert_details",
	"upgrade_configs", "normalize_path", "access_log", "merge_slashes", "path_with_escaped_slashes_action",
	"request_id_extension", "strip_matching_host_port", "strip_any_host_port", "strip_trailing_host_dot",
	"tracing"}

// New compiles hcm. Anything the proxy does not implement (fields, filters not marked
// is_optional, typed configs) is an error naming it, so the listener update is NACKed.
func New(hcm *hcmv3.HttpConnectionManager, env Env, opts Options) (*Handler, error) {
	if hcm == nil {
		return nil, fmt.Errorf("compiling http_connection_manager: nil config")
	}
	if opts.Stats == nil {
		opts.Stats = stats.NewStore()
	}
	if err := checkFields("http_connection_manager", hcm, hcmFields...); err != nil {
		return nil, err
	}
	snaps, _ := env.(SnapshotEnv)
	h := &Handler{
		env:                env,
		snaps:              snaps,
		opts:               opts,
		log:                opts.Logger,
		statPrefix:         hcm.GetStatPrefix(),
		codec:              hcm.GetCodecType(),
		useRemoteAddress:   hcm.GetUseRemoteAddress().GetValue(),
		xffTrustedHops:     int(hcm.GetXffNumTrustedHops()),
		skipXFFAppend:      hcm.GetSkipXffAppend(),
		generateRequestID:  hcm.GetGenerateRequestId() == nil || hcm.GetGenerateRequestId().GetValue(),
		preserveExternalID: hcm.GetPreserveExternalRequestId(),
		alwaysSetID:        hcm.GetAlwaysSetRequestIdInResponse(),
		fcc:                hcm.GetForwardClientCertDetails(),
		fccDetails:         hcm.GetSetCurrentClientCertDetails(),
		serverName:         hcm.GetServerName(),
		serverTransform:    hcm.GetServerHeaderTransformation(),
		maxHeaderBytes:     60 << 10,
		maxHeaders:         100,
		streamIdle:         5 * time.Minute,
		connIdle:           time.Hour,
		headersTimeout:     defaultHeadersTimeout,
		h2MaxStreams:       defaultH2MaxStreams,
		h2StreamWindow:     defaultH2StreamWindow,
		h2ConnWindow:       defaultH2ConnWindow,
		pathOptions:        httppath.OptionsFor(hcm),
		escapedSlashes:     hcm.GetPathWithEscapedSlashesAction(),
		stripAnyPort:       hcm.GetStripAnyHostPort(),
		stripMatchingPort:  hcm.GetStripMatchingHostPort(),
		stripTrailingDot:   hcm.GetStripTrailingHostDot(),
		upgrades:           map[string]bool{},
		mirrorSem:          make(chan struct{}, maxMirrorsInFlight),
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.statPrefix == "" {
		return nil, fmt.Errorf("http_connection_manager.stat_prefix: empty")
	}
	h.guardSt = newGuardStats(opts.Stats, h.statPrefix)
	if h.serverName == "" {
		h.serverName = opts.ServerName
		if h.serverName == "" {
			h.serverName = "envoy"
		}
	}
	h.serverHdr = []string{h.serverName}
	if err := h.compileRouteSpecifier(hcm); err != nil {
		return nil, err
	}
	if err := h.compileProtocolOptions(hcm); err != nil {
		return nil, err
	}
	if err := h.compileAddressing(hcm); err != nil {
		return nil, err
	}
	h.st = newHCMStats(opts.Stats, h.statPrefix)
	h.initOnDemand()
	if err := h.compileAccessLog(hcm); err != nil {
		return nil, err
	}
	if err := h.compileTracing(hcm); err != nil {
		return nil, err
	}
	p, err := h.buildPipeline(hcm.GetHttpFilters())
	if err != nil {
		return nil, err
	}
	// The connection manager's stream stage (timeouts_stream.go) runs in front of the filters.
	h.pipeline = h.streamStage(p)
	// Known once the access log and the filters (istio.stats) are compiled.
	h.hostReport = h.needsHostReport() || h.telemetryNeedsHost()
	return h, nil
}

func (h *Handler) compileRouteSpecifier(hcm *hcmv3.HttpConnectionManager) error {
	switch rs := hcm.GetRouteSpecifier().(type) {
	case *hcmv3.HttpConnectionManager_Rds:
		// config_source says where RDS comes from; strait-proxy always uses its ADS stream.
		if err := checkFields("http_connection_manager.rds", rs.Rds, "config_source", "route_config_name"); err != nil {
			return err
		}
		if rs.Rds.GetRouteConfigName() == "" {
			return fmt.Errorf("http_connection_manager.rds.route_config_name: empty")
		}
		h.rdsName = rs.Rds.GetRouteConfigName()
	case *hcmv3.HttpConnectionManager_RouteConfig:
		t, err := route.Compile(rs.RouteConfig)
		if err != nil {
			return fmt.Errorf("http_connection_manager.route_config: %w", err)
		}
		h.table = t
	default:
		return &route.UnsupportedError{Field: "http_connection_manager.route_specifier", Detail: "only rds and route_config are supported"}
	}
	return nil
}

func (h *Handler) compileProtocolOptions(hcm *hcmv3.HttpConnectionManager) error {
	if kb := hcm.GetMaxRequestHeadersKb(); kb != nil {
		if kb.GetValue() == 0 || kb.GetValue() > 8192 {
			return fmt.Errorf("http_connection_manager.max_request_headers_kb: %d out of range [1, 8192]", kb.GetValue())
		}
		h.maxHeaderBytes = int(kb.GetValue()) << 10
	}
	if d := hcm.GetStreamIdleTimeout(); d != nil {
		h.streamIdle = d.AsDuration()
	}
	if d := hcm.GetRequestHeadersTimeout(); d != nil {
		h.headersTimeout = d.AsDuration()
	}
	// request_timeout: the whole request must arrive within it (timeouts_stream.go); unset or
	// 0 disables it, as in Envoy.
	h.requestTimeout = hcm.GetRequestTimeout().AsDuration()
	h.drainTimeout = drainPeriod
	h.tst = newTimeoutStats(h.opts.Stats, h.statPrefix)
	if c := hcm.GetCommonHttpProtocolOptions(); c != nil {
		if err := checkFields("http_connection_manager.common_http_protocol_options", c, "idle_timeout",
			"max_headers_count", "max_stream_duration", "max_connection_duration",
			"headers_with_underscores_action"); err != nil {
			return err
		}
		if c.GetIdleTimeout() != nil {
			h.connIdle = c.GetIdleTimeout().AsDuration()
		}
		// max_connection_duration: connections are drained and closed that long after they
		// were accepted (timeouts.go); unset or 0: never.
		h.maxConnDuration = c.GetMaxConnectionDuration().AsDuration()
		if c.GetMaxHeadersCount() != nil {
			h.maxHeaders = int(c.GetMaxHeadersCount().GetValue())
		}
		h.maxStreamDuration = c.GetMaxStreamDuration().AsDuration()
		h.underscores = c.GetHeadersWithUnderscoresAction()
	}
	if o := hcm.GetHttpProtocolOptions(); o != nil {
		if err := checkFields("http_connection_manager.http_protocol_options", o, "accept_http_10"); err != nil {
			return err
		}
		h.acceptHTTP10 = o.GetAcceptHttp_10()
	}
	if o := hcm.GetHttp2ProtocolOptions(); o != nil {
		if err := checkFields("http_connection_manager.http2_protocol_options", o, "max_concurrent_streams",
			"initial_stream_window_size", "initial_connection_window_size"); err != nil {
			return err
		}
		if v := o.GetMaxConcurrentStreams(); v != nil {
			h.h2MaxStreams = v.GetValue()
		}
		if v := o.GetInitialStreamWindowSize(); v != nil {
			h.h2StreamWindow = v.GetValue()
		}
		if v := o.GetInitialConnectionWindowSize(); v != nil {
			h.h2ConnWindow = v.GetValue()
		}
	}
	for i, u := range hcm.GetUpgradeConfigs() {
		f := fmt.Sprintf("http_connection_manager.upgrade_configs[%d]", i)
		if err := checkFields(f, u, "upgrade_type", "enabled"); err != nil {
			return err
		}
		typ := strings.ToLower(u.GetUpgradeType())
		if typ == "connect" {
			return &route.UnsupportedError{Field: f + ".upgrade_type", Detail: "CONNECT"}
		}
		h.upgrades[typ] = u.GetEnabled() == nil || u.GetEnabled().GetValue()
	}
	switch h.escapedSlashes {
	case hcmv3.HttpConnectionManager_IMPLEMENTATION_SPECIFIC_DEFAULT, hcmv3.HttpConnectionManager_KEEP_UNCHANGED,
		hcmv3.HttpConnectionManager_REJECT_REQUEST, hcmv3.HttpConnectionManager_UNESCAPE_AND_FORWARD:
	default:
		return &route.UnsupportedError{Field: "http_connection_manager.path_with_escaped_slashes_action", Detail: h.escapedSlashes.String()}
	}
	if ext := hcm.GetRequestIdExtension(); ext != nil {
		// The UUID extension is the built-in behaviour; its options (pack_trace_reason,
		// use_request_id_for_trace_sampling) steer tracing's sampling (tracing.go).
		var u uuidv3.UuidRequestIdConfig
		if tc := ext.GetTypedConfig(); tc == nil || tc.UnmarshalTo(&u) != nil {
			return &route.UnsupportedError{Field: "http_connection_manager.request_id_extension", Detail: "only UuidRequestIdConfig"}
		}
		if err := checkFields("http_connection_manager.request_id_extension.typed_config", &u,
			"pack_trace_reason", "use_request_id_for_trace_sampling"); err != nil {
			return err
		}
		h.requestID = &u
	}
	return nil
}

// compileAddressing compiles what decides whether a request is internal (see edge.go):
// internal_address_config's cidr_ranges and unix_sockets. Without internal_address_config no
// address is internal, as in current Envoy (the RFC 1918 / loopback default is gone); an
// internal_address_config without cidr_ranges makes no IP address internal either.
func (h *Handler) compileAddressing(hcm *hcmv3.HttpConnectionManager) error {
	if ic := hcm.GetInternalAddressConfig(); ic != nil {
		for i, c := range ic.GetCidrRanges() {
			a, err := netip.ParseAddr(c.GetAddressPrefix())
			if err != nil {
				return fmt.Errorf("http_connection_manager.internal_address_config.cidr_ranges[%d]: %w", i, err)
			}
			p, err := a.Prefix(int(c.GetPrefixLen().GetValue()))
			if err != nil {
				return fmt.Errorf("http_connection_manager.internal_address_config.cidr_ranges[%d]: %w", i, err)
			}
			h.internalCIDRs = append(h.internalCIDRs, p)
		}
		// unix_sockets needs no state: strait-proxy's listeners are TCP only, so no downstream
		// is a unix socket and the option can make no request internal.
	}
	if d := h.fccDetails; d != nil {
		if d.GetCert() || d.GetChain() || d.GetIssuer() || d.GetFormat() != hcmv3.HttpConnectionManager_TEXT {
			return &route.UnsupportedError{Field: "http_connection_manager.set_current_client_cert_details",
				Detail: "only subject, uri and dns in TEXT format"}
		}
	}
	return nil
}

// routeTable returns the table requests are matched against right now.
func (h *Handler) routeTable() *route.Table {
	if h.table != nil {
		return h.table
	}
	if h.snaps != nil {
		return h.snapshotTable()
	}
	return h.env.Route(h.rdsName)
}

func (h *Handler) isInternal(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range h.internalCIDRs {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
