package authz_test

import (
	"fmt"
	"net/netip"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strait-mesh/strait/proxy/authz"
	"github.com/strait-mesh/strait/proxy/xdspb"
	prbacv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/rbac/v3"
)

// request is a minimal authz.Request.
type request struct {
	method, path string
	peer         *authz.Peer
}

func (r request) Method() string                    { return r.method }
func (r request) Path() string                      { return r.path }
func (r request) Host() string                      { return "books.default.svc.cluster.local" }
func (r request) Scheme() string                    { return "http" }
func (r request) Header(string) []string            { return nil }
func (r request) DestinationIP() netip.Addr         { return netip.MustParseAddr("10.1.0.7") }
func (r request) DestinationPort() uint16           { return 9080 }
func (r request) DirectRemoteIP() netip.Addr        { return netip.MustParseAddr("10.1.0.9") }
func (r request) RemoteIP() netip.Addr              { return netip.MustParseAddr("10.1.0.9") }
func (r request) RequestedServerName() string       { return "" }
func (r request) Peer() *authz.Peer                 { return r.peer }
func (r request) Metadata(string) *structpb.Struct  { return nil }
func (r request) FilterState(string) (string, bool) { return "", false }

func ExampleCompile() {
	var rules rbacv3.RBAC
	_ = protojson.Unmarshal([]byte(`{"action":"ALLOW","policies":{"ns[default]-policy[viewer]-rule[0]":{
	  "permissions":[{"andRules":{"rules":[{"orRules":{"rules":[{"header":{"name":":method","exactMatch":"GET"}}]}}]}}],
	  "principals":[{"andIds":{"ids":[{"orIds":{"ids":[{"authenticated":{"principalName":{"safeRegex":{"regex":".*/ns/default/.*"}}}}]}}]}}]}}}`), &rules)
	e, err := authz.Compile(xdspb.MustFrom[*prbacv3.RBAC](&rules), "rules")
	if err != nil {
		fmt.Println(err)
		return
	}
	sleep := &authz.Peer{URISANs: []string{"spiffe://cluster.local/ns/default/sa/sleep"}}
	fmt.Printf("%+v\n", e.Evaluate(request{method: "GET", path: "/books", peer: sleep}))
	fmt.Printf("%+v\n", e.Evaluate(request{method: "DELETE", path: "/books", peer: sleep}))
	fmt.Printf("%+v\n", e.Evaluate(request{method: "GET", path: "/books"}))
	// Output:
	// {Allowed:true Matched:true Policy:ns[default]-policy[viewer]-rule[0]}
	// {Allowed:false Matched:false Policy:}
	// {Allowed:false Matched:false Policy:}
}
