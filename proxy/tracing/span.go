package tracing

import (
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strait-mesh/strait/proxy/accesslog"
)

// Attr is one span tag (an OpenTelemetry string attribute, a Zipkin tag).
type Attr struct{ Key, Value string }

// Span is one span of a request. The connection manager owns it from Start to Finish on the
// request's goroutine; after Finish it belongs to the exporter and must not be touched.
type Span struct {
	Name     string
	Kind     Kind
	TraceID  TraceID
	SpanID   SpanID
	ParentID SpanID // zero for a root span
	Sampled  bool
	// Shared marks a Zipkin server span that shares the caller's span id (shared_span_context).
	Shared     bool
	TraceState string
	Start, End time.Time
	Attrs      []Attr
	// Error marks a failed request (OpenTelemetry status ERROR).
	Error bool

	t *Tracer
	// fixed backs Attrs of an unsampled span (node_id, zone): such a span is never exported,
	// so it needs no room for the request's tags, and it is reused (spanPool) after Finish.
	fixed [2]Attr
}

// spanPool recycles unsampled spans: with Istio's default 1% sampling nearly every request's
// span is one, used for its trace context only and never exported.
var spanPool = sync.Pool{New: func() any { return new(Span) }}

// newSpan returns a zeroed span of t: a sampled one is allocated with room for the tags a
// request sets (it goes to the exporter); an unsampled one comes from spanPool.
func newSpan(t *Tracer, sampled bool, attrs int) *Span {
	if sampled {
		return &Span{t: t, Sampled: true, Attrs: make([]Attr, 0, attrs)}
	}
	sp := spanPool.Get().(*Span)
	sp.t = t
	sp.Attrs = sp.fixed[:0]
	return sp
}

// Egress reports whether the tracer serves an outbound listener (Envoy's operation name egress).
func (t *Tracer) Egress() bool { return t.egress }

// SpawnUpstream reports spawn_upstream_span: the router starts a CLIENT child span for the
// upstream request.
func (t *Tracer) SpawnUpstream() bool { return t.spawnUpstream }

// HasProvider reports whether spans are created at all (a tracing config without a provider
// only makes the sampling decision).
func (t *Tracer) HasProvider() bool { return t.provider != providerNone }

// MaxPathTag is max_path_tag_length, the bound on the http.url tag.
func (t *Tracer) MaxPathTag() int { return t.maxPathTag }

// Start starts the connection manager's span for a request whose headers are h, named name,
// with the sampling decision reason. The parent comes from the provider's headers (W3C for
// OpenTelemetry, B3 for Zipkin); a missing or malformed one starts a new trace. A valid
// parent's sampling state overrides the decision, as in Envoy. The span kind follows Envoy:
// SERVER with spawn_upstream_span or on ingress, CLIENT on egress. Start returns nil without
// a provider.
func (t *Tracer) Start(h Headers, name string, reason Reason, start time.Time) *Span {
	if t.provider == providerNone {
		return nil
	}
	// The context first: the parent's sampled flag decides whether the span is exported,
	// hence how it is allocated.
	var c Span
	c.Sampled = reason.Traced()
	switch t.provider {
	case providerOTel:
		if sc, ok := ExtractW3C(h); ok {
			c.TraceID, c.ParentID, c.Sampled, c.TraceState = sc.TraceID, sc.SpanID, sc.Sampled, sc.TraceState
		} else {
			c.TraceID = newTraceID(false)
		}
		c.SpanID = newSpanID()
	case providerZipkin:
		sc, hasCtx := ExtractB3(h)
		if sc.SampledSet {
			c.Sampled = sc.Sampled
		}
		switch {
		case !hasCtx:
			c.TraceID, c.SpanID = newTraceID(!t.zipkin128), newSpanID()
		case !t.egress && t.zipkinShared:
			// Ingress with shared_span_context: the server span shares the client's id.
			c.TraceID, c.SpanID, c.ParentID, c.Shared = sc.TraceID, sc.SpanID, sc.ParentID, true
		default:
			c.TraceID, c.SpanID, c.ParentID = sc.TraceID, newSpanID(), sc.SpanID
		}
	}
	sp := newSpan(t, c.Sampled, 24)
	sp.Name, sp.Start, sp.Kind = name, start, KindServer
	sp.TraceID, sp.SpanID, sp.ParentID, sp.Shared, sp.TraceState = c.TraceID, c.SpanID, c.ParentID, c.Shared, c.TraceState
	if t.egress && !t.spawnUpstream {
		sp.Kind = KindClient
	}
	sp.SetTag("node_id", t.nodeID)
	sp.SetTag("zone", t.zone)
	return sp
}

// Child starts a CLIENT span under sp (the upstream span of spawn_upstream_span).
func (sp *Span) Child(name string, start time.Time) *Span {
	c := newSpan(sp.t, sp.Sampled, 12)
	c.Name, c.Kind, c.TraceID, c.SpanID, c.ParentID, c.TraceState, c.Start = name, KindClient, sp.TraceID, newSpanID(), sp.SpanID, sp.TraceState, start
	c.SetTag("node_id", sp.t.nodeID)
	c.SetTag("zone", sp.t.zone)
	return c
}

// SetTag sets a tag, replacing an earlier value of the same key.
func (sp *Span) SetTag(k, v string) {
	for i := range sp.Attrs {
		if sp.Attrs[i].Key == k {
			sp.Attrs[i].Value = v
			return
		}
	}
	sp.Attrs = append(sp.Attrs, Attr{k, v})
}

// Tag returns a tag's value.
func (sp *Span) Tag(k string) (string, bool) {
	for _, a := range sp.Attrs {
		if a.Key == k {
			return a.Value, true
		}
	}
	return "", false
}

// Inject writes the span's context to an outgoing request in the provider's format: W3C
// traceparent and tracestate (OpenTelemetry), B3 multiple headers (Zipkin).
func (sp *Span) Inject(h Headers) {
	switch sp.t.provider {
	case providerOTel:
		InjectW3C(h, sp.TraceID, sp.SpanID, sp.Sampled, sp.TraceState)
	case providerZipkin:
		InjectB3(h, sp.TraceID, sp.SpanID, sp.ParentID, sp.Sampled)
	}
}

// CustomTags applies the configured custom_tags from the request headers h and its dynamic
// metadata md (may be nil).
func (sp *Span) CustomTags(h Headers, md func(ns string) *structpb.Struct) {
	for i := range sp.t.tags {
		c := &sp.t.tags[i]
		if v, ok := c.value(h, md); ok {
			sp.SetTag(c.name, v)
		}
	}
}

// HasFormatTags reports whether custom tags of the value kind (substitution formats) are
// configured: the caller then renders them with FormatTags on sampled spans.
func (t *Tracer) HasFormatTags() bool { return t.formatTags }

// FormatTags sets the custom tags of the value kind, rendered from the finished request's
// record e. Only a sampled span needs them; an empty value sets no tag, as in Envoy.
func (sp *Span) FormatTags(e *accesslog.Entry) {
	var buf []byte
	for i := range sp.t.tags {
		c := &sp.t.tags[i]
		if c.format == nil {
			continue
		}
		if buf = c.format.Append(buf[:0], e); len(buf) > 0 {
			sp.SetTag(c.name, string(buf))
		}
	}
}

// Finish ends the span at end and, when it is sampled, queues it for export. The request path
// never waits: a full queue drops the span and counts it. An unsampled span is recycled: the
// caller must not touch the span after Finish.
func (sp *Span) Finish(end time.Time) {
	sp.End = end
	if sp.Sampled {
		if sp.t.exp != nil {
			sp.t.exp.enqueue(sp)
		}
		return
	}
	*sp = Span{}
	spanPool.Put(sp)
}
