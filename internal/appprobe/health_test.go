package appprobe

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// TestHealthEncoding: the hand encoding is the generated package's, byte for byte, and the
// decoder reads what the generated package writes (the tests may link grpc-go; strait-proxy
// does not).
func TestHealthEncoding(t *testing.T) {
	for _, svc := range []string{"", "orders", "ünïcode.svc", strings.Repeat("s", 300)} {
		want, err := proto.Marshal(&healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			t.Fatal(err)
		}
		if got := encodeHealthCheckRequest(svc); !bytes.Equal(got, want) {
			t.Errorf("request %q: % x, want % x", svc, got, want)
		}
	}
	for _, st := range []healthpb.HealthCheckResponse_ServingStatus{0, 1, 2, 3, 7, -1} {
		b, err := proto.Marshal(&healthpb.HealthCheckResponse{Status: st})
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeHealthCheckResponse(b)
		if err != nil || int32(got) != int32(st) {
			t.Errorf("response %v: %v, %v", st, got, err)
		}
	}
	// Unknown fields are skipped; the last status wins; a status with the wrong wire type is
	// an unknown field.
	b := protowire.AppendTag(nil, 9, protowire.BytesType)
	b = protowire.AppendString(b, "extra")
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, 2)
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, 1)
	b = protowire.AppendTag(b, 1, protowire.Fixed32Type)
	b = protowire.AppendFixed32(b, 2)
	if got, err := decodeHealthCheckResponse(b); err != nil || got != statusServing {
		t.Errorf("mixed: %v, %v", got, err)
	}
	for name, bad := range map[string][]byte{
		"truncated varint": {0x08, 0x80},
		"field 0":          {0x00, 0x01},
		"truncated bytes":  {0x4a, 0x05, 'a'},
		"end group":        {0x0c},
	} {
		if _, err := decodeHealthCheckResponse(bad); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

// FuzzHealthCheckResponse: on any bytes the decoder does not panic and agrees with the
// generated package on success and on the status.
func FuzzHealthCheckResponse(f *testing.F) {
	for _, st := range []healthpb.HealthCheckResponse_ServingStatus{0, 1, 2, 3, -1} {
		b, _ := proto.Marshal(&healthpb.HealthCheckResponse{Status: st})
		f.Add(b)
	}
	f.Add([]byte{0x4a, 0x01, 'x', 0x08, 0x01})
	f.Add([]byte{0x0b, 0x08, 0x01, 0x0c, 0x08, 0x02})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeHealthCheckResponse(b)
		var want healthpb.HealthCheckResponse
		werr := proto.Unmarshal(b, &want)
		if (err == nil) != (werr == nil) {
			t.Fatalf("% x: error %v, generated package %v", b, err, werr)
		}
		if err == nil && int32(got) != int32(want.GetStatus()) {
			t.Fatalf("% x: status %v, generated package %v", b, got, want.GetStatus())
		}
	})
}

// TestGRPCProbe: the probe against grpc-go's health server, for the server's overall health,
// a named service, a service the server does not know, and a server that is not gRPC.
func TestGRPCProbe(t *testing.T) {
	gp, hs := startHealthServer(t)
	ctx := context.Background()
	if err := (&Prober{GRPC: &GRPC{Port: gp}}).Run(ctx, "127.0.0.1"); err != nil {
		t.Errorf("overall health (SERVING by default): %v", err)
	}
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	if err := (&Prober{GRPC: &GRPC{Port: gp}}).Run(ctx, "127.0.0.1"); err == nil || !strings.Contains(err.Error(), "NOT_SERVING") {
		t.Errorf("overall NOT_SERVING: %v", err)
	}
	missing := "missing"
	if err := (&Prober{GRPC: &GRPC{Port: gp, Service: &missing}}).Run(ctx, "127.0.0.1"); err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Errorf("unknown service: %v", err)
	}
	// An HTTP/1.1-only server: the h2c preface fails, the probe fails.
	web, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer web.Close()
	go func() {
		for {
			c, err := web.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n"))
			c.Close()
		}
	}()
	if err := (&Prober{GRPC: &GRPC{Port: port(t, web.Addr().String())}}).Run(ctx, "127.0.0.1"); err == nil {
		t.Error("a server that is not gRPC passed the probe")
	}
}

// startHealthServer serves grpc-go's health service on a loopback port until the test ends.
func startHealthServer(t *testing.T) (int, *health.Server) {
	t.Helper()
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	go gs.Serve(gl)
	t.Cleanup(gs.Stop)
	return port(t, gl.Addr().String()), hs
}
