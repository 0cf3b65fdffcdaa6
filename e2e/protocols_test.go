package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/strait-mesh/strait/internal/testenv"
)

// protocolsYAML exposes, through the Gateway "edge": HTTP routes to an h2c-only and an
// HTTP/1.1-only backend, a gRPC and a WebSocket backend (port httpPort); a TCP echo (tcpPort);
// and two TLS backends chosen by SNI without terminating TLS (tlsPort).
func protocolsYAML(httpPort, tcpPort, tlsPort int, se string) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: e2e}
spec:
  selector: {app: edge}
  servers:
  - {port: {number: %[1]d, name: http, protocol: HTTP}, hosts: ["*"]}
  - {port: {number: %[2]d, name: tcp, protocol: TCP}, hosts: ["*"]}
  - port: {number: %[3]d, name: tls, protocol: TLS}
    tls: {mode: PASSTHROUGH}
    hosts: [a.tls.example, b.tls.example]
---
`, httpPort, tcpPort, tlsPort) + edgeVS("http", "e2e", `["*"]`, `  http:
  - match: [{uri: {prefix: /h2}}]
    route: [{destination: {host: h2.e2e.test}}]
  - match: [{uri: {prefix: /h1}}]
    route: [{destination: {host: h1.e2e.test}}]
  - match: [{uri: {exact: /grpc.testing.TestService/EmptyCall}}]
    fault: {abort: {grpcStatus: UNAVAILABLE, percentage: {value: 100}}}
    route: [{destination: {host: grpc.e2e.test}}]
  - match: [{uri: {prefix: /grpc.testing.TestService/}}]
    route: [{destination: {host: grpc.e2e.test}}]
  - match: [{uri: {prefix: /ws}}]
    route: [{destination: {host: ws.e2e.test}}]
`) + "---\n" + edgeVS("tcp", "e2e", `["*"]`, fmt.Sprintf(`  tcp:
  - match: [{port: %d}]
    route: [{destination: {host: echo.e2e.test, port: {number: 9000}}}]
`, tcpPort)) + "---\n" + edgeVS("tls", "e2e", "[a.tls.example, b.tls.example]", fmt.Sprintf(`  tls:
  - match: [{sniHosts: [a.tls.example], port: %[1]d}]
    route: [{destination: {host: tls-a.e2e.test, port: {number: 443}}}]
  - match: [{sniHosts: [b.tls.example], port: %[1]d}]
    route: [{destination: {host: tls-b.e2e.test, port: {number: 443}}}]
`, tlsPort)) + "---\n" + se
}

// TestProtocols carries HTTP/1.1 ↔ HTTP/2 (h2c) both ways, a gRPC bidirectional stream, a
// WebSocket echo, a TCP echo and SNI-routed TLS passthrough through one router proxy.
func TestProtocols(t *testing.T) {
	skipShort(t)
	h2 := startBackend(t, "127.0.0.41", "h2", backendOptions{h2c: true})
	h1 := startBackend(t, "127.0.0.42", "h1", backendOptions{})
	grpcPort := startGRPC(t, "127.0.0.43", "grpc")
	wsPort := startWebSocket(t, "127.0.0.44", "ws")
	echoPort := startTCPEcho(t, "127.0.0.45", "echo")
	certA, certB := testenv.SelfSigned(t, "a.tls.example"), testenv.SelfSigned(t, "b.tls.example")
	tlsA := startTLSBackend(t, "127.0.0.46", "tls-a", certA)
	tlsB := startTLSBackend(t, "127.0.0.47", "tls-b", certB)

	se := strings.Join([]string{
		serviceEntryYAML("h2.e2e.test", 80, "HTTP2", h2.Endpoint()),
		serviceEntryYAML("h1.e2e.test", 80, "HTTP", h1.Endpoint()),
		serviceEntryYAML("grpc.e2e.test", 7070, "GRPC", endpoint{"grpc", "127.0.0.43", grpcPort}),
		serviceEntryYAML("ws.e2e.test", 80, "HTTP", endpoint{"ws", "127.0.0.44", wsPort}),
		serviceEntryYAML("echo.e2e.test", 9000, "TCP", endpoint{"echo", "127.0.0.45", echoPort}),
		serviceEntryYAML("tls-a.e2e.test", 443, "TLS", endpoint{"tls-a", "127.0.0.46", tlsA}),
		serviceEntryYAML("tls-b.e2e.test", 443, "TLS", endpoint{"tls-b", "127.0.0.47", tlsB}),
	}, "---\n")
	httpPort, tcpPort, tlsPort := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
	edge(t, map[string]string{"protocols.yaml": protocolsYAML(httpPort, tcpPort, tlsPort, se)})
	base := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	waitBackend(t, 30*time.Second, h1Client, request{URL: base + "/h1"}, "h1")

	t.Run("no route", func(t *testing.T) {
		rep := mustDo(t, h1Client, request{URL: base + "/nothing/here"})
		if rep.Code != http.StatusNotFound || rep.Echo != nil {
			t.Fatalf("a path no route matches: %d %.200s, want 404 from the proxy", rep.Code, rep.Body)
		}
	})

	for _, c := range []struct {
		name     string
		client   *http.Client
		req      request
		backend  string
		down, up string // the protocol the client and the backend spoke
	}{
		{"HTTP/1.1 to h2c upstream", h1Client, request{Method: http.MethodPost, URL: base + "/h2/up", Body: strings.Repeat("x", 100<<10)}, "h2", "HTTP/1.1", "HTTP/2.0"},
		{"h2c to HTTP/1.1 upstream", h2cClient, request{URL: base + "/h1/down"}, "h1", "HTTP/2.0", "HTTP/1.1"},
		{"h2c to h2c upstream", h2cClient, request{URL: base + "/h2/both"}, "h2", "HTTP/2.0", "HTTP/2.0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rep := mustDo(t, c.client, c.req)
			if rep.Code != http.StatusOK || rep.Echo == nil || rep.Echo.Backend != c.backend {
				t.Fatalf("%d %.200s", rep.Code, rep.Body)
			}
			if rep.Proto != c.down || rep.Echo.Proto != c.up {
				t.Fatalf("client got %s, backend saw %s; want %s downstream, %s upstream", rep.Proto, rep.Echo.Proto, c.down, c.up)
			}
		})
	}

	t.Run("gRPC bidirectional stream", func(t *testing.T) {
		conn, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", httpPort), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		client := testpb.NewTestServiceClient(conn)
		stream, err := client.FullDuplexCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 5; i++ {
			msg := fmt.Sprintf("ping-%d", i)
			if err := stream.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte(msg)}}); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
			resp, err := stream.Recv()
			if err != nil {
				t.Fatalf("recv %d: %v", i, err)
			}
			if got := string(resp.GetPayload().GetBody()); got != "grpc:"+msg {
				t.Fatalf("recv %d: %q, want %q", i, got, "grpc:"+msg)
			}
		}
		if md, err := stream.Header(); err != nil || strings.Join(md.Get("x-backend"), ",") != "grpc" {
			t.Fatalf("header metadata %v, %v", md, err)
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("after CloseSend: %v, want EOF", err)
		}
		if tr := stream.Trailer(); strings.Join(tr.Get("x-done"), ",") != "yes" {
			t.Fatalf("trailers %v, want x-done: yes", tr)
		}

		// A status from the server arrives in the trailers while the client still sends.
		fctx, fcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer fcancel()
		stream, err = client.FullDuplexCall(fctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte("fail")}}); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("failing stream: %v, want FailedPrecondition", err)
		}

		// A fault abort with a gRPC status answers for the server (which does not implement
		// EmptyCall: reaching it would give Unimplemented).
		if _, err := client.EmptyCall(fctx, &testpb.Empty{}); status.Code(err) != codes.Unavailable {
			t.Fatalf("EmptyCall under a gRPC fault abort: %v, want Unavailable", err)
		}
		if _, err := client.UnaryCall(fctx, &testpb.SimpleRequest{}); status.Code(err) != codes.Unimplemented {
			t.Fatalf("UnaryCall: %v, want the server's Unimplemented", err)
		}
	})

	t.Run("WebSocket", func(t *testing.T) {
		cfg, err := websocket.NewConfig(fmt.Sprintf("ws://127.0.0.1:%d/ws/echo", httpPort), "http://client.test")
		if err != nil {
			t.Fatal(err)
		}
		cfg.Dialer = &net.Dialer{Timeout: 5 * time.Second}
		ws, err := websocket.DialConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		_ = ws.SetDeadline(time.Now().Add(15 * time.Second))
		for i := 0; i < 5; i++ {
			msg := fmt.Sprintf("hello-%d", i)
			if err := websocket.Message.Send(ws, msg); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
			var got string
			if err := websocket.Message.Receive(ws, &got); err != nil {
				t.Fatalf("receive %d: %v", i, err)
			}
			if got != "ws:"+msg {
				t.Fatalf("receive %d: %q, want %q", i, got, "ws:"+msg)
			}
		}
	})

	t.Run("TCP echo", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", tcpPort), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(15 * time.Second))
		r := bufio.NewReader(c)
		for i := 0; i < 3; i++ {
			fmt.Fprintf(c, "line %d\n", i)
			got, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("line %d: %v", i, err)
			}
			if want := fmt.Sprintf("echo: line %d\n", i); got != want {
				t.Fatalf("line %d: %q, want %q", i, got, want)
			}
		}
		// Half close: the echo server sees EOF, answers the last line and closes.
		fmt.Fprintf(c, "last\n")
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		rest, err := io.ReadAll(r)
		if err != nil || string(rest) != "echo: last\n" {
			t.Fatalf("after half close: %q, %v", rest, err)
		}
	})

	t.Run("TLS passthrough by SNI", func(t *testing.T) {
		roots := x509.NewCertPool()
		roots.AddCert(certA.Leaf)
		roots.AddCert(certB.Leaf)
		get := func(sni string) (*reply, *x509.Certificate, error) {
			var peer *x509.Certificate
			tr := &http.Transport{
				TLSClientConfig: &tls.Config{ServerName: sni, RootCAs: roots, MinVersion: tls.VersionTLS12,
					VerifyConnection: func(cs tls.ConnectionState) error { peer = cs.PeerCertificates[0]; return nil }},
				DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
					var d net.Dialer
					return d.DialContext(ctx, network, fmt.Sprintf("127.0.0.1:%d", tlsPort))
				},
			}
			defer tr.CloseIdleConnections()
			rep, err := do(&http.Client{Transport: tr, Timeout: 10 * time.Second}, request{URL: "https://" + sni + "/tls"})
			return rep, peer, err
		}
		for _, c := range []struct{ sni, backend string }{{"a.tls.example", "tls-a"}, {"b.tls.example", "tls-b"}} {
			var rep *reply
			var peer *x509.Certificate
			testenv.Eventually(t, 10*time.Second, func() (err error) {
				rep, peer, err = get(c.sni)
				return err
			})
			if rep.Code != http.StatusOK || rep.Echo == nil || rep.Echo.Backend != c.backend {
				t.Fatalf("SNI %s: %d %.200s, want backend %s", c.sni, rep.Code, rep.Body, c.backend)
			}
			if peer.Subject.CommonName != c.sni {
				t.Fatalf("SNI %s: certificate of %q, want the backend's own", c.sni, peer.Subject.CommonName)
			}
		}
		// A name no route knows gets no backend.
		if rep, _, err := get("c.tls.example"); err == nil {
			t.Fatalf("unknown SNI reached a backend: %d %.200s", rep.Code, rep.Body)
		}
	})
}
