package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/strait-mesh/strait/internal/testenv"
)

// testCA issues certificates for the SDS test.
type testCA struct{ *testenv.CA }

func newTestCA(t *testing.T) testCA { return testCA{testenv.NewCA(t, "e2e root")} }

// issue returns PEM certificate and key for dnsName with the given serial.
func (ca testCA) issue(t *testing.T, dnsName string, serial int64) (certPEM, keyPEM []byte) {
	t.Helper()
	return testenv.PEM(t, ca.Issue(t, testenv.Leaf{Serial: serial, DNS: []string{dnsName}, Usage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}))
}

func certSecret(name string, certPEM, keyPEM []byte) *tlsv3.Secret {
	return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: certPEM}},
		PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: keyPEM}},
	}}}
}

// TestTLSListenerWithSDSRotation terminates TLS on an HTTP listener whose certificate comes from
// SDS over the same ADS stream; a rotated secret is served to new connections without a
// restart, and the private key never appears in /config_dump.
func TestTLSListenerWithSDSRotation(t *testing.T) {
	w := newWorld(t)
	ca := newTestCA(t)
	cert1, key1 := ca.issue(t, "gateway.e2e.test", 101)
	c := w.config(t, "tls")
	dtls := &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{
			Name:      "gateway-cert",
			SdsConfig: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}, ResourceApiVersion: corev3.ApiVersion_V3},
		}},
		AlpnProtocols: []string{"h2", "http/1.1"},
	}}
	c.listeners[0].FilterChains[0].TransportSocket = &corev3.TransportSocket{
		Name:       "envoy.transport_sockets.tls",
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: testenv.MustAny(t, dtls)},
	}
	c.secrets = []*tlsv3.Secret{certSecret("gateway-cert", cert1, key1)}
	w.ads.Push(c)
	p := startProxy(t, w.ads, 2*time.Second)
	p.waitReady()

	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	// fetch makes a new TLS connection (HTTP/2 via ALPN) and returns the server's serial and body.
	fetch := func() (int64, string, error) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "gateway.e2e.test"}, ForceAttemptHTTP2: true, DisableKeepAlives: true}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + w.httpAddr + "/secure")
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.ProtoMajor != 2 {
			return 0, "", io.ErrUnexpectedEOF
		}
		return resp.TLS.PeerCertificates[0].SerialNumber.Int64(), string(b), nil
	}
	eventually(t, "TLS request with the first certificate", func() bool {
		serial, body, err := fetch()
		return err == nil && serial == 101 && body == "a /secure"
	})

	cert2, key2 := ca.issue(t, "gateway.e2e.test", 202)
	c.secrets = []*tlsv3.Secret{certSecret("gateway-cert", cert2, key2)}
	w.ads.Push(c)
	eventually(t, "rotated certificate on new connections", func() bool {
		serial, body, err := fetch()
		return err == nil && serial == 202 && body == "a /secure"
	})
	_, dump, err := p.adminGet("/config_dump?resource=dynamic_active_secrets")
	// inline_bytes render as base64 in JSON: the key must not be there in any form.
	if err != nil || !strings.Contains(dump, "[redacted]") || strings.Contains(dump, base64.StdEncoding.EncodeToString(key2)[8:48]) ||
		!strings.Contains(dump, base64.StdEncoding.EncodeToString(cert2)[8:48]) {
		t.Fatalf("secrets dump must redact the key (err %v)", err)
	}
}
