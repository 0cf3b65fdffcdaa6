package proxy

import (
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/l4"
	"github.com/strait-mesh/strait/proxy/stats"
	"github.com/strait-mesh/strait/proxy/telemetry"
	"github.com/strait-mesh/strait/proxy/xdsclient"
	"github.com/strait-mesh/strait/proxy/xdspb"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	listenerv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/listener/v3"
	tcpv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/tcp_proxy/v3"
	xdstypev3 "github.com/strait-mesh/strait/proxy/xdspb/xds/type/v3"
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

// TestTCPMetricsThroughProxy: a real connection through the proxy's tcp_proxy behind an
// istio.stats filter with TCP overrides and a short tcp_reporting_duration. Its bytes show in
// /stats/prometheus while it is open, and at close the rest (no double count); the overrides
// (a dropped metric, a removed label, a CEL dimension) shape the series.
func TestTCPMetricsThroughProxy(t *testing.T) {
	p := newTestProxy(t)
	const cluster = "outbound|9000||echo.default.svc.cluster.local"
	if err := p.Apply(xdsclient.ClusterType, resources(t, testenv.StaticCluster(cluster, 5*time.Second, testenv.TCPEcho(t, "")))); err != nil {
		t.Fatal(err)
	}
	v, err := structpb.NewStruct(map[string]any{
		"tcp_reporting_duration": "0.05s",
		"metrics": []any{
			map[string]any{"name": "tcp_connections_opened_total", "drop": true},
			map[string]any{"name": "tcp_sent_bytes_total", "tags_to_remove": []any{"destination_service_name"},
				"dimensions": map[string]any{"upstream_cluster": "xds.cluster_name"}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	l := &listenerv3.Listener{Name: "tcp", Address: xdspb.MustFrom[*corev3.Address](testenv.SocketAddr(addr)), FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{
		{Name: "istio.stats", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: testenv.MustAny(t,
			&xdstypev3.TypedStruct{TypeUrl: telemetry.TypeStatsPluginConfig, Value: v})}},
		{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: testenv.MustAny(t,
			&tcpv3.TcpProxy{StatPrefix: cluster, ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: cluster}})}},
	}}}}
	if err := p.Apply(xdsclient.ListenerType, resources(t, l)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Apply(xdsclient.ListenerType, map[string]*xdsclient.Resource{}) })

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echo := func(s string) {
		t.Helper()
		if _, err := io.WriteString(c, s); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(s))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != s {
			t.Fatalf("echo %q: %q, %v", s, buf, err)
		}
	}
	metrics := func() string {
		var b strings.Builder
		if err := p.Stats().WritePrometheus(&b); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	received := regexp.MustCompile(`(?m)^istio_tcp_received_bytes_total\{reporter="source",[^}]*destination_service_name="echo"[^}]*\} (\d+)$`)
	sent := regexp.MustCompile(`(?m)^istio_tcp_sent_bytes_total\{reporter="source",[^}]*,upstream_cluster="` + regexp.QuoteMeta(cluster) + `"\} (\d+)$`)
	// waitFor polls the metrics (bounded) until both byte counters read want.
	waitFor := func(want string) string {
		t.Helper()
		var out string
		for i := 0; i < 1000; i++ {
			out = metrics()
			r, s := received.FindStringSubmatch(out), sent.FindStringSubmatch(out)
			if r != nil && s != nil && r[1] == want && s[1] == want {
				return out
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("byte counters never read %s:\n%s", want, out)
		return ""
	}

	closed := regexp.MustCompile(`(?m)^istio_tcp_connections_closed_total\{reporter="source",[^}]*\} 1$`)
	echo("hello")
	out := waitFor("5") // the connection is still open
	if closed.MatchString(out) {
		t.Errorf("an open connection counted as closed:\n%s", out)
	}
	echo("world!")
	waitFor("11")
	c.(*net.TCPConn).CloseWrite()
	if _, err := io.ReadAll(c); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000 && !closed.MatchString(out); i++ {
		time.Sleep(10 * time.Millisecond)
		out = metrics()
	}
	if !closed.MatchString(out) {
		t.Fatalf("the connection was not counted as closed:\n%s", out)
	}
	out = waitFor("11") // the close reports nothing twice
	if strings.Contains(out, "istio_tcp_connections_opened_total") {
		t.Errorf("istio_tcp_connections_opened_total is dropped but rendered:\n%s", out)
	}
	if regexp.MustCompile(`(?m)^istio_tcp_sent_bytes_total\{[^}]*destination_service_name=`).MatchString(out) {
		t.Errorf("destination_service_name is removed from istio_tcp_sent_bytes_total:\n%s", out)
	}
	if n := p.telemetry.OpenConnections(); n != 0 {
		t.Errorf("%d connections still reported periodically after close", n)
	}
}
