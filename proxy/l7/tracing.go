package l7

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/strait-mesh/strait/proxy/accesslog"
	"github.com/strait-mesh/strait/proxy/balance"
	"github.com/strait-mesh/strait/proxy/tracing"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
)

// TracingOptions are the process-level inputs of the connection manager's tracing.
type TracingOptions struct {
	// NodeID and Zone are the node_id and zone tags of every span.
	NodeID, Zone string
	// LocalCluster (the node's service cluster) and LocalAddress are the Zipkin spans' local
	// endpoint.
	LocalCluster, LocalAddress string
	// Batch, FlushInterval and QueueSpans tune the exporters (0: tracing's defaults, Envoy's
	// min_flush_spans 5 and flush_interval_ms 5000).
	Batch         int
	FlushInterval time.Duration
	QueueSpans    int
}

// decoratorHeader carries a route decorator's operation between proxies.
const decoratorHeader = "X-Envoy-Decorator-Operation"

// streamTrace is a traced request's state.
type streamTrace struct {
	span       *tracing.Span // the connection manager's span
	up         *tracing.Span // the upstream span (spawn_upstream_span), nil until forwarded
	upStart    time.Time
	decorator  string // the route's decorator operation, "" when none or overridden
	propagate  bool
	overridden bool
}

// compileTracing compiles the connection manager's tracing (proxy/tracing); the collector is
// reached through the proxy's clusters (Env.Cluster, as the router reaches upstreams).
func (h *Handler) compileTracing(hcm *hcmv3.HttpConnectionManager) error {
	if hcm.GetTracing() == nil {
		return nil
	}
	o := h.opts.Tracing
	t, err := tracing.Compile("http_connection_manager.tracing", hcm.GetTracing(), h.requestID, tracing.Deps{
		Cluster:       h.collector,
		Stats:         h.opts.Stats,
		StatPrefix:    h.statPrefix,
		Egress:        h.egress(),
		NodeID:        o.NodeID,
		Zone:          o.Zone,
		LocalCluster:  o.LocalCluster,
		LocalAddress:  o.LocalAddress,
		Batch:         o.Batch,
		FlushInterval: o.FlushInterval,
		QueueSpans:    o.QueueSpans,
		Logger:        h.log,
	})
	if err != nil {
		return err
	}
	h.tracer = t
	return nil
}

// egress reports Envoy's operation name for the connection manager: egress on an OUTBOUND
// listener. Without a direction, Istio's stat_prefix tells (outbound_... is an outbound
// listener or a gateway's; inbound_... an inbound one); anything else is ingress, Envoy's
// default.
func (h *Handler) egress() bool {
	switch h.opts.TrafficDirection {
	case corev3.TrafficDirection_OUTBOUND:
		return true
	case corev3.TrafficDirection_INBOUND:
		return false
	}
	return strings.HasPrefix(h.statPrefix, "outbound_")
}

// collector returns the named cluster of the current runtime as the exporters' RoundTripper.
func (h *Handler) collector(name string) tracing.RoundTripper {
	up := h.env.Cluster(name)
	if up == nil {
		return nil
	}
	return collectorCluster{up}
}

type collectorCluster struct{ up Upstream }

func (c collectorCluster) RoundTrip(req *http.Request) (*http.Response, error) {
	return c.up.RoundTrip(req, balance.Context{})
}

// startTrace makes the sampling decision (which may rewrite x-request-id) and starts the
// request's span, as Envoy's connection manager does once the route is known. The span is
// named by the route's decorator, else Envoy's default ("ingress", or "egress <authority>");
// on ingress an x-envoy-decorator-operation request header overrides the name and is removed,
// on egress the decorator's operation is sent upstream in it when decorator.propagate.
func (h *Handler) startTrace(s *Stream) {
	hdr := (*requestHeaders)(s)
	reason := h.tracer.Sample(hdr, !s.external)
	if v := s.HeaderValues("X-Request-Id"); len(v) > 0 {
		s.Info.RequestID = v[0]
	}
	if !h.tracer.HasProvider() {
		return
	}
	st := traceStatePool.Get().(*streamTrace)
	name := ""
	if rt := s.Route; rt != nil && rt.Decorator != "" {
		name, st.decorator, st.propagate = rt.Decorator, rt.Decorator, rt.DecoratorPropagate
	}
	if h.tracer.Egress() {
		if st.decorator != "" && st.propagate {
			s.SetHeader(decoratorHeader, st.decorator)
		}
	} else if v := s.HeaderValues(decoratorHeader); len(v) > 0 {
		if v[0] != "" {
			name, st.overridden = v[0], true
		}
		s.DelHeader(decoratorHeader)
	}
	st.span = h.tracer.Start(hdr, name, reason, s.Info.Start)
	if name == "" && st.span.Sampled {
		// Envoy's default operation names, built only for a span that is exported.
		st.span.Name = "ingress"
		if h.tracer.Egress() {
			st.span.Name = "egress " + s.Authority()
		}
	}
	s.trace = st
}

// traceStatePool recycles the streams' trace state (finishTrace returns it).
var traceStatePool = sync.Pool{New: func() any { return new(streamTrace) }}

// injectTrace writes the trace context into the upstream request (the router calls it once
// the request's headers are final). With spawn_upstream_span it starts the upstream span,
// whose context the upstream then sees.
func (s *Stream) injectTrace() {
	st := s.trace
	sp := st.span
	if s.h.tracer.SpawnUpstream() {
		st.upStart = time.Now()
		name := ""
		if sp.Sampled { // the name of a span that is exported
			name = "router " + s.Cluster + " egress"
		}
		st.up = sp.Child(name, st.upStart)
		sp = st.up
	}
	sp.Inject((*requestHeaders)(s))
}

// traceResponseHeaders applies Envoy's decorator exchange to a response: on ingress the
// decorator's operation goes back to the caller (unless the request overrode it or propagate
// is off); on egress the upstream's x-envoy-decorator-operation renames the span and is
// removed.
func (s *Stream) traceResponseHeaders() {
	st := s.trace
	if s.h.tracer.Egress() {
		if v := s.ResponseHeader(decoratorHeader); v != "" {
			st.span.Name = v
		}
		s.DelResponseHeader(decoratorHeader)
		return
	}
	if st.decorator != "" && st.propagate && !st.overridden {
		s.SetResponseHeader(decoratorHeader, st.decorator)
	}
}

// finishTrace tags the request's spans as Envoy's connection manager and router do and hands
// them to the exporter. It runs in finish, after the response went out.
func (h *Handler) finishTrace(s *Stream) {
	st := s.trace
	s.trace = nil
	defer func() {
		*st = streamTrace{}
		traceStatePool.Put(st)
	}()
	sp := st.span
	in := &s.Info
	end := in.Start.Add(in.Duration)
	if !sp.Sampled {
		// Neither span is exported (the upstream span shares the decision): no tags to set.
		if st.up != nil {
			st.up.Finish(end)
		}
		sp.Finish(end)
		return
	}
	hdr := (*requestHeaders)(s)
	sp.SetTag("guid:x-request-id", in.RequestID)
	sp.SetTag("http.url", traceURL(s, h.tracer.MaxPathTag()))
	sp.SetTag("http.method", in.Method)
	sp.SetTag("downstream_cluster", headerOrDash(s, "X-Envoy-Downstream-Service-Cluster"))
	sp.SetTag("user_agent", headerOrDash(s, "User-Agent"))
	sp.SetTag("http.protocol", in.Protocol)
	if c := in.Conn; c != nil && c.Source.IsValid() {
		sp.SetTag("peer.address", c.Source.String())
	}
	sp.SetTag("request_size", strconv.FormatInt(in.BytesReceived, 10))
	sp.SetTag("response_size", strconv.FormatInt(in.BytesSent, 10))
	h.commonTraceTags(s, sp)
	sp.CustomTags(hdr, s.DynamicMetadata)
	// Custom tags of the value kind (access log formats) cost a record and a rendering: only
	// for a sampled span, which is exported.
	var e *accesslog.Entry
	if h.tracer.HasFormatTags() {
		e = h.record(s)
		defer putRecord(e)
		sp.FormatTags(e)
	}
	if up := st.up; up != nil {
		up.SetTag("http.protocol", in.Protocol)
		h.commonTraceTags(s, up)
		if s.hostReport.Host != "" {
			up.SetTag("peer.address", s.hostReport.Host)
		}
		up.CustomTags(hdr, s.DynamicMetadata)
		if e != nil && up.Sampled {
			up.FormatTags(e)
		}
		up.Finish(end)
	}
	sp.Finish(end)
}

// commonTraceTags are the tags of both spans: status, flags, cluster, upstream address,
// component and error (5xx or no response).
func (h *Handler) commonTraceTags(s *Stream, sp *tracing.Span) {
	in := &s.Info
	if in.Status != 0 {
		sp.SetTag("http.status_code", strconv.Itoa(in.Status))
	}
	if in.Status == 0 || in.Status >= 500 {
		sp.SetTag("error", "true")
		sp.Error = true
	}
	flags := "-"
	if in.Flags != 0 {
		flags = in.Flags.String()
	}
	sp.SetTag("response_flags", flags)
	if in.Cluster != "" {
		sp.SetTag("upstream_cluster", in.Cluster)
		sp.SetTag("upstream_cluster.name", in.Cluster)
	}
	if s.hostReport.Host != "" {
		sp.SetTag("upstream_address", s.hostReport.Host)
	}
	sp.SetTag("component", "proxy")
}

// traceURL is Envoy's http.url tag: scheme://authority + path (the original path when a rewrite
// kept it in x-envoy-original-path), the path cut to max_path_tag_length.
func traceURL(s *Stream, maxPath int) string {
	path := s.Path()
	if v := s.Header("X-Envoy-Original-Path"); v != "" {
		path = v
	}
	if len(path) > maxPath {
		path = path[:maxPath]
	}
	scheme := s.Scheme()
	if scheme == "" {
		scheme = "http"
	}
	return scheme + "://" + s.Authority() + path
}

// headerOrDash returns the first value of the request header k, "-" when absent or empty.
func headerOrDash(s *Stream, k string) string {
	if v := s.Header(k); v != "" {
		return v
	}
	return "-"
}
