package e2e

import (
	"context"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/strait-mesh/strait/internal/testenv"
)

// h2specResult is one test case of h2spec's JUnit report.
type h2specResult struct {
	Name    string `xml:"classname,attr"`
	Package string `xml:"package,attr"`
	Failure *struct {
		Message string `xml:",chardata"`
	} `xml:"failure"`
	Skipped *struct{} `xml:"skipped"`
	Error   *struct {
		Message string `xml:",chardata"`
	} `xml:"error"`
}

type h2specReport struct {
	Suites []struct {
		Name  string         `xml:"name,attr"`
		Cases []h2specResult `xml:"testcase"`
	} `xml:"testsuite"`
}

// runH2spec runs h2spec (github.com/summerwind/h2spec, a go tool of this module) against
// addr and returns its results.
func runH2spec(t *testing.T, addr string, tls bool, sections ...string) []h2specResult {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		host, port = addr[:i], addr[i+1:]
	}
	report := filepath.Join(t.TempDir(), "h2spec.xml")
	args := []string{"tool", "h2spec", "-h", host, "-p", port, "-o", "2", "-j", report, "-P", "/h2spec-conformance"}
	if tls {
		args = append(args, "-t", "-k")
	}
	args = append(args, sections...)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	out, err := cmd.CombinedOutput()
	if _, serr := os.Stat(report); serr != nil {
		t.Fatalf("h2spec produced no report (%v): %s", err, lastLines(string(out), 60))
	}
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var r h2specReport
	if err := xml.Unmarshal(b, &r); err != nil {
		t.Fatalf("parsing h2spec report: %v", err)
	}
	var res []h2specResult
	for _, s := range r.Suites {
		for _, c := range s.Cases {
			c.Package = s.Name
			res = append(res, c)
		}
	}
	return res
}

// TestH2spec runs every h2spec case against the proxy's HTTP/2 listeners: cleartext with
// codec AUTO (h2 with prior knowledge beside HTTP/1.1), cleartext with codec HTTP2, and TLS with
// ALPN h2. Every case must pass, and the proxy's memory must stay bounded throughout (h2spec's
// http2/5.1.2 opens streams up to the advertised limit with a zero window; with an unbounded
// limit it once grew the proxy by 110 MB a second). H2SPEC_SECTIONS narrows the run, e.g.
// H2SPEC_SECTIONS=http2/5.1.
func TestH2spec(t *testing.T) {
	var sections []string
	if s := os.Getenv("H2SPEC_SECTIONS"); s != "" {
		sections = strings.Fields(s)
	}
	for _, tc := range []struct {
		name  string
		codec hcmv3.HttpConnectionManager_CodecType
		tls   bool
	}{
		{"h2c-auto", hcmv3.HttpConnectionManager_AUTO, false},
		{"h2c-http2", hcmv3.HttpConnectionManager_HTTP2, false},
		{"tls-alpn", hcmv3.HttpConnectionManager_AUTO, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			l := httpListener(t, "http", w.httpAddr, "route-http", "ingress")
			setCodec(t, l, tc.codec)
			cfg := &config{
				listeners: []*listenerv3.Listener{l},
				routes:    []*routev3.RouteConfiguration{routeConfig("route-http", "/", "backend-a")},
				clusters:  []*clusterv3.Cluster{testenv.StaticCluster("backend-a", clusterTimeout, w.a.addr)},
			}
			if tc.tls {
				ca := newTestCA(t)
				cert, key := ca.issue(t, "h2spec.e2e.test", 7)
				dtls := &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
					TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{
						Name:      "h2spec-cert",
						SdsConfig: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}, ResourceApiVersion: corev3.ApiVersion_V3},
					}},
					AlpnProtocols: []string{"h2", "http/1.1"},
				}}
				l.FilterChains[0].TransportSocket = &corev3.TransportSocket{
					Name:       "envoy.transport_sockets.tls",
					ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: testenv.MustAny(t, dtls)},
				}
				cfg.secrets = []*tlsv3.Secret{certSecret("h2spec-cert", cert, key)}
			}
			w.ads.Push(cfg)
			p := startProxy(t, w.ads, time.Second)
			p.waitReady()
			eventually(t, "listener serving", func() bool { return accepts(w.httpAddr) })
			peak := &rssPeak{pid: p.cmd.Process.Pid}
			stop := peak.watch(t)
			res := runH2spec(t, w.httpAddr, tc.tls, sections...)
			stop()
			passed := 0
			for _, c := range res {
				switch {
				case c.Failure != nil:
					t.Errorf("h2spec %s %s: %s", c.Package, c.Name, strings.TrimSpace(c.Failure.Message))
				case c.Error != nil:
					t.Errorf("h2spec %s %s: %s", c.Package, c.Name, strings.TrimSpace(c.Error.Message))
				case c.Skipped != nil:
					t.Errorf("h2spec %s %s: skipped", c.Package, c.Name)
				default:
					passed++
				}
			}
			if len(sections) == 0 && len(res) != 145 {
				t.Errorf("h2spec ran %d cases, want h2spec 2.2.1's 145", len(res))
			}
			t.Logf("h2spec: %d of %d cases passed; proxy RSS %d KiB before, peak %d KiB", passed, len(res), peak.first, peak.max)
			if grow := peak.max - peak.first; rssBounds() && grow > 20<<10 {
				t.Errorf("proxy RSS grew by %d KiB during h2spec, want under 20 MiB", grow)
			}
		})
	}
}

// setCodec sets the codec_type of l's http_connection_manager.
func setCodec(t *testing.T, l *listenerv3.Listener, codec hcmv3.HttpConnectionManager_CodecType) {
	t.Helper()
	f := l.FilterChains[0].Filters[0]
	var hcm hcmv3.HttpConnectionManager
	if err := f.GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		t.Fatal(err)
	}
	hcm.CodecType = codec
	f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: testenv.MustAny(t, &hcm)}
}

// rssPeak samples a process's RSS every 50 ms.
type rssPeak struct {
	pid        int
	first, max int
}

func (r *rssPeak) watch(t *testing.T) (stop func()) {
	r.first = procRSS(t, r.pid)
	r.max = r.first
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if v := procRSS(t, r.pid); v > r.max {
					r.max = v
				}
			}
		}
	}()
	return func() { close(done); <-finished }
}

// rssBounds reports whether the RSS bounds of the attack tests apply: not when the proxy runs
// under the race detector (STRAIT_E2E_RACE), whose shadow memory multiplies the proxy's RSS.
func rssBounds() bool { return os.Getenv("STRAIT_E2E_RACE") == "" }

// procRSS returns the resident set size of pid in KiB.
func procRSS(t *testing.T, pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	return 0
}
