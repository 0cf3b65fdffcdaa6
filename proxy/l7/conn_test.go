package l7

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/balance"
	"github.com/strait-mesh/strait/proxy/upstream"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
)

// TestForwardClientCert checks x-forwarded-client-cert with SANITIZE_SET over real mTLS.
func TestForwardClientCert(t *testing.T) {
	up := startUpstream(t, echoHandler(), false)
	env := &testEnv{clusters: map[string]Upstream{"backend": newTestUpstream(up, false)}}
	hcm := inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("backend"))))
	hcm.ForwardClientCertDetails = hcmv3.HttpConnectionManager_SANITIZE_SET
	hcm.SetCurrentClientCertDetails = &hcmv3.HttpConnectionManager_SetCurrentClientCertDetails{Subject: wrapperspb.Bool(true), Uri: true, Dns: true}
	p := startProxyTLS(t, hcm, env, true, func(c *tls.Config) { c.ClientAuth = tls.RequireAnyClientCert })
	pool := x509.NewCertPool()
	pool.AddCert(p.cert)
	clientCfg, _ := selfSigned(t) // the client presents a certificate of the same shape
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "proxy.test",
		Certificates: clientCfg.Certificates}}}
	req, _ := http.NewRequest("GET", "https://"+p.addr+"/", nil)
	req.Header.Set("X-Forwarded-Client-Cert", "By=spoofed")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	xfcc := decodeSeen(t, resp).Header.Get("X-Forwarded-Client-Cert")
	for _, want := range []string{"By=spiffe://cluster.local/ns/default/sa/proxy;Hash=", ";Subject=\"CN=proxy.test\"",
		";URI=spiffe://cluster.local/ns/default/sa/proxy", ";DNS=proxy.test"} {
		if !strings.Contains(xfcc, want) {
			t.Errorf("xfcc %q lacks %q", xfcc, want)
		}
	}
	if strings.Contains(xfcc, "spoofed") {
		t.Errorf("xfcc kept the client's value: %q", xfcc)
	}
}

// TestStreamIdleTimeout ends a request whose upstream sends nothing with 408 (SI).
func TestStreamIdleTimeout(t *testing.T) {
	up := testenv.HangingHTTPBackend(t)
	env := &testEnv{clusters: map[string]Upstream{"b": newTestUpstream(up, false)}}
	a := toCluster("b")
	a.Timeout = durationpb.New(0)
	a.IdleTimeout = durationpb.New(30 * time.Millisecond)
	p := startProxy(t, inlineHCM(oneVhost(fwdRoute("r", pfx("/"), a))), env, false)
	resp, err := h1Client().Get(p.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if ri := p.nextInfo(t); resp.StatusCode != 408 || ri.Flags != FlagStreamIdleTimeout {
		t.Errorf("status %d flags %s", resp.StatusCode, ri.Flags)
	}
}

func TestMaxRequestHeadersKbAndHTTP10(t *testing.T) {
	env := &testEnv{clusters: map[string]Upstream{"c": cannedUpstream{}}}
	hcm := inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("c"))))
	hcm.MaxRequestHeadersKb = wrapperspb.UInt32(1)
	p := startProxy(t, hcm, env, false)
	req, _ := http.NewRequest("GET", p.url("/"), nil)
	req.Header.Set("X-Pad", strings.Repeat("p", 1100))
	resp, err := h1Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 431 {
		t.Errorf("1 KiB limit: %d", resp.StatusCode)
	}
	// The Go client always speaks HTTP/1.1: write an HTTP/1.0 request by hand.
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET / HTTP/1.0\r\nHost: x\r\n\r\n")
	resp, err = http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired {
		t.Errorf("HTTP/1.0 without accept_http_10: %d", resp.StatusCode)
	}
}

// TestChunkedBodyAndKeepAlive sends a chunked request body (unknown length) and a second request
// on the same kept-alive connection.
func TestChunkedBodyAndKeepAlive(t *testing.T) {
	up := startUpstream(t, echoHandler(), false)
	env := &testEnv{clusters: map[string]Upstream{"backend": newTestUpstream(up, false)}}
	p := startProxy(t, inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("backend")))), env, false)
	c := h1Client()
	var reused []bool
	for i := 0; i < 2; i++ {
		pr, pw := io.Pipe()
		go func() {
			for j := 0; j < 3; j++ {
				io.WriteString(pw, "chunk"+itoa(j)+";")
			}
			pw.Close()
		}()
		req, _ := http.NewRequest("POST", p.url("/chunked"), pr)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(ci httptrace.GotConnInfo) { reused = append(reused, ci.Reused) }}))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if s := decodeSeen(t, resp); s.Body != "chunk0;chunk1;chunk2;" {
			t.Errorf("upstream body %q", s.Body)
		}
	}
	if len(reused) != 2 || !reused[1] {
		t.Errorf("second request did not reuse the connection: %v", reused)
	}
}

// TestHTTP1FullDuplexStreaming echoes a request body line by line while it is still being sent:
// request and response bodies stream through the proxy at the same time over HTTP/1.1.
func TestHTTP1FullDuplexStreaming(t *testing.T) {
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.NewResponseController(w).EnableFullDuplex()
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		br := bufio.NewReader(r.Body)
		for {
			line, err := br.ReadString('\n')
			if line != "" {
				io.WriteString(w, "echo "+line)
				w.(http.Flusher).Flush()
			}
			if err != nil {
				return
			}
		}
	}), true)
	for _, h2 := range []bool{false, true} {
		env := &testEnv{clusters: map[string]Upstream{"b": newTestUpstream(up, h2)}}
		a := toCluster("b")
		a.Timeout = durationpb.New(0)
		p := startProxy(t, inlineHCM(oneVhost(fwdRoute("r", pfx("/"), a))), env, false)
		pr, pw := io.Pipe()
		req, _ := http.NewRequest("POST", p.url("/duplex"), pr)
		resp, err := h1Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(resp.Body)
		for i := 0; i < 3; i++ {
			msg := "line " + itoa(i) + "\n"
			io.WriteString(pw, msg)
			got, err := br.ReadString('\n')
			if err != nil || got != "echo "+msg {
				t.Fatalf("upstream h2=%v: got %q, %v", h2, got, err)
			}
		}
		pw.Close()
		io.Copy(io.Discard, br)
		resp.Body.Close()
	}
}

// TestSmallBodyPrefetch covers the small-body fast path: a body that arrives in two parts
// still streams through whole, and a body that never arrives ends with 408 (SI) when the
// stream idle timeout fires while the proxy waits for its first bytes.
func TestSmallBodyPrefetch(t *testing.T) {
	up := startUpstream(t, echoHandler(), false)
	env := &testEnv{clusters: map[string]Upstream{"b": newTestUpstream(up, false)}}
	a := toCluster("b")
	a.Timeout = durationpb.New(0)
	a.IdleTimeout = durationpb.New(300 * time.Millisecond)
	p := startProxy(t, inlineHCM(oneVhost(fwdRoute("r", pfx("/"), a))), env, false)

	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "POST /split HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello")
	time.Sleep(50 * time.Millisecond) // the first part is read alone; the rest streams after
	io.WriteString(c, "world")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := decodeSeen(t, resp).Body; got != "helloworld" {
		t.Errorf("split body reached the upstream as %q", got)
	}
	if ri := p.nextInfo(t); ri.BytesReceived != 10 {
		t.Errorf("bytes received %d, want 10", ri.BytesReceived)
	}

	io.WriteString(c, "POST /never HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ri := p.nextInfo(t); resp.StatusCode != 408 || ri.Flags != FlagStreamIdleTimeout {
		t.Errorf("body never sent: status %d flags %s", resp.StatusCode, ri.Flags)
	}
}

// overflowUpstream fails every request as the circuit breaker does.
type overflowUpstream struct{ unlimitedRetries }

func (overflowUpstream) RoundTrip(*http.Request, balance.Context) (*http.Response, error) {
	return nil, &upstream.Error{Flag: upstream.FlagOverflow, Err: io.ErrShortBuffer}
}

// TestOverflowMarksOverloaded answers a request dropped by circuit breaking with 503 (UO) and
// x-envoy-overloaded: true, as Envoy's router does.
func TestOverflowMarksOverloaded(t *testing.T) {
	env := &testEnv{clusters: map[string]Upstream{"b": overflowUpstream{}}}
	p := startProxy(t, inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("b")))), env, false)
	resp, err := h1Client().Get(p.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ri := p.nextInfo(t); resp.StatusCode != 503 || ri.Flags != FlagUpstreamOverflow || resp.Header.Get("X-Envoy-Overloaded") != "true" {
		t.Errorf("status %d flags %s headers %v", resp.StatusCode, ri.Flags, resp.Header)
	}
}

// TestHTTP1RequestTrailers: the trailers an HTTP/1.1 request declares reach the upstream after
// its chunked body (the codec fills them at the body's end).
func TestHTTP1RequestTrailers(t *testing.T) {
	got := make(chan string, 1)
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		got <- r.Trailer.Get("X-Checksum")
	}), false)
	env := &testEnv{clusters: map[string]Upstream{"backend": newTestUpstream(up, false)}}
	p := startProxy(t, inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("backend")))), env, false)
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "POST /t HTTP/1.1\r\nHost: a\r\nTrailer: X-Checksum\r\nTransfer-Encoding: chunked\r\n\r\n"+
		"3\r\nabc\r\n0\r\nX-Checksum: 42\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if v := <-got; resp.StatusCode != 200 || v != "42" {
		t.Errorf("status %d, upstream trailer %q", resp.StatusCode, v)
	}
}
