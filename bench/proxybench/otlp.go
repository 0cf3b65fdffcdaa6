package main

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
)

// otlpCollector is a minimal OTLP gRPC trace receiver
// (opentelemetry.proto.collector.trace.v1.TraceService/Export) that only counts the spans it
// receives: the telemetry-full path's tracer exports to it. (internal/testenv's collector needs
// a testing.TB and keeps every span; the benchmark needs neither.)
type otlpCollector struct {
	coltracepb.UnimplementedTraceServiceServer
	spans atomic.Int64
	srv   *grpc.Server
}

// startOTLPCollector serves the receiver on addr until stop.
func startOTLPCollector(addr string) (*otlpCollector, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("OTLP collector: %w", err)
	}
	c := &otlpCollector{srv: grpc.NewServer(grpc.MaxRecvMsgSize(16 << 20))}
	coltracepb.RegisterTraceServiceServer(c.srv, c)
	go func() { _ = c.srv.Serve(l) }()
	return c, nil
}

// Export counts the request's spans.
func (c *otlpCollector) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	var n int64
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			n += int64(len(ss.GetSpans()))
		}
	}
	c.spans.Add(n)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (c *otlpCollector) stop() { c.srv.Stop() }
