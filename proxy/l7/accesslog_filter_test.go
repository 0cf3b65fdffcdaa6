package l7

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gaccesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/accesslog"
	"github.com/strait-mesh/strait/proxy/accesslog/accesslogtest"
	"github.com/strait-mesh/strait/proxy/xdspb"
	accesslogv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/accesslog/v3"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
)

// TestAccessLogFilters sends 200s and 503s through a real connection manager whose access log
// has a filter, and counts the lines written: only the 503s are logged.
func TestAccessLogFilters(t *testing.T) {
	for _, tc := range []struct {
		name   string
		filter func(t testing.TB) *accesslogv3.AccessLogFilter
	}{
		{"cel", func(t testing.TB) *accesslogv3.AccessLogFilter {
			return xdspb.MustFrom[*accesslogv3.AccessLogFilter](accesslogtest.CELFilter(t, `response.code >= 500`))
		}},
		{"status_code", func(testing.TB) *accesslogv3.AccessLogFilter {
			return &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_StatusCodeFilter{
				StatusCodeFilter: &accesslogv3.StatusCodeFilter{Comparison: &accesslogv3.ComparisonFilter{
					Op: accesslogv3.ComparisonFilter_GE, Value: &corev3.RuntimeUInt32{DefaultValue: 500, RuntimeKey: "access_log.5xx"}}}}}
		}},
		{"and_cel_not_health_check", func(t testing.TB) *accesslogv3.AccessLogFilter {
			return &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_AndFilter{AndFilter: &accesslogv3.AndFilter{
				Filters: []*accesslogv3.AccessLogFilter{
					{FilterSpecifier: &accesslogv3.AccessLogFilter_NotHealthCheckFilter{NotHealthCheckFilter: &accesslogv3.NotHealthCheckFilter{}}},
					xdspb.MustFrom[*accesslogv3.AccessLogFilter](accesslogtest.CELFilter(t, `request.url_path.startsWith("/fail") && request.headers["x-test"] == "yes"`)),
				}}}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				if strings.HasPrefix(r.URL.Path, "/fail") {
					w.WriteHeader(http.StatusServiceUnavailable)
				}
				io.WriteString(w, "done")
			}), false)
			env := &testEnv{clusters: map[string]Upstream{"outbound|80||web": staticCluster(t, "outbound|80||web", up, false)}}
			hcm := inlineHCM(oneVhost(fwdRoute("web-route", pfx("/"), toCluster("outbound|80||web"))))
			path := filepath.Join(t.TempDir(), "access.log")
			al := fileAccessLog(t, path, "%RESPONSE_CODE% %REQ(:PATH)%\n")
			al.Filter = tc.filter(t)
			hcm.AccessLog = []*accesslogv3.AccessLog{al}
			files := accesslog.NewFiles(accesslog.FilesOptions{})
			t.Cleanup(func() { files.Close() })
			h, err := New(hcm, env, Options{AccessLogFiles: files})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			p := &proxy{h: h, st: h.opts.Stats, infos: make(chan *RequestInfo, 1024)}
			p.addr = serveConns(t, h, loopbackInfo)

			send := func(path string) {
				req, _ := http.NewRequest("GET", p.url(path), nil)
				req.Header.Set("X-Test", "yes")
				resp, _ := roundTrip(t, h1Client(), req)
				want := 200
				if strings.HasPrefix(path, "/fail") {
					want = 503
				}
				if resp.StatusCode != want {
					t.Fatalf("%s: status %d, want %d", path, resp.StatusCode, want)
				}
			}
			for i := 0; i < 6; i++ {
				send("/ok")
				if i%2 == 0 {
					send("/fail")
				}
			}
			send("/fail/last") // the marker: every earlier line is written by the time it is
			var lines []string
			testenv.WaitFor(t, "the marker's access log line", 10*time.Second, func() bool {
				b, _ := os.ReadFile(path)
				lines = strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
				return strings.HasSuffix(string(b), "503 /fail/last\n")
			})
			want := []string{"503 /fail", "503 /fail", "503 /fail", "503 /fail/last"}
			if strings.Join(lines, "|") != strings.Join(want, "|") {
				t.Fatalf("logged lines %q, want %q", lines, want)
			}
		})
	}
}

// TestAccessLogFilterRefused: a filter the proxy does not implement, or a CEL expression that
// does not compile, refuses the connection manager with an error naming the field.
func TestAccessLogFilterRefused(t *testing.T) {
	for _, tc := range []struct {
		filter *accesslogv3.AccessLogFilter
		want   string
	}{
		{xdspb.MustFrom[*accesslogv3.AccessLogFilter](&gaccesslogv3.AccessLogFilter{FilterSpecifier: &gaccesslogv3.AccessLogFilter_RuntimeFilter{
			RuntimeFilter: &gaccesslogv3.RuntimeFilter{RuntimeKey: "k"}}}), "access_log[0].filter.runtime_filter: not supported"},
		{xdspb.MustFrom[*accesslogv3.AccessLogFilter](accesslogtest.CELFilter(t, `response.code >=`)), "access_log[0].filter.extension_filter.typed_config.expression: compiling CEL expression"},
		{xdspb.MustFrom[*accesslogv3.AccessLogFilter](accesslogtest.CELFilter(t, `xds.node.id == "x"`)), "attribute xds.node: not supported"},
	} {
		hcm := inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("c"))))
		al := fileAccessLog(t, filepath.Join(t.TempDir(), "a.log"), "%RESPONSE_CODE%\n")
		al.Filter = tc.filter
		hcm.AccessLog = []*accesslogv3.AccessLog{al}
		files := accesslog.NewFiles(accesslog.FilesOptions{})
		_, err := New(hcm, &testEnv{}, Options{AccessLogFiles: files})
		files.Close()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New = %v, want an error containing %q", err, tc.want)
		}
	}
}
