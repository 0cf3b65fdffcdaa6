package telemetry

import (
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	statspb "istio.io/api/envoy/extensions/stats"

	"github.com/strait-mesh/strait/proxy/attributes"
	"github.com/strait-mesh/strait/proxy/stats"
)

func statsConfig(t *testing.T, pc *statspb.PluginConfig) *StatsConfig {
	t.Helper()
	a, err := anypb.New(pc)
	if err != nil {
		t.Fatal(err)
	}
	c, err := CompileStatsConfig("istio.stats", a)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestCompileStatsConfigFamilies: an override applies to the family its name is in; an unnamed
// one to both; the reporting interval defaults to Istio's 15 s.
func TestCompileStatsConfigFamilies(t *testing.T) {
	for _, tc := range []struct {
		name      string
		metrics   []*statspb.MetricConfig
		http, tcp bool // overrides present
		allTCP    bool // every TCP metric dropped
	}{
		{"none", nil, false, false, false},
		{"http only", []*statspb.MetricConfig{{Name: "requests_total", Drop: true}}, true, false, false},
		{"tcp only", []*statspb.MetricConfig{{Name: "tcp_sent_bytes_total", TagsToRemove: []string{"source_app"}}}, false, true, false},
		{"unnamed", []*statspb.MetricConfig{{Drop: true}}, true, true, true},
		{"custom metric", []*statspb.MetricConfig{{Name: "my_custom_metric", Drop: true}}, false, false, false},
		{"nothing changes", []*statspb.MetricConfig{{Name: "tcp_sent_bytes_total"}}, false, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := statsConfig(t, &statspb.PluginConfig{Metrics: tc.metrics})
			if (c.Overrides != nil) != tc.http || (c.TCPOverrides != nil) != tc.tcp || c.TCPOverrides.DropsAll() != tc.allTCP {
				t.Errorf("HTTP %v, TCP %v (drops all %v)", c.Overrides != nil, c.TCPOverrides != nil, c.TCPOverrides.DropsAll())
			}
			if c.TCPReportingDuration != DefaultTCPReportingDuration {
				t.Errorf("tcp_reporting_duration %v", c.TCPReportingDuration)
			}
		})
	}
	c := statsConfig(t, &statspb.PluginConfig{TcpReportingDuration: durationpb.New(2 * time.Second)})
	if c.TCPReportingDuration != 2*time.Second {
		t.Errorf("tcp_reporting_duration %v, want 2s", c.TCPReportingDuration)
	}
}

// TestTCPOverrides: TCP overrides drop a metric, remove a label and set a dimension from the
// connection's attributes; connections whose dimension values are equal share a series.
func TestTCPOverrides(t *testing.T) {
	st := stats.NewStore()
	r := New(Options{Local: Workload{Name: "w", Namespace: "ns"}, Stats: st})
	c := statsConfig(t, &statspb.PluginConfig{Metrics: []*statspb.MetricConfig{
		{Name: "tcp_connections_opened_total", Drop: true},
		{Name: "tcp_received_bytes_total", TagsToRemove: []string{"request_protocol"}, Dimensions: map[string]string{"sni": "connection.requested_server_name"}},
		{Name: "requests_total", Drop: true}, // HTTP: nothing to change on TCP
	}})
	o := c.TCPOverrides
	for _, sni := range []string{"a.example", "a.example", "b.example", ""} {
		conn := &TCPConn{Reporter: Source, Cluster: "outbound|5432||db.shop.svc.cluster.local", Overrides: o}
		o.Evaluate(&attributes.Record{RequestedServerName: sni}, &conn.Dimensions)
		tc := r.OpenTCP(conn)
		tc.Close(10, 1)
	}
	out := render(t, st)
	count := func(re string) int { return len(regexp.MustCompile(re).FindAllString(out, -1)) }
	if strings.Contains(out, "istio_tcp_connections_opened_total") {
		t.Errorf("a dropped metric is rendered:\n%s", out)
	}
	if n := count(`(?m)^istio_tcp_received_bytes_total\{[^}]*connection_security_policy="unknown",sni="a\.example"\} 20$`); n != 1 {
		t.Errorf("want one received series for a.example with 20 bytes:\n%s", out)
	}
	if n := count(`(?m)^istio_tcp_received_bytes_total\{[^}]*sni="unknown"\} 10$`); n != 1 {
		t.Errorf("an absent attribute's dimension should be unknown:\n%s", out)
	}
	if n := count(`(?m)^istio_tcp_received_bytes_total\{[^}]*request_protocol=`); n != 0 {
		t.Errorf("request_protocol is removed from received bytes:\n%s", out)
	}
	// The other metrics keep Istio's labels: one series for the four connections.
	if n := count(`(?m)^istio_tcp_sent_bytes_total\{[^}]*request_protocol="tcp"[^}]*\} 4$`); n != 1 {
		t.Errorf("want one sent series of 4 bytes:\n%s", out)
	}
	if n := count(`(?m)^istio_tcp_connections_closed_total\{[^}]*\} 4$`); n != 1 {
		t.Errorf("want one closed series of 4 connections:\n%s", out)
	}
	all := statsConfig(t, &statspb.PluginConfig{Metrics: []*statspb.MetricConfig{{Drop: true}}})
	if tc := r.OpenTCP(&TCPConn{Reporter: Source, Overrides: all.TCPOverrides}); tc != nil || r.Dropped() != 0 {
		t.Errorf("a connection whose metrics are all dropped is recorded (%v), or counted as beyond the cap (%d)", tc, r.Dropped())
	}
}

// TestTCPReporting: an open connection's bytes are reported by the reporter's sweep from its live
// counters; Close adds only what was not reported. Sweeps are called directly (no waiting).
func TestTCPReporting(t *testing.T) {
	st := stats.NewStore()
	r := New(Options{Local: Workload{Name: "w", Namespace: "ns"}, Stats: st})
	var recv, sent atomic.Uint64
	tc := r.OpenTCP(&TCPConn{Reporter: Destination, Received: &recv, Sent: &sent, ReportEvery: time.Nanosecond})
	if r.OpenConnections() != 1 {
		t.Fatalf("%d connections reported periodically, want 1", r.OpenConnections())
	}
	series := tc.series
	recv.Add(100)
	sent.Add(7)
	r.open.sweep()
	if series.recv.Load() != 100 || series.sent.Load() != 7 || series.closed.Load() != 0 {
		t.Fatalf("after a sweep: recv %d sent %d closed %d", series.recv.Load(), series.sent.Load(), series.closed.Load())
	}
	r.open.sweep() // nothing new
	recv.Add(50)
	tc.Close(150, 7)
	if series.recv.Load() != 150 || series.sent.Load() != 7 || series.closed.Load() != 1 || series.opened.Load() != 1 {
		t.Fatalf("after close: recv %d sent %d closed %d opened %d", series.recv.Load(), series.sent.Load(), series.closed.Load(), series.opened.Load())
	}
	if r.OpenConnections() != 0 {
		t.Errorf("a closed connection is still reported")
	}
	// Without live counters the bytes are reported at close; nil handles are no-ops.
	tc = r.OpenTCP(&TCPConn{Reporter: Destination})
	tc.Close(1, 2)
	if series.recv.Load() != 151 || series.sent.Load() != 9 || r.OpenConnections() != 0 {
		t.Errorf("a connection without live counters: recv %d sent %d", series.recv.Load(), series.sent.Load())
	}
	var none *TCPConnection
	none.Close(1, 1)
}

// TestSourceDestinationPrincipal: at the source reporter, destination_principal is the SPIFFE ID
// of the certificate the upstream host proved (HTTP and TCP); without one it stays unknown, and
// connection_security_policy stays unknown either way, as in Istio.
func TestSourceDestinationPrincipal(t *testing.T) {
	st := stats.NewStore()
	r := New(Options{Local: Workload{Name: "w", Namespace: "ns"}, Stats: st})
	const id = "spiffe://td/ns/shop/sa/db"
	cert := spiffeCert(t, id)
	r.RecordHTTP(&HTTPRequest{Reporter: Source, Code: 200, Cluster: "outbound|80||api.shop.svc.cluster.local", UpstreamPeer: cert})
	r.RecordHTTP(&HTTPRequest{Reporter: Source, Code: 200, Cluster: "outbound|80||web.shop.svc.cluster.local"})
	r.OpenTCP(&TCPConn{Reporter: Source, Cluster: "outbound|5432||db.shop.svc.cluster.local", UpstreamPeer: cert}).Close(1, 1)
	out := render(t, st)
	for _, re := range []string{
		`(?m)^istio_requests_total\{[^}]*destination_principal="` + regexp.QuoteMeta(id) + `"[^}]*destination_service="api\.shop\.svc\.cluster\.local"[^}]*connection_security_policy="unknown"\} 1$`,
		`(?m)^istio_requests_total\{[^}]*destination_principal="unknown"[^}]*destination_service="web\.shop\.svc\.cluster\.local"[^}]*\} 1$`,
		`(?m)^istio_tcp_connections_closed_total\{[^}]*destination_principal="` + regexp.QuoteMeta(id) + `"[^}]*connection_security_policy="unknown"\} 1$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("no line matches %s:\n%s", re, out)
		}
	}
}
