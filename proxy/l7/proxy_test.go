package l7

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/proxy/route"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
)

// seen is what an upstream reports about the request it received.
type seen struct {
	Proto  string
	Method string
	Host   string
	URI    string
	Header http.Header
	Body   string
}

func echoHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Connection", "x-hop") // hop-by-hop: must not reach the client
		w.Header().Set("X-Hop", "secret")
		json.NewEncoder(w).Encode(seen{Proto: r.Proto, Method: r.Method, Host: r.Host, URI: r.RequestURI, Header: r.Header, Body: string(b)})
	})
}

func decodeSeen(t *testing.T, resp *http.Response) seen {
	t.Helper()
	defer resp.Body.Close()
	var s seen
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatalf("decoding upstream echo: %v", err)
	}
	return s
}

func TestHTTP1DownstreamToH2CUpstream(t *testing.T) {
	up := startUpstream(t, echoHandler(), true)
	env := &testEnv{clusters: map[string]Upstream{"backend": newTestUpstream(up, true)}}
	rc := oneVhost(fwdRoute("r", pfx("/old/"), &routev3.RouteAction{
		ClusterSpecifier:     &routev3.RouteAction_Cluster{Cluster: "backend"},
		PrefixRewrite:        "/new/",
		HostRewriteSpecifier: &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: "backend.internal"},
	}))
	rc.VirtualHosts[0].RequestHeadersToAdd = []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-vhost", Value: "yes"}}}
	rc.VirtualHosts[0].ResponseHeadersToAdd = []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-resp", Value: "added"}}}
	hcm := inlineHCM(rc)
	hcm.UseRemoteAddress = wrapperspb.Bool(true)
	p := startProxy(t, hcm, env, false)

	req, _ := http.NewRequest("POST", p.url("/old/x?q=1"), strings.NewReader("hello"))
	req.Header.Set("Connection", "keep-alive, X-Drop")
	req.Header.Set("X-Drop", "hop")
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	req.Header.Set("X-Envoy-Retry-On", "5xx") // from an external client (no address is internal by default): removed
	resp, err := h1Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if resp.Header.Get("X-Resp") != "added" || resp.Header.Get("Server") != "envoy" ||
		resp.Header.Get("X-Envoy-Upstream-Service-Time") == "" {
		t.Errorf("response headers %v", resp.Header)
	}
	s := decodeSeen(t, resp)
	if s.Proto != "HTTP/2.0" || s.Host != "backend.internal" || s.URI != "/new/x?q=1" || s.Body != "hello" {
		t.Errorf("upstream saw %+v", s)
	}
	h := s.Header
	if h.Get("X-Drop") != "" || h.Get("X-Vhost") != "yes" || h.Get("X-Envoy-Original-Path") != "/old/x?q=1" ||
		h.Get("X-Forwarded-For") != "203.0.113.9,127.0.0.1" || h.Get("X-Forwarded-Proto") != "http" ||
		h.Get("X-Envoy-Internal") != "" || h.Get("X-Envoy-External-Address") != "127.0.0.1" ||
		len(h.Get("X-Request-Id")) != 36 || h.Get("X-Envoy-Retry-On") != "" ||
		h.Get("X-Envoy-Expected-Rq-Timeout-Ms") != "15000" {
		t.Errorf("upstream headers %v", h)
	}
	ri := p.nextInfo(t)
	if ri.Status != 200 || ri.Cluster != "backend" || ri.Protocol != "HTTP/1.1" || ri.Flags != 0 || ri.BytesReceived != 5 {
		t.Errorf("request info %+v", ri)
	}
	if p.counter("http.test.downstream_rq_2xx") != 1 || p.counter("cluster.backend.upstream_rq_200") != 1 {
		t.Error("stats not recorded")
	}
}

func TestRequestIDKeptAndGenerated(t *testing.T) {
	up := startUpstream(t, echoHandler(), false)
	env := &testEnv{clusters: map[string]Upstream{"backend": newTestUpstream(up, false)}}
	p := startProxy(t, inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("backend")))), env, false)
	req, _ := http.NewRequest("GET", p.url("/"), nil)
	req.Header.Set("X-Request-Id", "keep-me-123")
	resp, err := h1Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get("X-Hop") != "" {
		t.Error("a header named in the upstream's Connection header reached the client")
	}
	if s := decodeSeen(t, resp); s.Header.Get("X-Request-Id") != "keep-me-123" {
		t.Errorf("x-request-id %q", s.Header.Get("X-Request-Id"))
	}
}

func TestH2OverTLSDownstreamToHTTP1Upstream(t *testing.T) {
	up := startUpstream(t, echoHandler(), false)
	env := &testEnv{clusters: map[string]Upstream{"backend": newTestUpstream(up, false)}}
	p := startProxy(t, inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("backend")))), env, true)
	pool := x509.NewCertPool()
	pool.AddCert(p.cert)
	c := &http.Client{Transport: &http.Transport{ForceAttemptHTTP2: true, TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "proxy.test"}}}
	resp, err := c.Post("https://"+p.addr+"/tls?x=1", "text/plain", strings.NewReader("over h2"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("downstream protocol %s, want HTTP/2", resp.Proto)
	}
	s := decodeSeen(t, resp)
	if s.Proto != "HTTP/1.1" || s.Body != "over h2" || s.URI != "/tls?x=1" || s.Header.Get("X-Forwarded-Proto") != "https" {
		t.Errorf("upstream saw %+v", s)
	}
	if ri := p.nextInfo(t); ri.Protocol != "HTTP/2" || ri.Conn.ALPN != "h2" {
		t.Errorf("info %+v", ri)
	}
}

func TestH2CPriorKnowledgeDownstream(t *testing.T) {
	up := startUpstream(t, echoHandler(), false)
	env := &testEnv{clusters: map[string]Upstream{"backend": newTestUpstream(up, false)}}
	p := startProxy(t, inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("backend")))), env, false)
	resp, err := h2cClient().Get(p.url("/h2c"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("downstream protocol %s", resp.Proto)
	}
	if s := decodeSeen(t, resp); s.Proto != "HTTP/1.1" || s.URI != "/h2c" {
		t.Errorf("upstream saw %+v", s)
	}
}

func TestLocalRepliesAndFlags(t *testing.T) {
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := closed.Addr().String()
	closed.Close()
	env := &testEnv{clusters: map[string]Upstream{"dead": newTestUpstream(deadAddr, false)}}
	rc := oneVhost(
		fwdRoute("dead", pfx("/dead"), toCluster("dead")),
		fwdRoute("missing", pfx("/missing"), toCluster("nope")),
		&routev3.Route{Match: pfx("/direct"), Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
			Status: 418, Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "short and stout"}}}}},
		&routev3.Route{Match: pfx("/redirect"), Action: &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{
			HostRedirect: "elsewhere.test", ResponseCode: routev3.RedirectAction_FOUND}}},
	)
	rc.VirtualHosts[0].Domains = []string{"known.test"}
	p := startProxy(t, inlineHCM(rc), env, false)
	c := h1Client()
	do := func(host, path string) (*http.Response, string) {
		req, _ := http.NewRequest("GET", p.url(path), nil)
		req.Host = host
		return roundTrip(t, c, req)
	}
	cases := []struct {
		host, path string
		status     int
		flags      string
		body       string
	}{
		{"unknown.test", "/", 404, "NR", ""},
		{"known.test", "/nothing", 404, "NR", ""},
		{"known.test", "/dead", 503, "UF", "upstream connect error or disconnect/reset before headers. reset reason: connection failure"},
		{"known.test", "/missing", 503, "NC", ""},
		{"known.test", "/direct", 418, "-", "short and stout"},
		{"known.test", "/redirect?a=b", 302, "-", ""},
	}
	for _, tc := range cases {
		resp, body := do(tc.host, tc.path)
		ri := p.nextInfo(t)
		if resp.StatusCode != tc.status || ri.Flags.String() != tc.flags || body != tc.body {
			t.Errorf("%s%s: status %d flags %s body %q", tc.host, tc.path, resp.StatusCode, ri.Flags, body)
		}
		if tc.status == 302 && resp.Header.Get("Location") != "http://elsewhere.test/redirect?a=b" {
			t.Errorf("location %q", resp.Header.Get("Location"))
		}
	}
	if p.counter("http.test.no_route") != 2 || p.counter("http.test.downstream_rq_response_flags.UF") != 1 {
		t.Error("no_route / flag stats")
	}
}

func TestHeaderLimits431(t *testing.T) {
	up := startUpstream(t, echoHandler(), false)
	env := &testEnv{clusters: map[string]Upstream{"backend": newTestUpstream(up, false)}}
	p := startProxy(t, inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("backend")))), env, false)
	c := h1Client()
	req, _ := http.NewRequest("GET", p.url("/"), nil)
	req.Header.Set("X-Big", strings.Repeat("a", 61<<10))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("61 KiB header: status %d", resp.StatusCode)
	}
	req, _ = http.NewRequest("GET", p.url("/"), nil)
	for i := 0; i < 101; i++ {
		req.Header.Set("X-H"+itoa(i), "v")
	}
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("101 headers: status %d", resp.StatusCode)
	}
	// HTTP/2 too.
	req, _ = http.NewRequest("GET", p.url("/"), nil)
	for i := 0; i < 101; i++ {
		req.Header.Set("X-H"+itoa(i), "v")
	}
	resp, err = h2cClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("h2 101 headers: status %d", resp.StatusCode)
	}
	// One oversized header over HTTP/2: a 431 reply, not a connection error.
	req, _ = http.NewRequest("GET", p.url("/"), nil)
	req.Header.Set("X-Big", strings.Repeat("b", 70<<10))
	resp, err = h2cClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("h2 70 KiB header: status %d", resp.StatusCode)
	}
	// Within the limits passes.
	req, _ = http.NewRequest("GET", p.url("/"), nil)
	req.Header.Set("X-Big", strings.Repeat("a", 50<<10))
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("50 KiB header: status %d", resp.StatusCode)
	}
}

func TestUnsupportedFilterIsRejected(t *testing.T) {
	hcm := inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("c"))),
		&hcmv3.HttpFilter{Name: "envoy.filters.http.ext_authz"})
	_, err := New(hcm, &testEnv{}, Options{})
	var ue *route.UnsupportedError
	if err == nil || !asUE(err, &ue) || !strings.Contains(err.Error(), "ext_authz") {
		t.Fatalf("got %v", err)
	}
	hcm = inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("c"))),
		&hcmv3.HttpFilter{Name: "istio.stats", IsOptional: true})
	if _, err := New(hcm, &testEnv{}, Options{}); err != nil {
		t.Fatalf("optional filter: %v", err)
	}
	hcm = inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("c"))))
	hcm.Tracing = &hcmv3.HttpConnectionManager_Tracing{Verbose: true} // tracing is supported, verbose is not
	if _, err := New(hcm, &testEnv{}, Options{}); err == nil || !strings.Contains(err.Error(), "http_connection_manager.tracing.verbose") {
		t.Fatalf("tracing: %v", err)
	}
}

func asUE(err error, target **route.UnsupportedError) bool {
	for err != nil {
		if ue, ok := err.(*route.UnsupportedError); ok {
			*target = ue
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}
