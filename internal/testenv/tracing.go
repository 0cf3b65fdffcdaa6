package testenv

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
)

// Span is a received span in one shape for both collectors: ids in lower-case hex ("" for a
// root span's Parent).
type Span struct {
	Trace, ID, Parent, Name, Kind string
	Service                       string // the resource's service.name (OTLP) or localEndpoint (Zipkin)
	Attrs                         map[string]string
	TraceState                    string // OTLP only
	Shared                        bool   // Zipkin only
	Start, End                    time.Time
}

// Collector is a trace collector started by a test: an OTLP gRPC receiver
// (opentelemetry.proto.collector.trace.v1.TraceService/Export) or a Zipkin v2 JSON HTTP
// collector (POST of application/json).
type Collector struct {
	Addr     string
	mu       sync.Mutex
	spans    []Span
	requests []string
	coltracepb.UnimplementedTraceServiceServer
}

// Export implements the OTLP TraceService.
func (c *Collector) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		service := ""
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				service = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				sp := Span{Trace: hex.EncodeToString(s.GetTraceId()), ID: hex.EncodeToString(s.GetSpanId()),
					Parent: hex.EncodeToString(s.GetParentSpanId()), Name: s.GetName(), Service: service,
					Kind: otlpKinds[s.GetKind()], Attrs: map[string]string{}, TraceState: s.GetTraceState(),
					Start: time.Unix(0, int64(s.GetStartTimeUnixNano())), End: time.Unix(0, int64(s.GetEndTimeUnixNano()))}
				for _, a := range s.GetAttributes() {
					sp.Attrs[a.GetKey()] = a.GetValue().GetStringValue()
				}
				c.spans = append(c.spans, sp)
			}
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

var otlpKinds = map[tracepb.Span_SpanKind]string{tracepb.Span_SPAN_KIND_SERVER: "SERVER", tracepb.Span_SPAN_KIND_CLIENT: "CLIENT",
	tracepb.Span_SPAN_KIND_INTERNAL: "INTERNAL", tracepb.Span_SPAN_KIND_PRODUCER: "PRODUCER", tracepb.Span_SPAN_KIND_CONSUMER: "CONSUMER"}

// ServeHTTP is the Zipkin v2 JSON collector: it takes a POST of a JSON list of spans (at most
// 4 MiB), and answers 400 to anything else.
func (c *Collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var spans []struct {
		TraceID       string `json:"traceId"`
		ParentID      string `json:"parentId"`
		ID            string `json:"id"`
		Kind          string `json:"kind"`
		Name          string `json:"name"`
		Timestamp     int64  `json:"timestamp"` // microseconds
		Duration      int64  `json:"duration"`
		LocalEndpoint struct {
			ServiceName string `json:"serviceName"`
		} `json:"localEndpoint"`
		Tags   map[string]string `json:"tags"`
		Shared bool              `json:"shared"`
	}
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" ||
		json.NewDecoder(io.LimitReader(r.Body, 4<<20)).Decode(&spans) != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	c.requests = append(c.requests, r.Method+" "+r.Host+r.URL.Path)
	for _, s := range spans {
		start := time.UnixMicro(s.Timestamp)
		c.spans = append(c.spans, Span{Trace: s.TraceID, ID: s.ID, Parent: s.ParentID, Name: s.Name, Kind: s.Kind,
			Service: s.LocalEndpoint.ServiceName, Attrs: s.Tags, Shared: s.Shared,
			Start: start, End: start.Add(time.Duration(s.Duration) * time.Microsecond)})
	}
	c.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

// Requests returns the Zipkin requests accepted so far, as "METHOD host/path".
func (c *Collector) Requests() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.requests...)
}

// Spans returns a copy of the spans received so far.
func (c *Collector) Spans() []Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Span(nil), c.spans...)
}

// Trace returns the received spans of a trace.
func (c *Collector) Trace(trace string) []Span {
	var out []Span
	for _, s := range c.Spans() {
		if s.Trace == trace {
			out = append(out, s)
		}
	}
	return out
}

// StartOTLPCollector runs an OTLP gRPC trace receiver on ip (a free port) until the test ends.
func StartOTLPCollector(t testing.TB, ip string) *Collector {
	t.Helper()
	c := &Collector{}
	c.Addr = ServeGRPC(t, net.JoinHostPort(ip, "0"), func() *grpc.Server {
		srv := grpc.NewServer()
		coltracepb.RegisterTraceServiceServer(srv, c)
		return srv
	}).Addr()
	return c
}

// StartZipkinCollector runs a Zipkin v2 JSON collector on ip (a free port) until the test ends.
func StartZipkinCollector(t testing.TB, ip string) *Collector {
	t.Helper()
	c := &Collector{}
	c.Addr = ServeHTTP(t, Listen(t, net.JoinHostPort(ip, "0")), &http.Server{Handler: c})
	return c
}
