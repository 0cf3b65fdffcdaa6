package l7

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/wrapperspb"

	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
)

// TestXFCCElementPerHandler: the connection's x-forwarded-client-cert element is made once per
// connection and handler: a handler with other details (a config update) renders its own.
func TestXFCCElementPerHandler(t *testing.T) {
	_, cert := selfSigned(t)
	mk := func(subject bool) *Handler {
		hcm := inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("c"))))
		hcm.ForwardClientCertDetails = hcmv3.HttpConnectionManager_SANITIZE_SET
		hcm.SetCurrentClientCertDetails = &hcmv3.HttpConnectionManager_SetCurrentClientCertDetails{Subject: wrapperspb.Bool(subject), Uri: true}
		h, err := New(hcm, &testEnv{}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		return h
	}
	withSubject, without := mk(true), mk(false)
	cs := &connState{}
	cs.info.PeerCertificates = append(cs.info.PeerCertificates, cert)
	a := withSubject.xfccElement(cs)
	if !strings.Contains(a, ";Subject=") || !strings.Contains(a, "Hash=") {
		t.Fatalf("element %q", a)
	}
	if b := withSubject.xfccElement(cs); b != a {
		t.Errorf("the same handler rendered %q, then %q", a, b)
	}
	if c := without.xfccElement(cs); strings.Contains(c, ";Subject=") {
		t.Errorf("a handler without subject details got the other handler's element %q", c)
	}
	if d := (&connState{info: ConnInfo{PeerCertificates: cs.info.PeerCertificates}}); withSubject.xfccElement(d) != a {
		t.Error("another connection with the same certificate renders differently")
	}
}

// TestForwardClientCertAppend: with APPEND_FORWARD over mTLS, the values the request came with
// (two fields) are joined with "," and the proxy's element appended.
func TestForwardClientCertAppend(t *testing.T) {
	up := startUpstream(t, echoHandler(), false)
	env := &testEnv{clusters: map[string]Upstream{"backend": newTestUpstream(up, false)}}
	hcm := inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("backend"))))
	hcm.ForwardClientCertDetails = hcmv3.HttpConnectionManager_APPEND_FORWARD
	hcm.SetCurrentClientCertDetails = &hcmv3.HttpConnectionManager_SetCurrentClientCertDetails{Uri: true}
	p := startProxyTLS(t, hcm, env, true, func(c *tls.Config) { c.ClientAuth = tls.RequireAnyClientCert })
	pool := x509.NewCertPool()
	pool.AddCert(p.cert)
	clientCfg, _ := selfSigned(t)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "proxy.test",
		Certificates: clientCfg.Certificates}}}
	for i := 0; i < 2; i++ { // the second request reuses the connection's element
		req, _ := http.NewRequest("GET", "https://"+p.addr+"/", nil)
		req.Header["X-Forwarded-Client-Cert"] = []string{"By=spiffe://a;Hash=01", "By=spiffe://b;Hash=02"}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got := decodeSeen(t, resp).Header["X-Forwarded-Client-Cert"]
		if len(got) != 1 || !strings.HasPrefix(got[0], "By=spiffe://a;Hash=01,By=spiffe://b;Hash=02,By=spiffe://cluster.local/ns/default/sa/proxy;Hash=") ||
			!strings.HasSuffix(got[0], ";URI=spiffe://cluster.local/ns/default/sa/proxy") {
			t.Errorf("request %d: x-forwarded-client-cert %q", i, got)
		}
	}
}
