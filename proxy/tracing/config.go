package tracing

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strait-mesh/strait/proxy/accesslog"
	"github.com/strait-mesh/strait/proxy/stats"
	"github.com/strait-mesh/strait/proxy/xdsfield"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	tracev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/trace/v3"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
	uuidv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/request_id/uuid/v3"
	tagv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/tracing/v3"
)

// Provider names and type URLs strait-proxy implements.
const (
	OpenTelemetryName = "envoy.tracers.opentelemetry"
	ZipkinName        = "envoy.tracers.zipkin"
	typeOpenTelemetry = "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig"
	typeZipkin        = "type.googleapis.com/envoy.config.trace.v3.ZipkinConfig"
)

// Defaults of the exporters: Envoy's runtime defaults tracing.<tracer>.min_flush_spans (5) and
// flush_interval_ms (5 s), the OTLP request timeout, and strait-proxy's queue bound.
const (
	DefaultBatchSpans    = 5
	DefaultFlushInterval = 5 * time.Second
	DefaultTimeout       = 5 * time.Second
	DefaultQueueSpans    = 4096
	defaultMaxPathTag    = 256
)

// RoundTripper sends one request to a cluster of the proxy and returns the response with its
// body unread.
type RoundTripper interface {
	RoundTrip(req *http.Request) (*http.Response, error)
}

// Deps are what a tracer needs from the proxy.
type Deps struct {
	// Cluster returns a RoundTripper for the named cluster of the current runtime, nil when
	// the cluster is unknown. The collector is reached through it (endpoints, pools, TLS).
	Cluster func(name string) RoundTripper
	// Stats receives the tracer's statistics (required).
	Stats *stats.Store
	// StatPrefix is the connection manager's stat_prefix (http.<prefix>.tracing.*).
	StatPrefix string
	// Egress says the connection manager serves an OUTBOUND listener (Envoy's operation name
	// egress); otherwise it is ingress.
	Egress bool
	// NodeID and Zone are the node_id and zone tags of every span.
	NodeID, Zone string
	// LocalCluster is the node's service cluster, the Zipkin spans' service name.
	LocalCluster string
	// LocalAddress is the node's IP, the Zipkin spans' local endpoint.
	LocalAddress string
	// Batch, FlushInterval and QueueSpans tune the exporter (0: the defaults above).
	Batch         int
	FlushInterval time.Duration
	QueueSpans    int
	// Logger receives export failures at debug level; nil discards them.
	Logger *slog.Logger
}

// Kind is a span's kind.
type Kind uint8

// Span kinds (OpenTelemetry's; Zipkin has the same two).
const (
	KindServer Kind = iota + 1
	KindClient
)

// Tracer is a compiled HttpConnectionManager.Tracing with its provider. It is immutable and
// safe for concurrent use; its exporter sends spans from a goroutine of its own that runs only
// while spans are queued.
type Tracer struct {
	random, client, overall  ratio
	packReason, useRequestID bool
	maxPathTag               int
	spawnUpstream            bool
	egress                   bool
	nodeID, zone             string
	tags                     []customTag
	formatTags               bool // a tag of the value kind is configured
	provider                 providerKind
	zipkin128, zipkinShared  bool
	exp                      *exporter // nil without a provider
	st                       *tracerStats
}

type providerKind uint8

const (
	providerNone providerKind = iota
	providerOTel
	providerZipkin
)

var tracingFields = []string{"client_sampling", "random_sampling", "overall_sampling", "verbose",
	"max_path_tag_length", "custom_tags", "provider", "spawn_upstream_span"}

// Compile compiles the connection manager's tracing (field names it in errors) and the
// request_id_extension's tracing options rid (nil: the UUID extension's defaults). Fields and
// providers strait-proxy does not implement are *xdsfield.UnsupportedError.
func Compile(field string, cfg *hcmv3.HttpConnectionManager_Tracing, rid *uuidv3.UuidRequestIdConfig, d Deps) (*Tracer, error) {
	if err := xdsfield.Check(cfg, field, tracingFields...); err != nil {
		return nil, err
	}
	if cfg.GetVerbose() {
		// Envoy's verbose adds timing events (first upstream byte sent...) to the span; the
		// connection manager does not record those times.
		return nil, xdsfield.Unsupported(field+".verbose", "not supported yet")
	}
	if d.Stats == nil {
		d.Stats = stats.NewStore()
	}
	t := &Tracer{
		random:        percent(cfg.GetRandomSampling().GetValue(), cfg.GetRandomSampling() != nil, ratioDenominator),
		client:        percent(cfg.GetClientSampling().GetValue(), cfg.GetClientSampling() != nil, ratioDenominator),
		overall:       percent(cfg.GetOverallSampling().GetValue(), cfg.GetOverallSampling() != nil, ratioDenominator),
		packReason:    rid.GetPackTraceReason() == nil || rid.GetPackTraceReason().GetValue(),
		useRequestID:  rid.GetUseRequestIdForTraceSampling() == nil || rid.GetUseRequestIdForTraceSampling().GetValue(),
		maxPathTag:    defaultMaxPathTag,
		spawnUpstream: cfg.GetSpawnUpstreamSpan().GetValue(),
		egress:        d.Egress,
		nodeID:        d.NodeID,
		zone:          d.Zone,
	}
	if v := cfg.GetMaxPathTagLength(); v != nil {
		t.maxPathTag = int(v.GetValue())
	}
	for i, ct := range cfg.GetCustomTags() {
		tag, err := compileTag(fmt.Sprintf("%s.custom_tags[%d]", field, i), ct)
		if err != nil {
			return nil, err
		}
		t.tags = append(t.tags, tag)
		t.formatTags = t.formatTags || tag.format != nil
	}
	t.st = newTracerStats(d.Stats, d.StatPrefix)
	if p := cfg.GetProvider(); p != nil {
		if err := t.compileProvider(field+".provider", p, d); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func (t *Tracer) compileProvider(field string, p *tracev3.Tracing_Http, d Deps) error {
	if err := xdsfield.Check(p, field, "name", "typed_config"); err != nil {
		return err
	}
	tc := p.GetTypedConfig()
	if tc == nil {
		return fmt.Errorf("%s.typed_config: missing", field)
	}
	switch tc.GetTypeUrl() {
	case typeOpenTelemetry:
		var c tracev3.OpenTelemetryConfig
		if err := tc.UnmarshalTo(&c); err != nil {
			return fmt.Errorf("decoding %s.typed_config: %w", field, err)
		}
		return t.compileOTel(field+".typed_config", &c, d)
	case typeZipkin:
		var c tracev3.ZipkinConfig
		if err := tc.UnmarshalTo(&c); err != nil {
			return fmt.Errorf("decoding %s.typed_config: %w", field, err)
		}
		return t.compileZipkin(field+".typed_config", &c, d)
	}
	return xdsfield.Unsupported(field+".typed_config", "tracer %q (%s): only %s and %s", p.GetName(),
		tc.GetTypeUrl(), OpenTelemetryName, ZipkinName)
}

func (t *Tracer) compileOTel(field string, c *tracev3.OpenTelemetryConfig, d Deps) error {
	if err := xdsfield.Check(c, field, "grpc_service", "http_service", "service_name"); err != nil {
		return err
	}
	name := c.GetServiceName()
	if name == "" {
		name = "unknown_service:envoy" // Envoy's default service.name
	}
	var send sendFunc
	switch {
	case c.GetGrpcService() != nil && c.GetHttpService() != nil:
		return fmt.Errorf("%s: grpc_service and http_service are exclusive", field)
	case c.GetGrpcService() != nil:
		g, err := compileGRPC(field+".grpc_service", c.GetGrpcService())
		if err != nil {
			return err
		}
		send = g.sender(d.Cluster, name)
	case c.GetHttpService() != nil:
		h, err := compileHTTPService(field+".http_service", c.GetHttpService())
		if err != nil {
			return err
		}
		send = h.otlpSender(d.Cluster, name)
	default:
		// Envoy accepts a tracer without an exporter and drops its spans.
		send = func(context.Context, []*Span) error { return nil }
	}
	t.provider = providerOTel
	t.exp = newExporter(send, newExporterStats(d.Stats, "tracing.opentelemetry."), d)
	return nil
}

func (t *Tracer) compileZipkin(field string, c *tracev3.ZipkinConfig, d Deps) error {
	if err := xdsfield.Check(c, field, "collector_cluster", "collector_endpoint", "trace_id_128bit",
		"shared_span_context", "collector_endpoint_version", "collector_hostname"); err != nil {
		return err
	}
	// The zero value (once v1 JSON) is HTTP_JSON in current Envoy, its default.
	if v := c.GetCollectorEndpointVersion(); v != tracev3.ZipkinConfig_HTTP_JSON && v != tracev3.ZipkinConfig_DEPRECATED_AND_UNAVAILABLE_DO_NOT_USE {
		return xdsfield.Unsupported(field+".collector_endpoint_version", "%s: not supported yet, only HTTP_JSON", v)
	}
	if c.GetCollectorCluster() == "" {
		return fmt.Errorf("%s.collector_cluster: empty", field)
	}
	ep := c.GetCollectorEndpoint()
	if ep == "" || ep[0] != '/' || strings.ContainsAny(ep, " \t\r\n\x00") {
		return fmt.Errorf("%s.collector_endpoint: %q is not a path", field, ep)
	}
	host := c.GetCollectorHostname()
	if host == "" {
		host = c.GetCollectorCluster()
	}
	if strings.ContainsAny(host, " \t\r\n\x00/") {
		return fmt.Errorf("%s.collector_hostname: %q is not a host", field, host)
	}
	t.provider = providerZipkin
	t.zipkin128 = c.GetTraceId_128Bit()
	t.zipkinShared = c.GetSharedSpanContext() == nil || c.GetSharedSpanContext().GetValue()
	z := &zipkinSender{cluster: c.GetCollectorCluster(), path: ep, host: host,
		service: d.LocalCluster, ip: d.LocalAddress}
	st := newExporterStats(d.Stats, "tracing.zipkin.")
	z.st = st
	t.exp = newExporter(z.send(d.Cluster), st, d)
	return nil
}

// grpcTarget is a compiled GrpcService with an envoy_grpc target.
type grpcTarget struct {
	cluster, authority string
	timeout            time.Duration
	metadata           http.Header
}

func compileGRPC(field string, gs *corev3.GrpcService) (*grpcTarget, error) {
	if err := xdsfield.Check(gs, field, "envoy_grpc", "timeout", "initial_metadata"); err != nil {
		return nil, err
	}
	eg := gs.GetEnvoyGrpc()
	if eg == nil {
		return nil, fmt.Errorf("%s.envoy_grpc: missing", field)
	}
	if err := xdsfield.Check(eg, field+".envoy_grpc", "cluster_name", "authority"); err != nil {
		return nil, err
	}
	g := &grpcTarget{cluster: eg.GetClusterName(), authority: eg.GetAuthority(), timeout: DefaultTimeout}
	if g.cluster == "" {
		return nil, fmt.Errorf("%s.envoy_grpc.cluster_name: empty", field)
	}
	if g.authority == "" {
		g.authority = g.cluster
	}
	if strings.ContainsAny(g.authority, " \t\r\n\x00/") {
		return nil, fmt.Errorf("%s.envoy_grpc.authority: %q is not an authority", field, g.authority)
	}
	if to := gs.GetTimeout(); to != nil {
		if err := to.CheckValid(); err != nil || to.AsDuration() < 0 {
			return nil, fmt.Errorf("%s.timeout: invalid", field)
		}
		if to.AsDuration() > 0 {
			g.timeout = to.AsDuration()
		}
	}
	var err error
	if g.metadata, err = compileHeaderValues(field+".initial_metadata", gs.GetInitialMetadata()); err != nil {
		return nil, err
	}
	return g, nil
}

// httpTarget is a compiled HttpService.
type httpTarget struct {
	cluster, host, path string
	timeout             time.Duration
	headers             http.Header
}

func compileHTTPService(field string, hs *corev3.HttpService) (*httpTarget, error) {
	if err := xdsfield.Check(hs, field, "http_uri", "request_headers_to_add"); err != nil {
		return nil, err
	}
	hu := hs.GetHttpUri()
	if err := xdsfield.Check(hu, field+".http_uri", "uri", "cluster", "timeout"); err != nil {
		return nil, err
	}
	h := &httpTarget{cluster: hu.GetCluster(), timeout: DefaultTimeout}
	if h.cluster == "" {
		return nil, fmt.Errorf("%s.http_uri.cluster: empty", field)
	}
	u, err := url.Parse(hu.GetUri())
	if err != nil || u.Host == "" && !strings.HasPrefix(hu.GetUri(), "/") {
		return nil, fmt.Errorf("%s.http_uri.uri: %q is not a URI", field, hu.GetUri())
	}
	h.host, h.path = u.Host, u.EscapedPath()
	if h.host == "" {
		h.host = h.cluster
	}
	if h.path == "" || h.path == "/" {
		h.path = "/v1/traces" // OTLP/HTTP's default path
	}
	if u.RawQuery != "" {
		h.path += "?" + u.RawQuery
	}
	if to := hu.GetTimeout(); to != nil {
		if err := to.CheckValid(); err != nil || to.AsDuration() < 0 {
			return nil, fmt.Errorf("%s.http_uri.timeout: invalid", field)
		}
		if to.AsDuration() > 0 {
			h.timeout = to.AsDuration()
		}
	}
	h.headers = http.Header{}
	for i, o := range hs.GetRequestHeadersToAdd() {
		f := fmt.Sprintf("%s.request_headers_to_add[%d]", field, i)
		if err := xdsfield.Check(o, f, "header", "append", "append_action"); err != nil {
			return nil, err
		}
		hv, err := compileHeaderValues(f, []*corev3.HeaderValue{o.GetHeader()})
		if err != nil {
			return nil, err
		}
		for k, v := range hv {
			if o.GetAppendAction() == corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD && (o.GetAppend() == nil || o.GetAppend().GetValue()) {
				h.headers[k] = append(h.headers[k], v...)
			} else {
				h.headers[k] = v
			}
		}
	}
	return h, nil
}

func compileHeaderValues(field string, hvs []*corev3.HeaderValue) (http.Header, error) {
	out := http.Header{}
	for i, hv := range hvs {
		f := fmt.Sprintf("%s[%d]", field, i)
		if err := xdsfield.Check(hv, f, "key", "value"); err != nil {
			return nil, err
		}
		k := hv.GetKey()
		if k == "" || strings.HasPrefix(k, ":") || strings.ContainsAny(k, " \t\r\n\x00:") {
			return nil, fmt.Errorf("%s.key: %q is not a header name", f, k)
		}
		if strings.ContainsAny(hv.GetValue(), "\r\n\x00") {
			return nil, fmt.Errorf("%s.value: contains CR, LF or NUL", f)
		}
		ck := http.CanonicalHeaderKey(k)
		out[ck] = append(out[ck], hv.GetValue())
	}
	return out, nil
}

// customTag is a compiled custom_tags entry.
type customTag struct {
	name string
	// literal value (literal, environment); header (request_header); mdNS and mdPath
	// (metadata of kind request); def is the default for header and metadata.
	literal      string
	hasLiteral   bool
	header, def  string
	mdNS         string
	mdPath       []string
	fromMetadata bool
	// format is a value tag's substitution format (the access log's command operators),
	// rendered from the finished request's record (Span.FormatTags).
	format *accesslog.Format
}

func compileTag(field string, ct *tagv3.CustomTag) (customTag, error) {
	if err := xdsfield.Check(ct, field, "tag", "literal", "environment", "request_header", "metadata", "value"); err != nil {
		return customTag{}, err
	}
	tag := customTag{name: ct.GetTag()}
	if tag.name == "" {
		return tag, fmt.Errorf("%s.tag: empty", field)
	}
	switch ty := ct.GetType().(type) {
	case *tagv3.CustomTag_Literal_:
		if err := xdsfield.Check(ty.Literal, field+".literal", "value"); err != nil {
			return tag, err
		}
		tag.literal, tag.hasLiteral = ty.Literal.GetValue(), true
	case *tagv3.CustomTag_Environment_:
		if err := xdsfield.Check(ty.Environment, field+".environment", "name", "default_value"); err != nil {
			return tag, err
		}
		// Envoy reads the variable once, when the configuration is loaded.
		v, ok := os.LookupEnv(ty.Environment.GetName())
		if !ok || v == "" {
			v = ty.Environment.GetDefaultValue()
		}
		if v != "" {
			tag.literal, tag.hasLiteral = v, true
		}
	case *tagv3.CustomTag_RequestHeader:
		if err := xdsfield.Check(ty.RequestHeader, field+".request_header", "name", "default_value"); err != nil {
			return tag, err
		}
		if ty.RequestHeader.GetName() == "" {
			return tag, fmt.Errorf("%s.request_header.name: empty", field)
		}
		tag.header, tag.def = http.CanonicalHeaderKey(ty.RequestHeader.GetName()), ty.RequestHeader.GetDefaultValue()
	case *tagv3.CustomTag_Metadata_:
		m := ty.Metadata
		if err := xdsfield.Check(m, field+".metadata", "kind", "metadata_key", "default_value"); err != nil {
			return tag, err
		}
		if m.GetKind().GetRequest() == nil {
			return tag, xdsfield.Unsupported(field+".metadata.kind", "only request (dynamic) metadata")
		}
		tag.fromMetadata, tag.def = true, m.GetDefaultValue()
		tag.mdNS = m.GetMetadataKey().GetKey()
		if tag.mdNS == "" {
			return tag, fmt.Errorf("%s.metadata.metadata_key.key: empty", field)
		}
		for j, p := range m.GetMetadataKey().GetPath() {
			if p.GetKey() == "" {
				return tag, fmt.Errorf("%s.metadata.metadata_key.path[%d].key: empty", field, j)
			}
			tag.mdPath = append(tag.mdPath, p.GetKey())
		}
	case *tagv3.CustomTag_Value:
		// Envoy: the access log's format, with unknown (missing) values as the empty string
		// instead of "-"; an empty result sets no tag.
		f, err := accesslog.CompileText(ty.Value, true)
		if err != nil {
			return tag, fmt.Errorf("%s.value: %w", field, err)
		}
		tag.format = f
	default:
		return tag, fmt.Errorf("%s: one of literal, environment, request_header, metadata or value is required", field)
	}
	return tag, nil
}

// value returns the tag's value for a request, ok false when it has none. Value tags are
// rendered by Span.FormatTags instead.
func (c *customTag) value(h Headers, md func(ns string) *structpb.Struct) (string, bool) {
	switch {
	case c.format != nil:
		return "", false
	case c.hasLiteral:
		return c.literal, true
	case c.header != "":
		if v := h.Values(c.header); len(v) > 0 {
			return v[0], true
		}
	case c.fromMetadata && md != nil:
		if v, ok := metadataValue(md(c.mdNS), c.mdPath); ok {
			return v, true
		}
	}
	return c.def, c.def != ""
}

// metadataValue walks path in s and renders the value found as Envoy's custom tag does
// (strings as they are, numbers and booleans in text, other values as JSON).
func metadataValue(s *structpb.Struct, path []string) (string, bool) {
	if s == nil {
		return "", false
	}
	v := structpb.NewStructValue(s)
	for _, k := range path {
		f, ok := v.GetStructValue().GetFields()[k]
		if !ok {
			return "", false
		}
		v = f
	}
	switch x := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		return x.StringValue, true
	case *structpb.Value_NumberValue, *structpb.Value_BoolValue, *structpb.Value_StructValue, *structpb.Value_ListValue:
		b, err := v.MarshalJSON()
		if err != nil {
			return "", false
		}
		return string(b), true
	}
	return "", false
}
