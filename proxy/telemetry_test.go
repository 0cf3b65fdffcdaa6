package proxy

import (
	"net"
	"strings"
	"testing"

	"github.com/strait-mesh/strait/proxy/l4"
	"github.com/strait-mesh/strait/proxy/stats"
	"github.com/strait-mesh/strait/proxy/telemetry"
)

// TestTCPTelemetry: the proxy's l4 environment reports tcp_proxy connections in Istio's TCP
// metrics, with the reporter taken from the stat prefix; a connection whose upstream was never
// established is not counted as closed.
func TestTCPTelemetry(t *testing.T) {
	st := stats.NewStore()
	p := &Proxy{telemetry: telemetry.New(telemetry.Options{
		Local: telemetry.NodeWorkload("echo-v1", "default", "", map[string]string{"app": "echo"}, nil), Stats: st})}
	env := l4Env{p}
	up := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9000}
	in := &l4.Record{StatPrefix: "inbound|9000||", Cluster: "inbound|9000||", Upstream: up, BytesReceived: 6, BytesSent: 7}
	env.TCPOpened(in)
	env.TCPClosed(in)
	out := &l4.Record{StatPrefix: "outbound|9000||echo.default.svc.cluster.local", Cluster: "outbound|9000||echo.default.svc.cluster.local"}
	env.TCPClosed(out) // connecting failed: not an opened and closed connection
	var b strings.Builder
	if err := st.WritePrometheus(&b); err != nil {
		t.Fatal(err)
	}
	text := b.String()
	for _, want := range []string{
		`istio_tcp_connections_opened_total{reporter="destination"`,
		`istio_tcp_connections_closed_total{reporter="destination"`,
		`istio_tcp_received_bytes_total{reporter="destination"`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s:\n%s", want, text)
		}
	}
	if strings.Contains(text, `istio_tcp_connections_closed_total{reporter="source"`) {
		t.Errorf("a connection that never reached its upstream was counted as closed:\n%s", text)
	}
	noMetrics := l4Env{&Proxy{}} // without a recorder nothing happens
	noMetrics.TCPOpened(in)
	noMetrics.TCPClosed(in)
}
