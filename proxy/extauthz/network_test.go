package extauthz

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/netip"
	"net/url"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/xdspb"
	pnetextauthzv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/ext_authz/v3"
)

func TestCompileNetwork(t *testing.T) {
	c, err := CompileNetwork(xdspb.MustFrom[*pnetextauthzv3.ExtAuthz](testenv.IstioNetworkExtAuthz("outbound|9000||ext-authz.foo.svc.cluster.local")), "f")
	if err != nil {
		t.Fatal(err)
	}
	if c.Cluster != "outbound|9000||ext-authz.foo.svc.cluster.local" || c.Timeout != 600*time.Second || c.FailureModeAllow ||
		c.StatPrefix != "ext_authz.tcp.." || c.grpc.Authority != "ext-authz.foo.svc.cluster.local" {
		t.Errorf("compiled %+v", c)
	}
	// filter_enabled_metadata: only connections the shadow RBAC filter matched a CUSTOM policy for.
	md := shadowPolicyMetadata("envoy.filters.network.rbac")
	if !c.Enabled(md("istio-ext-authz-ns[foo]-policy[p]-rule[0]")) || c.Enabled(md("")) || c.Enabled(md("ns[foo]-policy[p]-rule[0]")) {
		t.Error("filter_enabled_metadata")
	}
	cfg := testenv.IstioNetworkExtAuthz("c")
	cfg.GrpcService.Timeout = nil
	cfg.FilterEnabledMetadata = nil
	if c, err = CompileNetwork(xdspb.MustFrom[*pnetextauthzv3.ExtAuthz](cfg), "f"); err != nil || c.Timeout != DefaultTimeout || !c.Enabled(md("")) {
		t.Errorf("defaults: %+v %v", c, err)
	}
}

func TestNetworkCheck(t *testing.T) {
	a := &authServer{reply: func(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return &authv3.CheckResponse{Status: &rpcstatus.Status{},
			DynamicMetadata: &structpb.Struct{Fields: map[string]*structpb.Value{"user": structpb.NewStringValue("alice")}}}, nil
	}}
	addr := testenv.AuthorizationServer(t, a)
	cfg := testenv.IstioNetworkExtAuthz("authz")
	cfg.IncludeTlsSession = true
	cfg.MetadataContextNamespaces = []string{"envoy.filters.network.rbac", "absent"}
	c, err := CompileNetwork(xdspb.MustFrom[*pnetextauthzv3.ExtAuthz](cfg), "f")
	if err != nil {
		t.Fatal(err)
	}
	spiffe, _ := url.Parse("spiffe://cluster.local/ns/a/sa/client")
	rbacMD := &structpb.Struct{Fields: map[string]*structpb.Value{"k": structpb.NewStringValue("v")}}
	conn := &Connection{
		Source: netip.MustParseAddrPort("10.0.0.1:5555"), Destination: netip.MustParseAddrPort("10.0.0.2:8080"),
		TLS: true, SNI: "svc.local",
		PeerCertificate:  &x509.Certificate{URIs: []*url.URL{spiffe}, DNSNames: []string{"client.local"}},
		LocalCertificate: &x509.Certificate{Subject: pkix.Name{CommonName: "server"}},
		Metadata: func(ns string) *structpb.Struct {
			if ns == "envoy.filters.network.rbac" {
				return rbacMD
			}
			return nil
		},
	}
	res := c.Check(context.Background(), h2cRT(addr), conn)
	if res.Status != StatusOK || res.Metadata.GetFields()["user"].GetStringValue() != "alice" {
		t.Fatalf("allow: %+v", res)
	}
	got := a.Last(t)
	if got.md.Get(":authority")[0] != "ext-authz.foo.svc.cluster.local" || !got.hasDeadline {
		t.Errorf("call metadata %v deadline %v", got.md, got.hasDeadline)
	}
	ac := got.req.GetAttributes()
	checkPeers(t, ac, "spiffe://cluster.local/ns/a/sa/client", "CN=server")
	if ac.GetRequest() != nil || ac.GetTlsSession().GetSni() != "svc.local" {
		t.Errorf("request %v, tls_session %v", ac.GetRequest(), ac.GetTlsSession())
	}
	if fm := ac.GetMetadataContext().GetFilterMetadata(); len(fm) != 1 || !proto.Equal(fm["envoy.filters.network.rbac"], rbacMD) {
		t.Errorf("metadata_context %v", fm)
	}

	// Plaintext: no principals, no tls_session.
	conn.TLS = false
	if res = c.Check(context.Background(), h2cRT(addr), conn); res.Status != StatusOK {
		t.Fatalf("plaintext: %+v", res)
	}
	if ac = a.Last(t).req.GetAttributes(); ac.GetSource().GetPrincipal() != "" || ac.GetDestination().GetPrincipal() != "" || ac.GetTlsSession() != nil {
		t.Errorf("plaintext attributes %v", ac)
	}

	for name, tc := range map[string]struct {
		reply func(*authv3.CheckRequest) (*authv3.CheckResponse, error)
		want  Status
	}{
		"denied": {func(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
			return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)}}, nil
		}, StatusDenied},
		"error_response": {func(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
			return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.Internal)},
				HttpResponse: &authv3.CheckResponse_ErrorResponse{ErrorResponse: &authv3.DeniedHttpResponse{}}}, nil
		}, StatusError},
		"grpc error": {func(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
			return nil, status.Error(codes.Unavailable, "down")
		}, StatusError},
	} {
		a.set(tc.reply)
		if res := c.Check(context.Background(), h2cRT(addr), conn); res.Status != tc.want || (tc.want == StatusError) != (res.Err != nil) {
			t.Errorf("%s: %+v, want %v", name, res, tc.want)
		}
	}
}

func TestCertPrincipal(t *testing.T) {
	u, _ := url.Parse("spiffe://td/ns/a/sa/b")
	for _, tc := range []struct {
		c    *x509.Certificate
		want string
	}{
		{nil, ""},
		{&x509.Certificate{URIs: []*url.URL{u}, DNSNames: []string{"d"}}, "spiffe://td/ns/a/sa/b"},
		{&x509.Certificate{DNSNames: []string{"d", "e"}}, "d"},
		{&x509.Certificate{Subject: pkix.Name{CommonName: "cn", Organization: []string{"o"}}}, "CN=cn,O=o"},
	} {
		if got := CertPrincipal(tc.c); got != tc.want {
			t.Errorf("CertPrincipal = %q, want %q", got, tc.want)
		}
	}
}
