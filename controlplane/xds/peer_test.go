package xds

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/strait-mesh/strait/internal/node"
	"github.com/strait-mesh/strait/internal/testenv"
)

// meshPort runs srv behind the mesh port's TLS (client certificates verified against the mesh
// root when given) and, for the development port, in plaintext.
type meshPortEnv struct {
	srv        *Server
	tlsAddr    string
	plainAddr  string
	ca         *testenv.CA
	pool       *x509.CertPool
	trustedCAs *x509.CertPool
}

func newMeshPortEnv(t *testing.T) *meshPortEnv {
	t.Helper()
	e := newEnv(t, Options{TrustDomain: "cluster.local"})
	ca := testenv.NewCA(t, "cluster.local")
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{ca.Issue(t, testenv.Leaf{DNS: []string{"straitd"}})},
		ClientAuth:   tls.VerifyClientCertIfGiven, ClientCAs: pool,
	})))
	e.srv.Register(g)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return &meshPortEnv{srv: e.srv, tlsAddr: lis.Addr().String(), plainAddr: e.addr, ca: ca, pool: pool}
}

// open opens a Delta stream (over TLS with cert, or plaintext when plain) for node n and returns
// the first response's error (nil: the stream was accepted) and a func ending it.
func (e *meshPortEnv) open(t *testing.T, plain bool, cert *tls.Certificate, n *corev3.Node) (error, func()) {
	t.Helper()
	creds := insecure.NewCredentials()
	addr := e.plainAddr
	if !plain {
		cfg := &tls.Config{RootCAs: e.pool, ServerName: "straitd"}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		creds, addr = credentials.NewTLS(cfg), e.tlsAddr
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	end := func() { cancel(); cc.Close() }
	t.Cleanup(end)
	st, err := discovery.NewAggregatedDiscoveryServiceClient(cc).DeltaAggregatedResources(ctx)
	if err != nil {
		return err, end
	}
	if err := st.Send(&discovery.DeltaDiscoveryRequest{Node: n, TypeUrl: resource.ClusterType}); err != nil {
		_, rerr := st.Recv()
		return rerr, end
	}
	_, err = st.Recv()
	return err, end
}

func (e *meshPortEnv) cert(t *testing.T, spiffe string) *tls.Certificate {
	c := e.ca.Issue(t, testenv.Leaf{URIs: []string{spiffe}})
	return &c
}

const reviewsID = "spiffe://cluster.local/ns/default/sa/reviews"

func reviewsNode(ip string, meta map[string]string) *corev3.Node {
	return testNode(node.NewID(node.Sidecar, ip, "reviews-1", "default").String(), meta)
}

// TestMeshPortBindsStreamsToCertificates: on the mesh port, xDS needs a mesh client certificate
// and gives a proxy only its own namespace and service account; a node ID held by one identity is
// never taken over by another or by an unauthenticated stream.
func TestMeshPortBindsStreamsToCertificates(t *testing.T) {
	e := newMeshPortEnv(t)
	e.srv.Update(newMesh().add("reviews", "default", nil).snapshot())
	refused := func(name string, err error, code codes.Code, text string) {
		t.Helper()
		if status.Code(err) != code || !strings.Contains(err.Error(), text) {
			t.Errorf("%s: %v, want %s mentioning %q", name, err, code, text)
		}
	}

	err, _ := e.open(t, false, nil, reviewsNode("10.0.0.1", nil))
	refused("no client certificate", err, codes.Unauthenticated, "needs a mesh client certificate")

	other := testenv.NewCA(t, "other")
	forged := other.Issue(t, testenv.Leaf{URIs: []string{reviewsID}})
	if err, _ := e.open(t, false, &forged, reviewsNode("10.0.0.1", nil)); err == nil {
		t.Error("a client certificate of another root opened a stream")
	}

	err, _ = e.open(t, false, e.cert(t, "spiffe://evil.example/ns/default/sa/reviews"), reviewsNode("10.0.0.1", nil))
	refused("another trust domain", err, codes.PermissionDenied, "not of trust domain cluster.local")

	err, _ = e.open(t, false, e.cert(t, "spiffe://cluster.local/ns/other/sa/reviews"), reviewsNode("10.0.0.1", nil))
	refused("a foreign namespace", err, codes.PermissionDenied, `claims namespace "default"`)

	err, _ = e.open(t, false, e.cert(t, "spiffe://cluster.local/ns/default/sa/ratings"), reviewsNode("10.0.0.1", map[string]string{node.MetaServiceAccount: "reviews"}))
	refused("another service account", err, codes.PermissionDenied, `claims service account "reviews"`)

	// The rightful proxy connects; its service account comes from its certificate.
	holder := reviewsNode("10.0.0.1", nil)
	if err, _ := e.open(t, false, e.cert(t, reviewsID), holder); err != nil {
		t.Fatalf("the proxy with its own identity: %v", err)
	}
	before, ok := e.statusOf(holder.GetId())
	if !ok {
		t.Fatal("the proxy is not in syncz")
	}
	// Neither an unauthenticated stream nor another identity of the namespace takes its node ID.
	err, _ = e.open(t, true, nil, holder)
	refused("plaintext claim of a held node ID", err, codes.PermissionDenied, "in use by another connected proxy")
	err, _ = e.open(t, false, e.cert(t, "spiffe://cluster.local/ns/default/sa/ratings"), holder)
	refused("another identity's claim of a held node ID", err, codes.PermissionDenied, "in use by another connected proxy")
	after, _ := e.statusOf(holder.GetId())
	if after.Identity != reviewsID {
		t.Errorf("syncz identity = %q, want %s", after.Identity, reviewsID)
	}
	if after.ConnectedAt != before.ConnectedAt || after.Streams != before.Streams {
		t.Errorf("the holder's status changed: %+v → %+v", before, after)
	}
	if got := metricValue(t, e.srv.metrics.refused); got < 7 {
		t.Errorf("strait_xds_streams_refused_total = %v, want ≥ 7", got)
	}
}

// statusOf returns a proxy's syncz entry.
func (e *meshPortEnv) statusOf(id string) (ProxyStatus, bool) {
	for _, ps := range e.srv.Status() {
		if ps.Proxy == id {
			return ps, true
		}
	}
	return ProxyStatus{}, false
}

// TestAuthenticatedProxies: the proxies of the workload table are those whose stream proved an
// identity on the mesh port, not those of the plaintext port, and they leave when they
// disconnect.
func TestAuthenticatedProxies(t *testing.T) {
	e := newMeshPortEnv(t)
	e.srv.Update(newMesh().add("reviews", "default", nil).snapshot())
	authn := reviewsNode("10.0.0.1", nil)
	err, end := e.open(t, false, e.cert(t, reviewsID), authn)
	if err != nil {
		t.Fatal(err)
	}
	if err, _ := e.open(t, true, nil, reviewsNode("10.0.0.2", nil)); err != nil {
		t.Fatal(err)
	}
	got := e.srv.AuthenticatedProxies()
	if len(got) != 1 || got[0].Node.GetId() != authn.GetId() || got[0].Identity != reviewsID || got[0].ServiceAccount != "reviews" {
		t.Fatalf("authenticated proxies = %+v, want the one with identity %s", got, reviewsID)
	}
	end()
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := len(e.srv.AuthenticatedProxies()); n != 0 {
			return fmt.Errorf("%d authenticated proxies after the disconnection", n)
		}
		return nil
	})
}
