package l7

import (
	"bufio"
	"encoding/json"
	"github.com/strait-mesh/strait/proxy/httpmsg"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
)

// rawRig is a proxy on a loopback listener in front of an echoing upstream that counts its
// requests; requests are written as raw bytes, so that every field reaches the proxy as given.
type rawRig struct {
	t    *testing.T
	p    *proxy
	hits atomic.Int64
}

// newRawRig starts a rig; edge sets use_remote_address (no address is internal: the client
// on 127.0.0.1 is external).
func newRawRig(t *testing.T, edge bool, mut func(*hcmv3.HttpConnectionManager)) *rawRig {
	t.Helper()
	rig := &rawRig{t: t}
	echo := echoHandler()
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rig.hits.Add(1)
		echo.ServeHTTP(w, r)
	}), false)
	env := &testEnv{clusters: map[string]Upstream{"backend": newTestUpstream(up, false)}}
	hcm := inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("backend"))))
	hcm.UseRemoteAddress = wrapperspb.Bool(edge)
	if mut != nil {
		mut(hcm)
	}
	rig.p = startProxy(t, hcm, env, false)
	return rig
}

// rawResult is what one raw request got: the response, the fields the upstream received (nil
// unless it answered), the upstream requests it caused and the request's record.
type rawResult struct {
	resp *http.Response
	up   http.Header
	hits int64
	info *RequestInfo
}

// send writes a GET of path with the extra field lines fields ("Name: value\r\n"...) on a new
// connection.
func (rig *rawRig) send(path, fields string) rawResult {
	rig.t.Helper()
	before := rig.hits.Load()
	c, err := net.Dial("tcp", rig.p.addr)
	if err != nil {
		rig.t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET " + path + " HTTP/1.1\r\nHost: svc\r\n" + fields + "\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		rig.t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		rig.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	res := rawResult{resp: resp, hits: rig.hits.Load() - before, info: rig.p.nextInfo(rig.t)}
	if resp.StatusCode == http.StatusOK {
		var s seen
		if err := json.Unmarshal(body, &s); err != nil {
			rig.t.Fatalf("decoding upstream echo: %v (%q)", err, body)
		}
		res.up = s.Header
	}
	return res
}

// TestConnectionNominatesProxyHeaders: the fields a client's Connection field nominates go as
// the request arrives, so the fields the connection manager adds afterwards (x-forwarded-for,
// x-forwarded-proto, x-request-id, x-envoy-external-address, x-envoy-internal) reach the
// upstream whatever the client nominated; a nominated field of the client's own is removed.
func TestConnectionNominatesProxyHeaders(t *testing.T) {
	rig := newRawRig(t, true, nil)
	r := rig.send("/x", "Connection: keep-alive, x-request-id, x-envoy-external-address, x-envoy-internal, "+
		"x-envoy-expected-rq-timeout-ms, foo\r\nFoo: 1\r\nX-Request-Id: client-id\r\nKeep-Alive: timeout=5\r\n")
	if r.resp.StatusCode != 200 {
		t.Fatalf("status %d", r.resp.StatusCode)
	}
	up := r.up
	if up.Get("X-Forwarded-For") != "127.0.0.1" || up.Get("X-Forwarded-Proto") != "http" ||
		up.Get("X-Envoy-External-Address") != "127.0.0.1" || len(up.Get("X-Request-Id")) != 36 ||
		up.Get("X-Envoy-Expected-Rq-Timeout-Ms") != "15000" {
		t.Errorf("the proxy's own fields did not survive the client's Connection: %v", up)
	}
	for _, k := range []string{"Foo", "Connection", "Keep-Alive"} {
		if v, ok := up[k]; ok {
			t.Errorf("%s reached the upstream: %q", k, v)
		}
	}

	// A sidecar keeps a client's request id, but not one the client nominated: the id is
	// generated as for a request without one.
	rig = newRawRig(t, false, nil)
	r = rig.send("/x", "Connection: x-request-id\r\nX-Request-Id: client-id\r\n")
	if id := r.up.Get("X-Request-Id"); r.resp.StatusCode != 200 || id == "client-id" || len(id) != 36 {
		t.Errorf("sidecar, nominated x-request-id: status %d, upstream id %q, want a new UUID", r.resp.StatusCode, id)
	}
	r = rig.send("/x", "Connection: close\r\nX-Request-Id: client-id\r\n")
	if id := r.up.Get("X-Request-Id"); id != "client-id" {
		t.Errorf("sidecar, Connection: close: upstream id %q, want the client's", id)
	}
}

// TestConnectionHeaderRejected: as Envoy's HTTP/1 codec, a Connection field with ten tokens or
// more, or one nominating x-forwarded-for/-host/-proto, a pseudo-header or a TE of 256 bytes or
// more, is refused with 400 (DPE, http1.connection_header_rejected) before any upstream request.
func TestConnectionHeaderRejected(t *testing.T) {
	rig := newRawRig(t, true, nil)
	nine := "a1, a2, a3, a4, a5, a6, a7, a8, keep-alive"
	longTE := "trailers, " + strings.Repeat("x", maxNominatedTE-len("trailers, "))
	for _, c := range []struct {
		name, fields string
		reject       bool
	}{
		{"x-forwarded-for", "Connection: x-forwarded-for\r\nX-Forwarded-For: 203.0.113.7\r\n", true},
		{"X-Forwarded-Proto, case", "Connection: keep-alive, X-Forwarded-Proto\r\n", true},
		{"x-forwarded-host, absent", "Connection: x-forwarded-host\r\n", true},
		{"pseudo-header", "Connection: :authority\r\n", true},
		{"ten tokens", "Connection: " + nine + ", a9\r\n", true},
		{"ten tokens in two fields", "Connection: " + nine + "\r\nConnection: close\r\n", true},
		{"nine tokens", "Connection: " + nine + "\r\n", false},
		{"nominated TE of 256 bytes", "Connection: te\r\nTE: " + longTE + "\r\n", true},
		{"nominated TE of 255 bytes", "Connection: te\r\nTE: " + longTE[:maxNominatedTE-1] + "\r\n", false},
		{"TE of 256 bytes, not nominated", "TE: " + longTE + "\r\n", false},
		{"x-forwarded-for, not nominated", "Connection: x-forwarded-fork\r\n", false},
	} {
		r := rig.send("/x", c.fields)
		if !c.reject {
			if r.resp.StatusCode != 200 || r.hits != 1 {
				t.Errorf("%s: status %d, %d upstream requests, want 200 and 1", c.name, r.resp.StatusCode, r.hits)
			}
			continue
		}
		if r.resp.StatusCode != 400 || r.hits != 0 || r.info.Flags&FlagDownstreamProtocolError == 0 ||
			r.info.Details != "http1.connection_header_rejected" {
			t.Errorf("%s: status %d, %d upstream requests, flags %v, details %q; want 400, none, DPE, http1.connection_header_rejected",
				c.name, r.resp.StatusCode, r.hits, r.info.Flags, r.info.Details)
		}
	}
}

// TestRequestTE: TE reaches the upstream as "trailers" when one of its items is exactly that
// (ASCII case aside), and not at all otherwise; a nominated TE is kept as trailers too.
func TestRequestTE(t *testing.T) {
	rig := newRawRig(t, false, nil)
	for _, c := range []struct {
		fields, want string
	}{
		{"TE: trailers\r\n", "trailers"},
		{"TE: gzip, trailers\r\n", "trailers"},
		{"TE: Trailers\r\n", "trailers"},
		{"TE: gzip\r\nTE:  trailers \r\n", "trailers"},
		{"TE: trailersx\r\n", ""},
		{"TE: trailers;q=0.5\r\n", ""},
		{"TE: gzip\r\n", ""},
		{"Connection: te\r\nTE: trailers\r\n", "trailers"},
		{"Connection: TE, keep-alive\r\nTE: deflate, trailers\r\n", "trailers"},
		{"Connection: te\r\nTE: gzip\r\n", ""},
	} {
		r := rig.send("/x", c.fields)
		if r.resp.StatusCode != 200 {
			t.Errorf("%q: status %d", c.fields, r.resp.StatusCode)
			continue
		}
		if got := r.up.Values("Te"); c.want == "" && len(got) > 0 || c.want != "" && (len(got) != 1 || got[0] != c.want) {
			t.Errorf("%q: upstream TE %q, want %q", c.fields, got, c.want)
		}
	}
}

// TestH2CUpgradeOfferHeaders: an h2c upgrade offer is answered in HTTP/1.1 and forwarded
// without Connection, Upgrade and HTTP2-Settings.
func TestH2CUpgradeOfferHeaders(t *testing.T) {
	rig := newRawRig(t, false, nil)
	r := rig.send("/x", "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\nX-Keep: 1\r\n")
	if r.resp.StatusCode != 200 || r.resp.ProtoMajor != 1 {
		t.Fatalf("status %d %s", r.resp.StatusCode, r.resp.Proto)
	}
	for _, k := range []string{"Connection", "Upgrade", "Http2-Settings"} {
		if v, ok := r.up[k]; ok {
			t.Errorf("%s reached the upstream: %q", k, v)
		}
	}
	if r.up.Get("X-Keep") != "1" {
		t.Errorf("upstream fields %v", r.up)
	}
}

// TestResponseHopByHop: an upstream response loses its hop-by-hop fields (the fixed names and
// those its Connection field nominates) and its Trailer field, which the codec announces again
// for the trailers it sends, but keeps Proxy-Authenticate, as Envoy does.
func TestResponseHopByHop(t *testing.T) {
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Proxy-Authenticate", `Basic realm="x"`)
		w.Header().Set("Connection", "x-hop")
		w.Header().Set("X-Hop", "v")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("Proxy-Connection", "keep-alive")
		w.Header().Set("Trailer", "X-T")
		w.Write([]byte("hi"))
		w.Header().Set("X-T", "tv")
	}), false)
	env := &testEnv{clusters: map[string]Upstream{"backend": newTestUpstream(up, false)}}
	p := startProxy(t, inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("backend")))), env, false)
	resp, err := h1Client().Get(p.url("/x"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "hi" {
		t.Fatalf("status %d, body %q", resp.StatusCode, body)
	}
	if got := resp.Header.Get("Proxy-Authenticate"); got != `Basic realm="x"` {
		t.Errorf("Proxy-Authenticate %q, want the upstream's", got)
	}
	for _, k := range []string{"X-Hop", "Keep-Alive", "Proxy-Connection"} {
		if v, ok := resp.Header[k]; ok {
			t.Errorf("%s reached the client: %q", k, v)
		}
	}
	if resp.Trailer.Get("X-T") != "tv" {
		t.Errorf("trailers %v", resp.Trailer)
	}
}

// TestConnectionTokensFoldASCIIOnly: a Connection token names a field only when equal but for
// ASCII case: "x-forwarded-ho\u017ft" (long s, which Unicode folds to s) does not remove
// X-Forwarded-Host.
func TestConnectionTokensFoldASCIIOnly(t *testing.T) {
	var h httpmsg.Header
	h.Add("X-Forwarded-Host", "a")
	h.Add("A{", "b")
	delNamed(&h, []byte("x-forwarded-ho\u017ft"))
	delNamed(&h, []byte("a["))
	if h.Len() != 2 {
		t.Fatal("delNamed folds more than ASCII letters")
	}
	delNamed(&h, []byte("x-forwarded-HOST"))
	if h.Len() != 1 {
		t.Fatal("delNamed does not fold ASCII letters")
	}
	rig := newRawRig(t, false, nil)
	r := rig.send("/x", "Connection: x-forwarded-ho\u017ft, \u212a-custom\r\nX-Forwarded-Host: a.example\r\nK-Custom: 1\r\n")
	if r.resp.StatusCode != 200 || r.up.Get("X-Forwarded-Host") != "a.example" || r.up.Get("K-Custom") != "1" {
		t.Errorf("status %d, upstream %v", r.resp.StatusCode, r.up)
	}
}
