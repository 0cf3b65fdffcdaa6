package l7

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
)

// reviewRaw writes raw (a whole request head) to addr on a new connection, over TLS when tc is
// not nil, and returns the response and, for a 200, the fields the echoing upstream received.
func reviewRaw(t *testing.T, addr string, tc *tls.Config, raw string) (*http.Response, http.Header) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if tc != nil {
		tlc := tls.Client(c, tc)
		if err := tlc.Handshake(); err != nil {
			t.Fatal(err)
		}
		c = tlc
	}
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the response to %q: %v", raw, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return resp, nil
	}
	var s seen
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatalf("decoding upstream echo: %v (%q)", err, body)
	}
	return resp, s.Header
}

// TestReviewConnectionCannotRemoveProxyFields: whatever form a client gives its Connection
// field (case, white space, empty list items, repeated fields, obs-text, HTTP/1.0, upgrade
// requests, h2c offers), the fields the proxy adds itself reach the upstream: x-forwarded-for,
// x-forwarded-proto, x-request-id, x-envoy-external-address (edge) or x-envoy-internal
// (internal client), x-envoy-expected-rq-timeout-ms.
func TestReviewConnectionCannotRemoveProxyFields(t *testing.T) {
	const all = "x-forwarded-proto-not, x-request-id, x-envoy-external-address, x-envoy-internal, x-envoy-expected-rq-timeout-ms"
	type tcase struct {
		name, line, fields string
	}
	cases := []tcase{
		{"plain", "GET /x HTTP/1.1", "Connection: " + all + "\r\n"},
		{"upper case", "GET /x HTTP/1.1", "Connection: " + strings.ToUpper(all) + "\r\n"},
		{"white space", "GET /x HTTP/1.1", "Connection: \t x-request-id \t,\t x-envoy-external-address\t, \tx-envoy-internal ,x-envoy-expected-rq-timeout-ms\t\r\n"},
		{"empty items", "GET /x HTTP/1.1", "Connection: ,,x-request-id,, ,x-envoy-external-address,,\r\n"},
		{"repeated fields", "GET /x HTTP/1.1", "Connection: keep-alive\r\nconnection: x-request-id\r\nCONNECTION: x-envoy-external-address, x-envoy-internal\r\nConnection: x-envoy-expected-rq-timeout-ms\r\n"},
		{"obs-text", "GET /x HTTP/1.1", "Connection: x-request-id\x80, x-envoy-external-address, \xffx-envoy-internal\r\n"},
		{"with the fields present", "GET /x HTTP/1.1", "Connection: " + all + "\r\nX-Request-Id: c\r\nX-Envoy-External-Address: 1.1.1.1\r\nX-Envoy-Internal: true\r\nX-Envoy-Expected-Rq-Timeout-Ms: 1\r\n"},
		{"HTTP/1.0", "GET /x HTTP/1.0", "Connection: keep-alive, " + all + "\r\n"},
		{"HTTP/1.0 close", "GET /x HTTP/1.0", "Connection: close, " + all + "\r\n"},
		{"websocket upgrade", "GET /x HTTP/1.1", "Connection: Upgrade, " + all + "\r\nUpgrade: websocket\r\n"},
		{"upgrade token, no Upgrade field", "GET /x HTTP/1.1", "Connection: Upgrade, " + all + "\r\n"},
		{"h2c offer", "GET /x HTTP/1.1", "Connection: Upgrade, HTTP2-Settings, " + all + "\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n"},
		{"H2C offer, upper case", "GET /x HTTP/1.1", "Connection: UPGRADE, " + all + "\r\nUpgrade: H2C\r\n"},
		{"h2c and websocket offered", "GET /x HTTP/1.1", "Connection: Upgrade, " + all + "\r\nUpgrade: h2c, websocket\r\n"},
		{"two Upgrade fields", "GET /x HTTP/1.1", "Connection: Upgrade, " + all + "\r\nUpgrade: h2c\r\nUpgrade: websocket\r\n"},
	}
	for _, rc := range []struct {
		name     string
		internal bool
		upgrades bool
	}{
		{"external", false, false},
		{"internal", true, false},
		{"external, websocket allowed", false, true},
	} {
		rig := newRawRig(t, true, func(h *hcmv3.HttpConnectionManager) {
			h.HttpProtocolOptions = &corev3.Http1ProtocolOptions{AcceptHttp_10: true}
			if rc.internal {
				loopbackInternal(h)
			}
			if rc.upgrades {
				h.UpgradeConfigs = []*hcmv3.HttpConnectionManager_UpgradeConfig{{UpgradeType: "websocket"}}
			}
		})
		for _, c := range cases {
			resp, up := reviewRaw(t, rig.p.addr, nil, c.line+"\r\nHost: svc\r\n"+c.fields+"\r\n")
			<-rig.p.infos
			name := rc.name + ", " + c.name
			if resp.StatusCode != http.StatusOK {
				// A refused request loses nothing; only a forwarded one is checked.
				t.Logf("%s: status %d (not forwarded)", name, resp.StatusCode)
				continue
			}
			if got := up.Values("X-Forwarded-For"); len(got) != 1 || got[0] != "127.0.0.1" {
				t.Errorf("%s: x-forwarded-for %q", name, got)
			}
			if got := up.Values("X-Forwarded-Proto"); len(got) != 1 || got[0] != "http" {
				t.Errorf("%s: x-forwarded-proto %q", name, got)
			}
			if got := up.Values("X-Request-Id"); len(got) != 1 || len(got[0]) != 36 {
				t.Errorf("%s: x-request-id %q, want the proxy's UUID", name, got)
			}
			if got := up.Values("X-Envoy-Expected-Rq-Timeout-Ms"); len(got) != 1 || got[0] != "15000" {
				t.Errorf("%s: x-envoy-expected-rq-timeout-ms %q", name, got)
			}
			if rc.internal {
				if got := up.Values("X-Envoy-Internal"); len(got) != 1 || got[0] != "true" {
					t.Errorf("%s: x-envoy-internal %q", name, got)
				}
			} else {
				if got := up.Values("X-Envoy-External-Address"); len(got) != 1 || got[0] != "127.0.0.1" {
					t.Errorf("%s: x-envoy-external-address %q", name, got)
				}
				if v, ok := up["X-Envoy-Internal"]; ok {
					t.Errorf("%s: an external client's x-envoy-internal reached the upstream: %q", name, v)
				}
			}
		}
	}
}

// TestReviewConnectionCannotRemoveXFCC: over mTLS, a client's Connection field nominating
// x-forwarded-client-cert does not remove the element the proxy sets (SANITIZE_SET and
// APPEND_FORWARD), on an upgrade request either.
func TestReviewConnectionCannotRemoveXFCC(t *testing.T) {
	for _, fcc := range []hcmv3.HttpConnectionManager_ForwardClientCertDetails{
		hcmv3.HttpConnectionManager_SANITIZE_SET, hcmv3.HttpConnectionManager_APPEND_FORWARD,
	} {
		up := startUpstream(t, echoHandler(), false)
		env := &testEnv{clusters: map[string]Upstream{"backend": newTestUpstream(up, false)}}
		hcm := inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("backend"))))
		hcm.UseRemoteAddress = wrapperspb.Bool(true)
		hcm.ForwardClientCertDetails = fcc
		hcm.SetCurrentClientCertDetails = &hcmv3.HttpConnectionManager_SetCurrentClientCertDetails{Uri: true}
		p := startProxyTLS(t, hcm, env, true, func(c *tls.Config) { c.ClientAuth = tls.RequireAnyClientCert })
		pool := x509.NewCertPool()
		pool.AddCert(p.cert)
		clientCfg, _ := selfSigned(t)
		tc := &tls.Config{RootCAs: pool, ServerName: "proxy.test", Certificates: clientCfg.Certificates, NextProtos: []string{"http/1.1"}}
		for _, fields := range []string{
			"Connection: x-forwarded-client-cert\r\n",
			"Connection: X-Forwarded-Client-Cert\r\nX-Forwarded-Client-Cert: By=spiffe://evil;Hash=00\r\n",
			"Connection: keep-alive\r\nConnection: \tx-forwarded-client-cert\t\r\n",
			"Connection: Upgrade, x-forwarded-client-cert\r\nUpgrade: h2c\r\n",
		} {
			resp, got := reviewRaw(t, p.addr, tc, "GET /x HTTP/1.1\r\nHost: svc\r\n"+fields+"\r\n")
			<-p.infos
			if resp.StatusCode != http.StatusOK {
				t.Logf("%v %q: status %d", fcc, fields, resp.StatusCode)
				continue
			}
			v := got.Values("X-Forwarded-Client-Cert")
			if len(v) != 1 || !strings.Contains(v[0], "Hash=") || strings.Contains(v[0], "spiffe://evil") {
				t.Errorf("%v, %q: upstream x-forwarded-client-cert %q, want the proxy's element only", fcc, fields, v)
			}
		}
	}
}
