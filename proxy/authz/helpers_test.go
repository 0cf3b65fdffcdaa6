package authz

import (
	"net/netip"
	"testing"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/path/match/uri_template/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strait-mesh/strait/proxy/xdspb"
	prbacv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/rbac/v3"
)

// fakeReq is a hand-written Request for tests.
type fakeReq struct {
	method, path, host, scheme string
	headers                    map[string][]string
	dstIP                      netip.Addr
	dstPort                    uint16
	direct, remote             netip.Addr
	sni                        string
	peer                       *Peer
	meta                       map[string]*structpb.Struct
	fs                         map[string]string
}

var _ Request = (*fakeReq)(nil)

func (r *fakeReq) Method() string                     { return r.method }
func (r *fakeReq) Path() string                       { return r.path }
func (r *fakeReq) Host() string                       { return r.host }
func (r *fakeReq) Scheme() string                     { return r.scheme }
func (r *fakeReq) Header(name string) []string        { return r.headers[name] }
func (r *fakeReq) DestinationIP() netip.Addr          { return r.dstIP }
func (r *fakeReq) DestinationPort() uint16            { return r.dstPort }
func (r *fakeReq) DirectRemoteIP() netip.Addr         { return r.direct }
func (r *fakeReq) RemoteIP() netip.Addr               { return r.remote }
func (r *fakeReq) RequestedServerName() string        { return r.sni }
func (r *fakeReq) Peer() *Peer                        { return r.peer }
func (r *fakeReq) Metadata(f string) *structpb.Struct { return r.meta[f] }
func (r *fakeReq) FilterState(k string) (string, bool) {
	v, ok := r.fs[k]
	return v, ok
}

// baseReq is a typical in-mesh request: GET /api/v1/books?x=1 from the sleep workload.
func baseReq() *fakeReq {
	return &fakeReq{
		method: "GET", path: "/api/v1/books?x=1", host: "books.default.svc.cluster.local", scheme: "http",
		headers: map[string][]string{"user-agent": {"curl/8"}},
		dstIP:   netip.MustParseAddr("10.1.0.7"), dstPort: 9080,
		direct: netip.MustParseAddr("10.1.0.9"), remote: netip.MustParseAddr("10.1.0.9"),
		sni:  "outbound_.9080_._.books.default.svc.cluster.local",
		peer: &Peer{URISANs: []string{"spiffe://cluster.local/ns/default/sa/sleep"}},
	}
}

// mustRBAC decodes an envoy.config.rbac.v3.RBAC from JSON.
func mustRBAC(t testing.TB, js string) *rbacv3.RBAC {
	t.Helper()
	var r rbacv3.RBAC
	if err := protojson.Unmarshal([]byte(js), &r); err != nil {
		t.Fatalf("decoding RBAC %s: %v", js, err)
	}
	return &r
}

// mustCompile compiles JSON RBAC rules.
func mustCompile(t testing.TB, js string) *Engine {
	t.Helper()
	e, err := Compile(xdspb.MustFrom[*prbacv3.RBAC](mustRBAC(t, js)), "rules")
	if err != nil {
		t.Fatalf("Compile(xdspb.MustFrom[*prbacv3.RBAC](%s)): %v", js, err)
	}
	return e
}

// permissionEngine is an ALLOW engine with one policy: the permission (JSON) and any principal.
func permissionEngine(t testing.TB, perm string) *Engine {
	t.Helper()
	return mustCompile(t, `{"policies":{"p":{"permissions":[`+perm+`],"principals":[{"any":true}]}}}`)
}

// principalEngine is an ALLOW engine with one policy: any permission and the principal (JSON).
func principalEngine(t testing.TB, princ string) *Engine {
	t.Helper()
	return mustCompile(t, `{"policies":{"p":{"permissions":[{"any":true}],"principals":[`+princ+`]}}}`)
}

func mustStruct(t testing.TB, m map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type structpbStruct = structpb.Struct

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
