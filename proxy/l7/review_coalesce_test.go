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

// TestReviewXFFEmptyFieldTrustedClient: Envoy's HTTP/1 codec coalesces a repeated
// x-forwarded-for into one value joined with ",", skipping empty values
// (HeaderMapImpl::appendToHeader returns on empty data), and then finds the trusted client
// in that value. The proxy's append (appendXFF) now coalesces that way too, so the upstream
// sees "203.0.113.7,127.0.0.1"; the trusted client must be found in the same list: with one
// trusted hop it is 203.0.113.7, not the peer because of a trailing empty field.
func TestReviewXFFEmptyFieldTrustedClient(t *testing.T) {
	rig := newRawRig(t, true, func(h *hcmv3.HttpConnectionManager) { h.XffNumTrustedHops = 1 })
	for _, fields := range []string{
		"X-Forwarded-For: 203.0.113.7\r\n",                           // control
		"X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-For: \r\n",      // trailing empty field
		"X-Forwarded-For: \r\nX-Forwarded-For: 203.0.113.7\r\n",      // leading empty field
		"X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-For:   \t \r\n", // white space only
	} {
		r := rig.send("/x", fields)
		if r.resp.StatusCode != http.StatusOK {
			t.Fatalf("%q: status %d", fields, r.resp.StatusCode)
		}
		xff, ext := r.up.Get("X-Forwarded-For"), r.up.Get("X-Envoy-External-Address")
		if xff != "203.0.113.7,127.0.0.1" || ext != "203.0.113.7" {
			t.Errorf("%q: upstream x-forwarded-for %q, x-envoy-external-address %q; want %q, %q (Envoy's coalesced list)",
				fields, xff, ext, "203.0.113.7,127.0.0.1", "203.0.113.7")
		}
	}
}

// TestReviewXFCCEmptyPrior: with APPEND_FORWARD, Envoy appends the proxy's element to the
// coalesced x-forwarded-client-cert with "," only when the value is not empty
// (appendForwardedClientCert → appendToHeader), and its codec skips empty repeated values: an
// empty field the client sent yields no empty element (no leading or doubled comma).
func TestReviewXFCCEmptyPrior(t *testing.T) {
	up := startUpstream(t, echoHandler(), false)
	env := &testEnv{clusters: map[string]Upstream{"backend": newTestUpstream(up, false)}}
	hcm := inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("backend"))))
	hcm.UseRemoteAddress = wrapperspb.Bool(false)
	hcm.ForwardClientCertDetails = hcmv3.HttpConnectionManager_APPEND_FORWARD
	hcm.SetCurrentClientCertDetails = &hcmv3.HttpConnectionManager_SetCurrentClientCertDetails{Uri: true}
	p := startProxyTLS(t, hcm, env, true, func(c *tls.Config) { c.ClientAuth = tls.RequireAnyClientCert })
	pool := x509.NewCertPool()
	pool.AddCert(p.cert)
	clientCfg, _ := selfSigned(t)
	tc := &tls.Config{RootCAs: pool, ServerName: "proxy.test", Certificates: clientCfg.Certificates, NextProtos: []string{"http/1.1"}}
	for _, c := range []struct{ fields, prefix string }{
		{"X-Forwarded-Client-Cert: \r\n", "By="},
		{"X-Forwarded-Client-Cert: By=spiffe://a;Hash=01\r\nX-Forwarded-Client-Cert: \r\n", "By=spiffe://a;Hash=01,By="},
		{"X-Forwarded-Client-Cert: \r\nX-Forwarded-Client-Cert: By=spiffe://a;Hash=01\r\n", "By=spiffe://a;Hash=01,By="},
	} {
		resp, got := reviewRaw(t, p.addr, tc, "GET /x HTTP/1.1\r\nHost: svc\r\n"+c.fields+"\r\n")
		<-p.infos
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%q: status %d", c.fields, resp.StatusCode)
		}
		v := got.Values("X-Forwarded-Client-Cert")
		if len(v) != 1 || !strings.HasPrefix(v[0], c.prefix) || strings.Contains(v[0], ",,") {
			t.Errorf("%q: upstream x-forwarded-client-cert %q, want it to start %q with no empty element", c.fields, v, c.prefix)
		}
	}
}
