package authz

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"net/netip"
	"net/url"
	"testing"

	"google.golang.org/protobuf/types/known/structpb"
)

func runPrincipalCases(t *testing.T, cases []matchCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := principalEngine(t, tc.rule)
			r := baseReq()
			if tc.mod != nil {
				tc.mod(r)
			}
			if got := e.Evaluate(r); got.Allowed != tc.want {
				t.Fatalf("principal %s on %+v: got %+v, want match=%v", tc.rule, r, got, tc.want)
			}
		})
	}
}

func peer(p *Peer) func(*fakeReq) { return func(r *fakeReq) { r.peer = p } }

func TestPrincipalAuthenticated(t *testing.T) {
	auth := func(sm string) string { return `{"authenticated":{"principalName":` + sm + `}}` }
	sleep := `{"exact":"spiffe://cluster.local/ns/default/sa/sleep"}`
	runPrincipalCases(t, []matchCase{
		{"uri san exact", auth(sleep), nil, true},
		{"uri san other", auth(`{"exact":"spiffe://cluster.local/ns/default/sa/other"}`), nil, false},
		{"no tls", auth(sleep), peer(nil), false},
		{"no tls, any name", `{"authenticated":{}}`, peer(nil), false},
		{"tls without cert, any name", `{"authenticated":{}}`, peer(&Peer{}), true},
		{"tls without cert, istio *", auth(`{"safeRegex":{"regex":".+"}}`), peer(&Peer{}), false},
		{"tls without cert, empty exact matches empty subject", auth(`{"exact":""}`), peer(&Peer{}), true},
		{"istio namespace regex", auth(`{"safeRegex":{"googleRe2":{},"regex":".*/ns/default/.*"}}`), nil, true},
		{"istio namespace regex other", auth(`{"safeRegex":{"regex":".*/ns/prod/.*"}}`), nil, false},
		{"istio namespace regex is anchored", auth(`{"safeRegex":{"regex":"/ns/default/"}}`), nil, false},
		{"istio service account regex", auth(`{"safeRegex":{"regex":"spiffe://.+/ns/default/(.+/|)sa/sleep(/.+)?"}}`), nil, true},
		{"istio service account regex no junk", auth(`{"safeRegex":{"regex":"spiffe://.+/ns/default/(.+/|)sa/sle(/.+)?"}}`), nil, false},
		{"prefix", auth(`{"prefix":"spiffe://cluster.local/"}`), nil, true},
		{"dns san when no uri", auth(`{"exact":"books.example.com"}`), peer(&Peer{DNSSANs: []string{"books.example.com"}, Subject: "CN=x"}), true},
		{"dns san also checked after uri", auth(`{"exact":"books.example.com"}`),
			peer(&Peer{URISANs: []string{"spiffe://td/ns/a/sa/b"}, DNSSANs: []string{"books.example.com"}}), true},
		{"second uri san", auth(`{"exact":"spiffe://td/ns/a/sa/c"}`),
			peer(&Peer{URISANs: []string{"spiffe://td/ns/a/sa/b", "spiffe://td/ns/a/sa/c"}}), true},
		{"subject", auth(`{"exact":"CN=client,O=Example"}`), peer(&Peer{Subject: "CN=client,O=Example"}), true},
		{"subject also checked with sans", auth(`{"exact":"CN=client"}`), peer(&Peer{URISANs: []string{"spiffe://x"}, Subject: "CN=client"}), true},
		{"not authenticated", `{"notId":` + auth(sleep) + `}`, peer(nil), true},
	})
}

func TestPrincipalIPs(t *testing.T) {
	remote := func(direct, remote string) func(*fakeReq) {
		return func(r *fakeReq) {
			r.direct, r.remote = netip.MustParseAddr(direct), netip.MustParseAddr(remote)
		}
	}
	runPrincipalCases(t, []matchCase{
		{"direct_remote_ip", `{"directRemoteIp":{"addressPrefix":"10.1.0.0","prefixLen":16}}`, nil, true},
		{"direct_remote_ip ignores xff", `{"directRemoteIp":{"addressPrefix":"203.0.113.0","prefixLen":24}}`, remote("10.1.0.9", "203.0.113.5"), false},
		{"remote_ip uses xff", `{"remoteIp":{"addressPrefix":"203.0.113.0","prefixLen":24}}`, remote("10.1.0.9", "203.0.113.5"), true},
		{"source_ip is the connection peer", `{"sourceIp":{"addressPrefix":"10.1.0.9","prefixLen":32}}`, remote("10.1.0.9", "203.0.113.5"), true},
		{"v6", `{"remoteIp":{"addressPrefix":"2001:db8::","prefixLen":64}}`, remote("::1", "2001:db8::5"), true},
		{"v6 zone ignored", `{"remoteIp":{"addressPrefix":"fe80::","prefixLen":64}}`, remote("::1", "fe80::1%eth0"), true},
		{"v4 range v6 address", `{"remoteIp":{"addressPrefix":"0.0.0.0","prefixLen":0}}`, remote("::1", "2001:db8::5"), false},
		{"invalid address", `{"remoteIp":{"addressPrefix":"0.0.0.0","prefixLen":0}}`, func(r *fakeReq) { r.remote = netip.Addr{} }, false},
		{"not invalid address", `{"notId":{"remoteIp":{"addressPrefix":"0.0.0.0","prefixLen":0}}}`, func(r *fakeReq) { r.remote = netip.Addr{} }, true},
	})
}

func TestPrincipalOther(t *testing.T) {
	runPrincipalCases(t, []matchCase{
		{"header", `{"header":{"name":"x-tenant","exactMatch":"a"}}`, setHeader("x-tenant", "a"), true},
		{"header missing", `{"header":{"name":"x-tenant","exactMatch":"a"}}`, nil, false},
		{"url_path", `{"urlPath":{"path":{"prefix":"/api"}}}`, nil, true},
		{"metadata", `{"metadata":{"filter":"istio_authn","path":[{"key":"request.auth.principal"}],"value":{"stringMatch":{"safeRegex":{"regex":".+"}}}}}`,
			func(r *fakeReq) {
				r.meta = map[string]*structpb.Struct{"istio_authn": mustStruct(t, map[string]any{"request.auth.principal": "iss/sub"})}
			}, true},
		{"filter_state peer principal", `{"filterState":{"key":"io.istio.peer_principal","stringMatch":{"exact":"spiffe://cluster.local/ns/a/sa/b"}}}`,
			func(r *fakeReq) {
				r.fs = map[string]string{"io.istio.peer_principal": "spiffe://cluster.local/ns/a/sa/b"}
			}, true},
		{"filter_state absent", `{"filterState":{"key":"io.istio.peer_principal","stringMatch":{"safeRegex":{"regex":".*"}}}}`, nil, false},
		{"and ids", `{"andIds":{"ids":[{"any":true},{"directRemoteIp":{"addressPrefix":"10.0.0.0","prefixLen":8}}]}}`, nil, true},
		{"or ids", `{"orIds":{"ids":[{"directRemoteIp":{"addressPrefix":"192.0.2.0","prefixLen":24}},{"authenticated":{"principalName":{"suffix":"/sa/sleep"}}}]}}`, nil, true},
		{"not id", `{"notId":{"any":true}}`, nil, false},
	})
}

func TestPeerFromCertificate(t *testing.T) {
	u, _ := url.Parse("spiffe://cluster.local/ns/a/sa/b")
	c := &x509.Certificate{URIs: []*url.URL{u}, DNSNames: []string{"b.a.svc"}, Subject: pkix.Name{CommonName: "b", Organization: []string{"O"}}}
	p := PeerFromCertificate(c)
	if len(p.URISANs) != 1 || p.URISANs[0] != "spiffe://cluster.local/ns/a/sa/b" || p.DNSSANs[0] != "b.a.svc" || p.Subject != "CN=b,O=O" {
		t.Fatalf("got %+v", p)
	}
	if p := PeerFromCertificate(nil); p == nil || len(p.URISANs) != 0 || p.Subject != "" {
		t.Fatalf("nil certificate: got %+v", p)
	}
}
