package listener

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	listenerv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/listener/v3"
	tlsv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/transport_sockets/tls/v3"
)

// TestCurl drives the listener with curl: HTTP/1.1, h2c with prior knowledge, and h2 over TLS with
// SNI, all answered by l7's direct response.
func TestCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	_, certPEM, keyPEM := selfSigned(t, "curl.test")
	plainChain := directResponseHCM(t, "curl ok")
	plainChain.FilterChainMatch = &listenerv3.FilterChainMatch{TransportProtocol: "raw_buffer"}
	tlsChain := directResponseHCM(t, "curl tls ok")
	tlsChain.Name = "tls"
	tlsChain.FilterChainMatch = &listenerv3.FilterChainMatch{ServerNames: []string{"curl.test"}}
	inline := func(b []byte) *corev3.DataSource {
		return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
	}
	tlsChain.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: testenv.MustAny(t, &tlsv3.DownstreamTlsContext{
		CommonTlsContext: &tlsv3.CommonTlsContext{AlpnProtocols: []string{"h2", "http/1.1"},
			TlsCertificates: []*tlsv3.TlsCertificate{{CertificateChain: inline(certPEM), PrivateKey: inline(keyPEM)}}},
	})}}
	_, addr := start(t, &listenerv3.Listener{Name: "curl",
		ListenerFilters: []*listenerv3.ListenerFilter{tlsInspector(t), httpInspector(t)},
		FilterChains:    []*listenerv3.FilterChain{plainChain, tlsChain}}, newEnv())
	p := uitoa(port(addr))
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--http1.1", "http://" + addr + "/"}, "curl ok 1.1"},
		{[]string{"--http2-prior-knowledge", "http://" + addr + "/"}, "curl ok 2"},
		{[]string{"-k", "--http2", "--resolve", "curl.test:" + p + ":127.0.0.1", "https://curl.test:" + p + "/"}, "curl tls ok 2"},
	}
	for _, c := range cases {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		args := append([]string{"-sS", "--max-time", "10", "-w", " %{http_version}"}, c.args...)
		out, err := exec.CommandContext(ctx, curl, args...).CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("curl %v: %v: %s", c.args, err, out)
			continue
		}
		if got := strings.TrimSpace(string(out)); got != c.want {
			t.Errorf("curl %v: %q, want %q", c.args, got, c.want)
		}
	}
}
