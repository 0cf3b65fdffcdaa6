package extauthz

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/httpmsg"
	"github.com/strait-mesh/strait/proxy/xdspb"
	pextauthzv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/ext_authz/v3"
)

// addrRT sends every request to one loopback address, as a one-endpoint cluster would.
type addrRT struct {
	addr string
	rt   http.RoundTripper
}

func (a addrRT) RoundTrip(req *http.Request) (*http.Response, error) {
	out := req.Clone(req.Context())
	out.URL.Scheme, out.URL.Host = "http", a.addr
	return a.rt.RoundTrip(out)
}

func h1RT(addr string) addrRT {
	return addrRT{addr: addr, rt: &http.Transport{DisableCompression: true}}
}

func h2cRT(addr string) addrRT {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return addrRT{addr: addr, rt: &http.Transport{Protocols: p, DisableCompression: true}}
}

// seen is one request an authorization server received.
type seen struct {
	method, uri, host string
	header            http.Header
	body              string
	contentLength     int64
}

// recorder is an HTTP authorization server that records requests and answers with reply.
type recorder struct {
	testenv.Calls[seen]
	mu    sync.Mutex
	reply func(w http.ResponseWriter, r *http.Request)
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	rec.Add(seen{r.Method, r.RequestURI, r.Host, r.Header.Clone(), string(b), r.ContentLength})
	rec.mu.Lock()
	reply := rec.reply
	rec.mu.Unlock()
	reply(w, r)
}

func (rec *recorder) set(reply func(w http.ResponseWriter, r *http.Request)) {
	rec.mu.Lock()
	rec.reply = reply
	rec.mu.Unlock()
}

func clientRequest() *Request {
	return &Request{
		Method: "POST", Path: "/api/items?q=1", Host: "svc.local", Scheme: "http", Protocol: "HTTP/1.1", ID: "req-1",
		Header: http.Header{
			"Authorization": {"Bearer t"}, "X-Ext-Authz": {"allow"}, "X-Pass-One": {"1", "2"}, "X-Other": {"no"},
			"Cookie": {"c=1"}, "Te": {"trailers"},
		},
		Time:   time.Unix(1700000000, 5),
		Source: netip.MustParseAddrPort("10.0.0.1:5555"), Destination: netip.MustParseAddrPort("10.0.0.2:8080"),
	}
}

func mustCompile(t *testing.T, cfg *extauthzv3.ExtAuthz) *Config {
	t.Helper()
	c, err := Compile(xdspb.MustFrom[*pextauthzv3.ExtAuthz](cfg), "f")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestHTTPServiceRequest(t *testing.T) {
	rec := &recorder{reply: func(w http.ResponseWriter, r *http.Request) {}}
	addr := testenv.HTTPBackend(t, rec.ServeHTTP)
	c := mustCompile(t, istioHTTP("authz"))
	res := c.Check(context.Background(), h1RT(addr), clientRequest())
	if res.Status != StatusOK {
		t.Fatalf("status %v: %v", res.Status, res.Err)
	}
	got := rec.Last(t)
	if got.method != "POST" || got.uri != "/check/api/items?q=1" || got.host != "svc.local" || got.contentLength != 0 || got.body != "" {
		t.Errorf("request %s %s host %s length %d body %q", got.method, got.uri, got.host, got.contentLength, got.body)
	}
	want := map[string]string{"Authorization": "Bearer t", "X-Ext-Authz": "allow", "X-Pass-One": "1,2", "X-Added": "by-proxy"}
	for k, v := range want {
		if g := got.header.Get(k); g != v {
			t.Errorf("%s = %q, want %q", k, g, v)
		}
	}
	for _, k := range []string{"X-Other", "Cookie", "Te", "X-Envoy-Auth-Partial-Body", "User-Agent"} {
		if _, ok := got.header[k]; ok {
			t.Errorf("%s sent to the authorization service: %q", k, got.header[k])
		}
	}

	// path_override, disallowed_headers, and the body with its partial flag.
	cfg := istioHTTP("authz")
	cfg.GetHttpService().PathPrefix = ""
	cfg.GetHttpService().PathOverride = "/verify"
	cfg.DisallowedHeaders = list(exact("x-ext-authz"), exact("authorization"))
	cfg.WithRequestBody = &extauthzv3.BufferSettings{MaxRequestBytes: 4, AllowPartialMessage: true}
	c = mustCompile(t, cfg)
	req := clientRequest()
	req.Body, req.BodyBuffered, req.PartialBody = []byte("abcd"), true, true
	if res := c.Check(context.Background(), h1RT(addr), req); res.Status != StatusOK {
		t.Fatalf("status %v: %v", res.Status, res.Err)
	}
	got = rec.Last(t)
	if got.uri != "/verify" || got.body != "abcd" || got.contentLength != 4 || got.header.Get("X-Envoy-Auth-Partial-Body") != "true" ||
		got.header.Get("X-Ext-Authz") != "" || got.header.Get("Authorization") != "" || got.header.Get("X-Pass-One") != "1,2" {
		t.Errorf("request %s body %q length %d header %v", got.uri, got.body, got.contentLength, got.header)
	}
}

func TestHTTPServiceReplies(t *testing.T) {
	rec := &recorder{}
	addr := testenv.HTTPBackend(t, rec.ServeHTTP)
	cfg := istioHTTP("authz")
	cfg.GetHttpService().GetAuthorizationResponse().AllowedUpstreamHeadersToAppend = list(exact("x-tag"))
	cfg.GetHttpService().GetAuthorizationResponse().DynamicMetadataFromHeaders = list(exact("x-user"))
	cfg.MaxDeniedResponseBodyBytes = 10
	c := mustCompile(t, cfg)
	check := func() *Response { return c.Check(context.Background(), h1RT(addr), clientRequest()) }

	rec.set(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Ext-Authz-Check-Result", "allowed")
		h["X-User"] = []string{"alice"}
		h["X-Tag"] = []string{"a", "b"}
		h.Set("X-Session", "s1")
		h.Set("X-Other", "o")
		h.Set("X-Envoy-Auth-Headers-To-Remove", "cookie, X-Secret,:path, host")
		io.WriteString(w, "ignored")
	})
	res := check()
	if res.Status != StatusOK || res.Invalid {
		t.Fatalf("allow: %+v", res)
	}
	wantReq := []HeaderOp{{"x-ext-authz-check-result", "allowed", Set}, {"x-tag", "a", Add}, {"x-tag", "b", Add}, {"x-user", "alice", Set}}
	if !reflect.DeepEqual(res.RequestHeaders, wantReq) {
		t.Errorf("request headers %v, want %v", res.RequestHeaders, wantReq)
	}
	if want := []HeaderOp{{"x-session", "s1", Add}}; !reflect.DeepEqual(res.ResponseHeaders, want) {
		t.Errorf("response headers %v, want %v", res.ResponseHeaders, want)
	}
	if want := []string{"cookie", "x-secret"}; !reflect.DeepEqual(res.RemoveHeaders, want) {
		t.Errorf("remove %v, want %v", res.RemoveHeaders, want)
	}
	if res.Metadata.GetFields()["x-user"].GetStringValue() != "alice" {
		t.Errorf("metadata %v", res.Metadata)
	}

	rec.set(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Ext-Authz-Check-Result", "denied")
		h["Set-Cookie"] = []string{"a=1", "b=2"}
		h.Set("X-Other", "o")
		h.Set("X-Envoy-Auth-Headers-To-Remove", "cookie")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, "denied by policy")
	})
	res = check()
	if res.Status != StatusDenied || res.Code != 401 || res.Body != "denied by " || len(res.RemoveHeaders) != 0 {
		t.Fatalf("deny: %+v", res)
	}
	wantResp := []HeaderOp{{"set-cookie", "a=1", Set}, {"set-cookie", "b=2", Add}, {"x-ext-authz-check-result", "denied", Set}}
	if !reflect.DeepEqual(res.ResponseHeaders, wantResp) {
		t.Errorf("denial headers %v, want %v", res.ResponseHeaders, wantResp)
	}

	rec.set(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://login.example.com/", http.StatusFound)
	})
	if res = check(); res.Status != StatusDenied || res.Code != 302 || !hasOp(res.ResponseHeaders, "location", "https://login.example.com/") ||
		hasName(res.ResponseHeaders, "content-type") {
		t.Fatalf("redirect: %+v", res)
	}

	rec.set(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	if res = check(); res.Status != StatusError {
		t.Fatalf("5xx: %+v", res)
	}

	rec.set(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		w.Write(make([]byte, MaxHTTPResponseBytes+1))
	})
	if res = check(); res.Status != StatusError {
		t.Fatalf("oversized denial: %+v", res)
	}

	// Without allowed_client_headers every header but Host reaches the client, never the framing.
	cfg.GetHttpService().GetAuthorizationResponse().AllowedClientHeaders = nil
	c = mustCompile(t, cfg)
	rec.set(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Other", "o")
		w.Header().Set("Connection", "close")
		http.Error(w, "no", http.StatusForbidden)
	})
	res = c.Check(context.Background(), h1RT(addr), clientRequest())
	if res.Status != StatusDenied || !hasOp(res.ResponseHeaders, "x-other", "o") || !hasName(res.ResponseHeaders, "content-type") ||
		hasName(res.ResponseHeaders, "content-length") || hasName(res.ResponseHeaders, "connection") {
		t.Fatalf("default client headers: %+v", res)
	}
}

func hasOp(ops []HeaderOp, name, value string) bool {
	for _, op := range ops {
		if op.Name == name && op.Value == value {
			return true
		}
	}
	return false
}

func hasName(ops []HeaderOp, name string) bool {
	for _, op := range ops {
		if op.Name == name {
			return true
		}
	}
	return false
}

func TestHTTPServiceFailures(t *testing.T) {
	addr := testenv.HangingHTTPBackend(t)
	cfg := istioHTTP("authz")
	cfg.GetHttpService().GetServerUri().Timeout = durationpb.New(50 * time.Millisecond)
	c := mustCompile(t, cfg)
	if res := c.Check(context.Background(), h1RT(addr), clientRequest()); res.Status != StatusError || res.Err == nil {
		t.Fatalf("timeout: %+v", res)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := ln.Addr().String()
	ln.Close()
	if res := c.Check(context.Background(), h1RT(down), clientRequest()); res.Status != StatusError || !strings.Contains(res.Err.Error(), "authz") {
		t.Fatalf("service down: %+v", res)
	}
}

func TestApplyHeadersAndQuery(t *testing.T) {
	h := msgHeader(http.Header{"A": {"1"}, "B": {"x", "y"}, "C": {"c"}})
	changed := ApplyHeaders(h, []HeaderOp{
		{"a", "2", Set}, {"b", "z", Append}, {"d", "d1", Add}, {"d", "d2", Add},
		{"c", "no", AddIfAbsent}, {"e", "e", AddIfAbsent}, {"f", "no", OverwriteIfExists}, {"c", "c2", OverwriteIfExists},
	})
	want := http.Header{"A": {"2"}, "B": {"x,y,z"}, "C": {"c2"}, "D": {"d1", "d2"}, "E": {"e"}}
	if got := mapHeader(h); !changed || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if ApplyHeaders(h, []HeaderOp{{"c", "x", AddIfAbsent}, {"zz", "x", OverwriteIfExists}}) {
		t.Error("no-op mutations reported a change")
	}
	if !RemoveHeaders(h, []string{"a", "missing"}) || h.Get("A") != "" || RemoveHeaders(h, []string{"missing"}) {
		t.Error("RemoveHeaders")
	}
	for _, tc := range []struct {
		in     string
		set    []QueryParam
		remove []string
		want   string
	}{
		{"a=1&b=2&a=3", []QueryParam{{"a", "x y"}}, nil, "a=x+y&b=2"},
		{"a=1&b=2", []QueryParam{{"c", "3"}}, []string{"a"}, "b=2&c=3"},
		{"", []QueryParam{{"k", "v"}}, nil, "k=v"},
		{"x%20y=1&z=2", nil, []string{"x y"}, "z=2"},
		{"a=1", nil, []string{"a"}, ""},
	} {
		if got, _ := MutateQuery(tc.in, tc.set, tc.remove); got != tc.want {
			t.Errorf("MutateQuery(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if _, changed := MutateQuery("a=1", []QueryParam{{"a", "1"}}, nil); changed {
		t.Error("setting the same value reported a change")
	}
}

// msgHeader and mapHeader convert between net/http's header map and the codec's fields.
func msgHeader(m http.Header) *httpmsg.Header {
	h := new(httpmsg.Header)
	for k, vs := range m {
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	return h
}

func mapHeader(h *httpmsg.Header) http.Header {
	m := http.Header{}
	for i := 0; i < h.Len(); i++ {
		k, v := h.Field(i)
		m.Add(string(k), string(v))
	}
	return m
}
