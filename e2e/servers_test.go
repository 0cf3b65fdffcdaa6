package e2e

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/strait-mesh/strait/internal/testenv"
)

// listen opens a TCP listener on ip (a 127.0.0.0/8 address) and a free port, closed at cleanup.
func listen(t *testing.T, ip string) (net.Listener, int) {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, ln.Addr().(*net.TCPAddr).Port
}

// grpcEcho is a grpc.testing.TestService whose FullDuplexCall answers each message with
// "<name>:<payload>", sends header metadata x-backend, and ends the stream with
// FAILED_PRECONDITION when a payload is "fail".
type grpcEcho struct {
	testpb.UnimplementedTestServiceServer
	name string
}

// FullDuplexCall implements testpb.TestServiceServer.
func (g *grpcEcho) FullDuplexCall(stream testpb.TestService_FullDuplexCallServer) error {
	if err := stream.SendHeader(metadata.Pairs("x-backend", g.name)); err != nil {
		return err
	}
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			stream.SetTrailer(metadata.Pairs("x-done", "yes"))
			return nil
		}
		if err != nil {
			return err
		}
		body := string(req.GetPayload().GetBody())
		if body == "fail" {
			return status.Error(codes.FailedPrecondition, "asked to fail")
		}
		out := &testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: []byte(g.name + ":" + body)}}
		if err := stream.Send(out); err != nil {
			return err
		}
	}
}

// startGRPC serves a grpcEcho on ip and returns its port.
func startGRPC(t *testing.T, ip, name string) int {
	t.Helper()
	ln, port := listen(t, ip)
	s := grpc.NewServer()
	testpb.RegisterTestServiceServer(s, &grpcEcho{name: name})
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return port
}

// startWebSocket serves a WebSocket echo at any path on ip: each message comes back as
// "<name>:<message>".
func startWebSocket(t *testing.T, ip, name string) int {
	t.Helper()
	ln, port := listen(t, ip)
	srv := &http.Server{Handler: websocket.Handler(func(ws *websocket.Conn) {
		for {
			var msg string
			if err := websocket.Message.Receive(ws, &msg); err != nil {
				return
			}
			if err := websocket.Message.Send(ws, name+":"+msg); err != nil {
				return
			}
		}
	}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return port
}

// startTCPEcho answers each line of a connection with "<name>: <line>" and closes its side when
// the client closes its own.
func startTCPEcho(t *testing.T, ip, name string) int {
	t.Helper()
	ln, port := listen(t, ip)
	testenv.Serve(t, ln, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			if _, err := fmt.Fprintf(c, "%s: %s\n", name, sc.Text()); err != nil {
				return
			}
		}
	})
	return port
}

// startTLSBackend serves an echoBackend named name over TLS with cert on ip.
func startTLSBackend(t *testing.T, ip, name string, cert tls.Certificate) int {
	t.Helper()
	ln, port := listen(t, ip)
	b := &echoBackend{Name: name, IP: ip, Port: port, release: make(chan struct{}), attempts: map[string]int{}}
	srv := &http.Server{Handler: b, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}))
	t.Cleanup(func() { srv.Close() })
	return port
}
