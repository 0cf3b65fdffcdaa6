package l4

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	gaccesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/proxy/accesslog"
	"github.com/strait-mesh/strait/proxy/stats"
	"github.com/strait-mesh/strait/proxy/xdspb"
	accesslogv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/accesslog/v3"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	filev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/access_loggers/file/v3"
	celv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/access_loggers/filters/cel/v3"
	tcpv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/tcp_proxy/v3"
)

// logEnv is a test env whose access logs go to files of the test's own.
type logEnv struct {
	*env[*dialer]
	files *accesslog.Files
}

func (e logEnv) AccessLogFiles() *accesslog.Files { return e.files }

func TestTCPAccessLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tcp.log")
	fl, err := anypb.New(&filev3.FileAccessLog{Path: path, AccessLogFormat: &filev3.FileAccessLog_LogFormat{LogFormat: &corev3.SubstitutionFormatString{
		Format: &corev3.SubstitutionFormatString_TextFormatSource{TextFormatSource: &corev3.DataSource{
			Specifier: &corev3.DataSource_InlineString{InlineString: accesslog.IstioTextFormat}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	al := []*accesslogv3.AccessLog{{Name: "envoy.access_loggers.file", ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: fl}}}
	files := accesslog.NewFiles(accesslog.FilesOptions{})
	defer files.Close()
	echo := backend(t, "A:")
	e := logEnv{env: &env[*dialer]{clusters: map[string]*dialer{"echo": {addr: echo}, "down": {addr: "127.0.0.1:1"}}, st: stats.NewStore()}, files: files}
	e.clusters["down"].fail.Store(100)
	ok, err := New(&tcpv3.TcpProxy{StatPrefix: "echo", AccessLog: al, ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: "echo"}}, e)
	if err != nil {
		t.Fatal(err)
	}
	bad, err := New(&tcpv3.TcpProxy{StatPrefix: "down", AccessLog: al, MaxConnectAttempts: wrapperspb.UInt32(2),
		ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: "down"}}, e)
	if err != nil {
		t.Fatal(err)
	}
	if got := echoOnce(t, front(t, ok), "hello"); got != "A:hello" {
		t.Fatalf("echo %q", got)
	}
	echoOnce(t, front(t, bad), "x")
	var lines []string
	waitFor(t, "two TCP access log lines", func() bool {
		b, _ := os.ReadFile(path)
		lines = strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		return len(lines) == 2
	})
	// Istio's TCP line: no HTTP fields, response code 0, bytes both ways, the upstream host and
	// the local address of the upstream connection.
	okRe := `^\[[^\]]+\] "- - -" 0 - - - "-" 5 7 \d+ - "-" "-" "-" "-" "` + regexp.QuoteMeta(echo) + `" echo 127\.0\.0\.1:\d+ 10\.0\.0\.1:9000 127\.0\.0\.1:\d+ - -$`
	badRe := `^\[[^\]]+\] "- - -" 0 UF - - "-" 0 0 \d+ - "-" "-" "-" "-" "-" down - 10\.0\.0\.1:9000 127\.0\.0\.1:\d+ - -$`
	for i, re := range []string{okRe, badRe} {
		found := false
		for _, l := range lines {
			found = found || regexp.MustCompile(re).MatchString(l)
		}
		if !found {
			t.Errorf("line %d: none of %q matches %s", i, lines, re)
		}
	}
}

// TestTCPAccessLogFilter: a tcp_proxy's access log with a filter writes only the connections
// it admits — a response_flag_filter and a CEL filter on upstream failures.
func TestTCPAccessLogFilter(t *testing.T) {
	cel, err := anypb.New(&celv3.ExpressionFilter{Expression: `upstream.transport_failure_reason != "" || !has(upstream.address)`})
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]*accesslogv3.AccessLogFilter{
		"response_flag": {FilterSpecifier: &accesslogv3.AccessLogFilter_ResponseFlagFilter{
			ResponseFlagFilter: &accesslogv3.ResponseFlagFilter{Flags: []string{"UF", "UH"}}}},
		"cel": {FilterSpecifier: &accesslogv3.AccessLogFilter_ExtensionFilter{ExtensionFilter: &accesslogv3.ExtensionFilter{
			Name: "envoy.access_loggers.extension_filters.cel", ConfigType: &accesslogv3.ExtensionFilter_TypedConfig{TypedConfig: cel}}}},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tcp.log")
			fl, err := anypb.New(&filev3.FileAccessLog{Path: path, AccessLogFormat: &filev3.FileAccessLog_Format{Format: "%UPSTREAM_CLUSTER% %RESPONSE_FLAGS%\n"}})
			if err != nil {
				t.Fatal(err)
			}
			al := []*accesslogv3.AccessLog{{Name: "envoy.access_loggers.file", Filter: f, ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: fl}}}
			files := accesslog.NewFiles(accesslog.FilesOptions{})
			defer files.Close()
			echo := backend(t, "A:")
			e := logEnv{env: &env[*dialer]{clusters: map[string]*dialer{"echo": {addr: echo}, "down": {addr: "127.0.0.1:1"}}, st: stats.NewStore()}, files: files}
			e.clusters["down"].fail.Store(100)
			ok, err := New(&tcpv3.TcpProxy{StatPrefix: "echo", AccessLog: al, ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: "echo"}}, e)
			if err != nil {
				t.Fatal(err)
			}
			bad, err := New(&tcpv3.TcpProxy{StatPrefix: "down", AccessLog: al, ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: "down"}}, e)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 3; i++ {
				if got := echoOnce(t, front(t, ok), "hello"); got != "A:hello" {
					t.Fatalf("echo %q", got)
				}
			}
			echoOnce(t, front(t, bad), "x")
			echoOnce(t, front(t, bad), "x")
			waitFor(t, "two TCP access log lines", func() bool {
				b, _ := os.ReadFile(path)
				return string(b) == "down UF\ndown UF\n"
			})
			// The three good connections closed before the bad ones were opened.
			if b, _ := os.ReadFile(path); string(b) != "down UF\ndown UF\n" {
				t.Fatalf("log %q", b)
			}
		})
	}
}

func TestTCPAccessLogRefusesFilter(t *testing.T) {
	runtime := xdspb.MustFrom[*accesslogv3.AccessLogFilter](&gaccesslogv3.AccessLogFilter{FilterSpecifier: &gaccesslogv3.AccessLogFilter_RuntimeFilter{RuntimeFilter: &gaccesslogv3.RuntimeFilter{RuntimeKey: "k"}}}) // not read by strait-proxy
	for _, f := range []*accesslogv3.AccessLogFilter{{}, runtime} {
		al := &accesslogv3.AccessLog{Name: "x", Filter: f}
		e := &env[*dialer]{st: stats.NewStore()}
		if _, err := New(&tcpv3.TcpProxy{StatPrefix: "s", AccessLog: []*accesslogv3.AccessLog{al}, ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: "c"}}, e); err == nil ||
			!strings.Contains(err.Error(), "tcp_proxy.access_log[0].filter") {
			t.Errorf("got %v", err)
		}
	}
}
