package tracing

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// The OTLP exporter is written here on the OTLP protobuf types rather than taken from the
// OpenTelemetry Go SDK (DESIGN.md, "Telemetry"): the proxy already builds and exports the spans
// itself, with Envoy's semantics, and needs from the SDK only its exporters, which would bring
// their own gRPC client, retry and batching machinery (and the SDK's span pipeline) into every
// sidecar. The whole exporter is one protobuf marshal and one request through the proxy's own
// cluster (endpoints, pools, mTLS), which is also how Envoy reaches its collector.
//
// An ExportTraceServiceRequest is, on the wire, exactly a TracesData (both are `repeated
// ResourceSpans resource_spans = 1`; OTLP documents TracesData as that request's twin), so the
// request is marshalled from trace/v1 alone and the proxy does not link the collector package,
// whose generated gateway code would pull grpc-gateway into strait-proxy.

// ExportPath is the OTLP gRPC method spans are exported with.
const ExportPath = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

// maxExportReply bounds the collector's reply that is read.
const maxExportReply = 64 << 10

// scopeName is the instrumentation scope of the spans.
const scopeName = "envoy"

// otlpRequest encodes spans as an ExportTraceServiceRequest with resource attribute
// service.name.
func otlpRequest(service string, spans []*Span) ([]byte, error) {
	ss := &tracepb.ScopeSpans{Scope: &commonpb.InstrumentationScope{Name: scopeName}, Spans: make([]*tracepb.Span, 0, len(spans))}
	for _, sp := range spans {
		ss.Spans = append(ss.Spans, otlpSpan(sp))
	}
	td := &tracepb.TracesData{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource:   &resourcepb.Resource{Attributes: []*commonpb.KeyValue{stringKV("service.name", service)}},
		ScopeSpans: []*tracepb.ScopeSpans{ss},
	}}}
	b, err := proto.Marshal(td)
	if err != nil {
		return nil, fmt.Errorf("encoding the OTLP export request: %w", err)
	}
	return b, nil
}

func stringKV(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

// OTLPSpan converts a span to its OTLP form (exported for tests of receivers).
func OTLPSpan(sp *Span) *tracepb.Span { return otlpSpan(sp) }

func otlpSpan(sp *Span) *tracepb.Span {
	o := &tracepb.Span{
		TraceId:           append([]byte(nil), sp.TraceID[:]...),
		SpanId:            append([]byte(nil), sp.SpanID[:]...),
		TraceState:        sp.TraceState,
		Name:              sp.Name,
		StartTimeUnixNano: uint64(sp.Start.UnixNano()),
		EndTimeUnixNano:   uint64(sp.End.UnixNano()),
		Attributes:        make([]*commonpb.KeyValue, 0, len(sp.Attrs)),
	}
	if !sp.ParentID.IsZero() {
		o.ParentSpanId = append([]byte(nil), sp.ParentID[:]...)
	}
	switch sp.Kind {
	case KindServer:
		o.Kind = tracepb.Span_SPAN_KIND_SERVER
	case KindClient:
		o.Kind = tracepb.Span_SPAN_KIND_CLIENT
	}
	for _, a := range sp.Attrs {
		o.Attributes = append(o.Attributes, stringKV(a.Key, a.Value))
	}
	if sp.Error {
		o.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR}
	}
	return o
}

// sender returns the OTLP/gRPC export of a grpc_service: a unary TraceService/Export call,
// framed here and sent as an HTTP/2 request through the named cluster.
func (g *grpcTarget) sender(cluster func(string) RoundTripper, service string) sendFunc {
	return func(ctx context.Context, spans []*Span) error {
		msg, err := otlpRequest(service, spans)
		if err != nil {
			return err
		}
		frame := make([]byte, 5+len(msg))
		binary.BigEndian.PutUint32(frame[1:5], uint32(len(msg)))
		copy(frame[5:], msg)
		hdr := http.Header{"Content-Type": {"application/grpc"}, "Te": {"trailers"}, "User-Agent": nil,
			"Grpc-Timeout": {strconv.FormatInt(max(g.timeout.Milliseconds(), 1), 10) + "m"}}
		maps.Copy(hdr, g.metadata)
		p := post{cluster: g.cluster, url: &url.URL{Path: ExportPath}, host: g.authority, http2: true,
			header: hdr, body: frame, timeout: g.timeout}
		return p.send(ctx, cluster, func(resp *http.Response) error {
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("OTLP export to %s: HTTP %d", g.cluster, resp.StatusCode)
			}
			if _, err := io.Copy(io.Discard, io.LimitReader(resp.Body, maxExportReply)); err != nil {
				return fmt.Errorf("OTLP export to %s: reading the reply: %w", g.cluster, err)
			}
			st := resp.Header.Get("Grpc-Status")
			if st == "" {
				st = resp.Trailer.Get("Grpc-Status")
			}
			if st != "0" {
				return fmt.Errorf("OTLP export to %s: grpc-status %q: %s", g.cluster, st, resp.Trailer.Get("Grpc-Message"))
			}
			return nil
		})
	}
}

// otlpSender returns the OTLP/HTTP export of an http_service: a protobuf POST to the URI's
// path through the named cluster.
func (h *httpTarget) otlpSender(cluster func(string) RoundTripper, service string) sendFunc {
	return func(ctx context.Context, spans []*Span) error {
		body, err := otlpRequest(service, spans)
		if err != nil {
			return err
		}
		return h.post(ctx, cluster, "application/x-protobuf", body)
	}
}

// post sends body to the target and wants a 2xx.
func (h *httpTarget) post(ctx context.Context, cluster func(string) RoundTripper, contentType string, body []byte) error {
	hdr := http.Header{"Content-Type": {contentType}, "User-Agent": nil}
	maps.Copy(hdr, h.headers)
	u, err := url.ParseRequestURI(h.path)
	if err != nil {
		return fmt.Errorf("export to %s: path %q: %w", h.cluster, h.path, err)
	}
	p := post{cluster: h.cluster, url: u, host: h.host, header: hdr, body: body, timeout: h.timeout}
	return p.send(ctx, cluster, func(resp *http.Response) error {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxExportReply))
		if resp.StatusCode/100 != 2 {
			return &statusError{cluster: h.cluster, code: resp.StatusCode}
		}
		return nil
	})
}

// post is one export request: body POSTed to url with header, for host, through cluster (on
// HTTP/2 when http2, else HTTP/1.1) within timeout.
type post struct {
	cluster string
	url     *url.URL
	host    string
	http2   bool
	header  http.Header
	body    []byte
	timeout time.Duration
}

// send sends the request through the cluster clusters returns for its name, and hands the reply
// to check before closing its body.
func (p post) send(ctx context.Context, clusters func(string) RoundTripper, check func(*http.Response) error) error {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	body := func() io.ReadCloser { return io.NopCloser(bytes.NewReader(p.body)) }
	req := (&http.Request{Method: http.MethodPost, URL: p.url, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: p.header, Host: p.host, ContentLength: int64(len(p.body)), Body: body(),
		GetBody: func() (io.ReadCloser, error) { return body(), nil }}).WithContext(ctx)
	if p.http2 {
		req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/2.0", 2, 0
	}
	resp, err := roundTrip(clusters, p.cluster, req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return check(resp)
}

// statusError is a collector's reply other than 2xx.
type statusError struct {
	cluster string
	code    int
}

func (e *statusError) Error() string { return fmt.Sprintf("export to %s: HTTP %d", e.cluster, e.code) }

// errNoCluster reports a collector cluster the runtime does not have.
type errNoCluster string

func (e errNoCluster) Error() string { return fmt.Sprintf("collector cluster %q not found", string(e)) }

func roundTrip(cluster func(string) RoundTripper, name string, req *http.Request) (*http.Response, error) {
	var rt RoundTripper
	if cluster != nil {
		rt = cluster(name)
	}
	if rt == nil {
		return nil, errNoCluster(name)
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return nil, fmt.Errorf("exporting spans to %s: %w", name, err)
	}
	return resp, nil
}
