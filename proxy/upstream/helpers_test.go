package upstream

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/proxy/balance"
	"github.com/strait-mesh/strait/proxy/stats"
	clusterv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/cluster/v3"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	endpointv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/endpoint/v3"
)

// backend is a real loopback HTTP server that names itself in the X-Backend response header and
// counts the connections it accepted.
type backend struct {
	name     string
	ln       net.Listener
	srv      *http.Server
	accepted atomic.Int64
	status   atomic.Int64 // response status; 0 = 200
	hits     atomic.Int64
	handler  atomic.Pointer[http.HandlerFunc] // optional override (setHandler)
}

type backendOpt func(*backend, *http.Protocols)

func h2cBackend(b *backend, p *http.Protocols) {
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
}

func newBackend(t *testing.T, name string, opts ...backendOpt) *backend {
	t.Helper()
	return newBackendTB(t, name, opts...)
}

func newBackendTB(t testing.TB, name string, opts ...backendOpt) *backend {
	t.Helper()
	return newBackendAt(t, name, "127.0.0.1:0", opts...)
}

func newBackendAt(t testing.TB, name, addr string, opts ...backendOpt) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{name: name, ln: ln}
	var protos http.Protocols
	protos.SetHTTP1(true)
	for _, o := range opts {
		o(b, &protos)
	}
	b.srv = &http.Server{
		Handler:           http.HandlerFunc(b.serve),
		Protocols:         &protos,
		ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				b.accepted.Add(1)
			}
		},
	}
	srv := b.srv
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return b
}

func (b *backend) serve(w http.ResponseWriter, r *http.Request) {
	b.hits.Add(1)
	w.Header().Set("X-Backend", b.name)
	w.Header().Set("X-Proto", r.Proto)
	if h := b.handler.Load(); h != nil {
		(*h)(w, r)
		return
	}
	_, _ = io.Copy(io.Discard, r.Body)
	if s := b.status.Load(); s != 0 {
		w.WriteHeader(int(s))
	}
	_, _ = io.WriteString(w, "hello from "+b.name)
}

// setHandler overrides the backend's answer; safe while it serves.
func (b *backend) setHandler(h http.HandlerFunc) { b.handler.Store(&h) }

func (b *backend) port() uint32 { return uint32(b.ln.Addr().(*net.TCPAddr).Port) }

func lbEndpoint(host string, port uint32) *endpointv3.LbEndpoint {
	return &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
		}}},
	}}}
}

func assignment(name string, bs ...*backend) *endpointv3.ClusterLoadAssignment {
	la := &endpointv3.LocalityLbEndpoints{}
	for _, b := range bs {
		la.LbEndpoints = append(la.LbEndpoints, lbEndpoint("127.0.0.1", b.port()))
	}
	return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{la}}
}

func staticCluster(name string, lb clusterv3.Cluster_LbPolicy, bs ...*backend) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(2 * time.Second),
		LbPolicy:             lb,
		LoadAssignment:       assignment(name, bs...),
	}
}

func compileT(t *testing.T, c *clusterv3.Cluster, deps Deps) (*Cluster, *stats.Store) {
	t.Helper()
	if deps.Stats == nil {
		deps.Stats = stats.NewStore()
	}
	cl, err := Compile(c, deps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl, deps.Stats
}

func counter(s *stats.Store, name string) uint64 {
	return s.Counter(name, "").Value()
}

// gauge returns the value of a gauge, or of a gauge computed when rendered (GaugeFunc), as the
// store writes it, without registering one (s.Gauge would replace a GaugeFunc).
func gauge(s *stats.Store, name string) int64 {
	var b strings.Builder
	if err := s.WriteText(&b, name); err != nil {
		panic(err)
	}
	for _, line := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+": "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				panic(err)
			}
			return n
		}
	}
	return 0 // not registered: a gauge's zero value
}

// get sends one GET through the cluster and returns the answering backend's name.
func get(t *testing.T, cl *Cluster, lb balance.Context, hdr ...string) (string, *http.Response) {
	t.Helper()
	resp, err := do(cl, lb, "GET", "/", hdr...)
	if err != nil {
		t.Fatalf("request through %s: %v", cl.Name(), err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.Header.Get("X-Backend"), resp
}

// tally sends n GETs through cl and counts them per backend that answered.
func tally(t *testing.T, cl *Cluster, n int) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for range n {
		name, _ := get(t, cl, balance.Context{})
		seen[name]++
	}
	return seen
}

func do(cl *Cluster, lb balance.Context, method, path string, hdr ...string) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return doCtx(ctx, cl, lb, method, path, hdr...)
}

func doCtx(ctx context.Context, cl *Cluster, lb balance.Context, method, path string, hdr ...string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://svc.test"+path, nil)
	if err != nil {
		return nil, err
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := cl.RoundTrip(req, lb)
	if err != nil {
		return nil, err
	}
	// Buffer the body so the caller's deadline does not cut it.
	b, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytesReader(b))
	return resp, nil
}

type byteReader struct {
	b []byte
}

func bytesReader(b []byte) *byteReader { return &byteReader{b: b} }

func (r *byteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// flagOf returns the response flag of an upstream error, or "".
// getFailsWith sends GET / through cl and fails t unless it fails with the response flag want;
// what names the request in the failure message ("" for none).
func getFailsWith(t *testing.T, cl *Cluster, want, what string) {
	t.Helper()
	if what != "" {
		what += ": "
	}
	if _, err := do(cl, balance.Context{}, "GET", "/"); flagOf(err) != want {
		t.Fatalf("%serr = %v, want %s", what, err, want)
	}
}

func flagOf(err error) string {
	var ue *Error
	if errors.As(err, &ue) {
		return ue.Flag
	}
	return ""
}

// gate blocks handlers until released; it counts waiters.
type gate struct {
	ch      chan struct{}
	waiting atomic.Int64
	once    sync.Once
}

func newGate() *gate { return &gate{ch: make(chan struct{})} }

func (g *gate) wait(r *http.Request) {
	g.waiting.Add(1)
	defer g.waiting.Add(-1)
	select {
	case <-g.ch:
	case <-r.Context().Done():
	case <-time.After(20 * time.Second):
	}
}

func (g *gate) open() { g.once.Do(func() { close(g.ch) }) }

// breakerCluster is a ROUND_ROBIN static cluster name over backend a whose circuit breakers
// have the one (default priority) threshold th.
func breakerCluster(name string, a *backend, th *clusterv3.CircuitBreakers_Thresholds) *clusterv3.Cluster {
	c := staticCluster(name, clusterv3.Cluster_ROUND_ROBIN, a)
	c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{th}}
	return c
}

// gatedBackend is backend name, whose requests for /slow wait at the returned gate until it
// opens, at the end of the test at the latest.
func gatedBackend(t *testing.T, name string) (*backend, *gate) {
	t.Helper()
	b := newBackend(t, name)
	g := newGate()
	t.Cleanup(g.open) // before the backend closes: cleanups run last-registered first
	b.setHandler(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			g.wait(r)
		}
	})
	return b, g
}

func u32(v uint32) *wrapperspb.UInt32Value { return wrapperspb.UInt32(v) }

func freePort(t *testing.T) uint32 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	return uint32(p)
}

func names(n int, f func(i int) string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = f(i)
	}
	return out
}

type anyT = anypb.Any

func itoa(p uint32) string { return strconv.Itoa(int(p)) }

func wrapU64(v uint64) *wrapperspb.UInt64Value { return wrapperspb.UInt64(v) }

// origHosts counts the live original-destination hosts of cl.
func origHosts(cl *Cluster) int {
	n := 0
	cl.orig.Range(func(_, _ any) bool { n++; return true })
	return n
}

type structT = structpb.Struct

func structFromMap(m map[string]any) (*structpb.Struct, error) { return structpb.NewStruct(m) }

func mustStruct() *structpb.Struct { return &structpb.Struct{} }
