package testenv

import (
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
)

// GRPCServer serves gRPC servers, one at a time, on one address until the test ends. Stop and
// Start simulate an outage of a server the code under test talks to: Start serves a new server
// on the same address.
type GRPCServer struct {
	t         testing.TB
	addr      string
	newServer func() *grpc.Server

	mu sync.Mutex
	g  *grpc.Server
}

// ServeGRPC serves newServer() on addr ("127.0.0.1:0" takes a free loopback port, which later
// starts keep) and stops it at the end of the test. newServer is called again by each Start: a
// stopped grpc.Server cannot serve again.
func ServeGRPC(t testing.TB, addr string, newServer func() *grpc.Server) *GRPCServer {
	t.Helper()
	s := &GRPCServer{t: t, addr: addr, newServer: newServer}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Addr is the address served on.
func (s *GRPCServer) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Start serves a new server on the address. The port may take a moment to be free again after a
// Stop: Start retries the bind for up to 10 s, then fails the test.
func (s *GRPCServer) Start() {
	s.t.Helper()
	addr := s.Addr()
	var ln net.Listener
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; {
		if ln, err = net.Listen("tcp", addr); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatalf("listening on %s: %v", addr, err)
	}
	g := s.newServer()
	s.mu.Lock()
	s.addr, s.g = ln.Addr().String(), g
	s.mu.Unlock()
	go g.Serve(ln)
}

// Stop stops the server and drops its connections; it does nothing if none is serving.
func (s *GRPCServer) Stop() {
	s.mu.Lock()
	g := s.g
	s.g = nil
	s.mu.Unlock()
	if g != nil {
		g.Stop()
	}
}
