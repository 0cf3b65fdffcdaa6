package l7

import (
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/anypb"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/accesslog"
	"github.com/strait-mesh/strait/proxy/balance"
	"github.com/strait-mesh/strait/proxy/route"
	"github.com/strait-mesh/strait/proxy/upstream"
	accesslogv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/accesslog/v3"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	rbacv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/rbac/v3"
	filev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/access_loggers/file/v3"
	faultv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/fault/v3"
	rbachttpv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/matcher/v3"
	typev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/v3"
)

// fileAccessLog is an access_log entry writing format (text) to path.
func fileAccessLog(t testing.TB, path, format string) *accesslogv3.AccessLog {
	fl := &filev3.FileAccessLog{Path: path, AccessLogFormat: &filev3.FileAccessLog_LogFormat{LogFormat: &corev3.SubstitutionFormatString{
		Format: &corev3.SubstitutionFormatString_TextFormatSource{TextFormatSource: &corev3.DataSource{
			Specifier: &corev3.DataSource_InlineString{InlineString: format}}}}}}
	a, err := anypb.New(fl)
	if err != nil {
		t.Fatal(err)
	}
	return &accesslogv3.AccessLog{Name: "envoy.access_loggers.file", ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: a}}
}

// logProxy serves hcm with an access log in Istio's default TEXT format to a file of its own and
// returns the proxy and a function that waits for the next line.
func logProxy(t *testing.T, hcm *hcmv3.HttpConnectionManager, env Env) (*proxy, func() string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "access.log")
	hcm.AccessLog = []*accesslogv3.AccessLog{fileAccessLog(t, path, accesslog.IstioTextFormat)}
	files := accesslog.NewFiles(accesslog.FilesOptions{})
	p := &proxy{infos: make(chan *RequestInfo, 1024)}
	h, err := New(hcm, env, Options{AccessLogFiles: files})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	p.h, p.st = h, h.opts.Stats
	p.addr = serveConns(t, h, loopbackInfo)
	t.Cleanup(func() { files.Close() })
	read := 0
	next := func() string {
		t.Helper()
		var line string
		testenv.WaitFor(t, "an access log line", 10*time.Second, func() bool {
			b, _ := os.ReadFile(path)
			if i := strings.IndexByte(string(b[read:]), '\n'); i >= 0 {
				line = string(b[read : read+i+1])
				read += i + 1
				return true
			}
			return false
		})
		return line
	}
	return p, next
}

// failingUpstream fails every request with a response flag, as a cluster does.
type failingUpstream struct {
	unlimitedRetries
	flag string
}

func (u failingUpstream) RoundTrip(*http.Request, balance.Context) (*http.Response, error) {
	return nil, &upstream.Error{Flag: u.flag, Err: errors.New("no host")}
}

// TestAccessLogIstioDefault checks the fields of Istio's default TEXT line for a real request
// through the connection manager: each value where Istio's format puts it.
func TestAccessLogIstioDefault(t *testing.T) {
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "hello")
	}), false)
	env := &testEnv{clusters: map[string]Upstream{"outbound|80||web": staticCluster(t, "outbound|80||web", up, false)}}
	p, next := logProxy(t, inlineHCM(oneVhost(fwdRoute("web-route", pfx("/"), toCluster("outbound|80||web")))), env)
	req, _ := http.NewRequest("POST", p.url("/api/items?x=1"), strings.NewReader("body!"))
	req.Header.Set("User-Agent", "strait-test/1")
	req.Header.Set("X-Request-Id", "0d2a3f6e-7c1b-4b51-9f7e-2f5d8d6a1b11")
	req.Host = "web.default:80"
	resp, body := roundTrip(t, h1Client(), req)
	if resp.StatusCode != 200 || body != "hello" {
		t.Fatalf("status %d body %q", resp.StatusCode, body)
	}
	line := next()
	// Everything but the time, the durations and the client's port is known.
	want := regexp.QuoteMeta(`"POST /api/items?x=1 HTTP/1.1" 200 - via_upstream - "-" 5 5 `) + `\d+ \d+ ` +
		regexp.QuoteMeta(`"-" "strait-test/1" "0d2a3f6e-7c1b-4b51-9f7e-2f5d8d6a1b11" "web.default:80" "`+up+`" outbound|80||web - `+p.addr+` `) +
		`127\.0\.0\.1:\d+ - web-route\n$`
	if !regexp.MustCompile(`^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] ` + want).MatchString(line) {
		t.Errorf("line\n%q\ndoes not match\n%q", line, want)
	}
}

func TestAccessLogFailures(t *testing.T) {
	closed := testenv.Listen(t, "127.0.0.1:0")
	deadAddr := closed.Addr().String()
	closed.Close()
	env := &testEnv{clusters: map[string]Upstream{
		"none": failingUpstream{flag: upstream.FlagNoHealthyUpstream},
		"dead": newTestUpstream(deadAddr, false),
	}}
	all := &typev3.FractionalPercent{Numerator: 100}
	abort := testenv.MustAny(t, &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: 500}, Percentage: all}})
	faulty := fwdRoute("faulty", pfx("/fault"), toCluster("none"))
	faulty.TypedPerFilterConfig = map[string]*anypb.Any{route.FaultFilterName: abort}
	rc := oneVhost(faulty, fwdRoute("uh", pfx("/uh"), toCluster("none")), fwdRoute("uf", pfx("/uf"), toCluster("dead")),
		fwdRoute("forbidden", pfx("/admin"), toCluster("none")))
	faultFilter := &hcmv3.HttpFilter{Name: route.FaultFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: testenv.MustAny(t, &faultv3.HTTPFault{})}}
	deny := typedFilter("envoy.filters.http.rbac", &rbachttpv3.RBAC{Rules: &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: map[string]*rbacv3.Policy{
		"ns[default]-policy[deny-admin]-rule[0]": {
			Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherPathPrefix}}}, //nolint:govet // read-only
			Principals:  []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Any{Any: true}}},
		}}}})
	p, next := logProxy(t, inlineHCM(rc, deny, faultFilter), env)
	c := h1Client()
	for _, tc := range []struct {
		path, want string
	}{
		{"/uh", `"GET /uh HTTP/1.1" 503 UH no_healthy_upstream - "-" 0 19 `},
		{"/uf", `"GET /uf HTTP/1.1" 503 UF upstream_reset_before_response_started{connection_failure} - "`},
		{"/fault", `"GET /fault HTTP/1.1" 500 FI fault_filter_abort - "-" 0 18 `},
		{"/admin/x", `"GET /admin/x HTTP/1.1" 403 - rbac_access_denied_matched_policy[ns[default]-policy[deny-admin]-rule[0]] - "-" 0 19 `},
	} {
		resp, _ := roundTrip(t, c, mustRequest(t, "GET", p.url(tc.path)))
		line := next()
		if !strings.Contains(line, "] "+tc.want) {
			t.Errorf("%s: status %d, line\n%q\nwant it to contain\n%q", tc.path, resp.StatusCode, line, tc.want)
		}
		switch tc.path {
		case "/uf":
			// The reason connecting failed, with underscores for spaces, and the cluster.
			if !regexp.MustCompile(`" 503 UF \S+ - "[^" ]*connection_refused" 0 \d+ \d+ - .* "-" dead `).MatchString(line) {
				t.Errorf("UF line: %q", line)
			}
		case "/uh":
			if !strings.Contains(line, `"-" none - `) {
				t.Errorf("UH line has no cluster: %q", line)
			}
		}
	}
}

var matcherPathPrefix = matcherv3.PathMatcher{Rule: &matcherv3.PathMatcher_Path{Path: &matcherv3.StringMatcher{
	MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "/admin"}}}}

func mustRequest(t *testing.T, method, url string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestAccessLogRefusesFilter(t *testing.T) {
	hcm := inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("c"))))
	al := fileAccessLog(t, filepath.Join(t.TempDir(), "a.log"), "%RESPONSE_CODE%\n")
	al.Filter = &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_TraceableFilter{
		TraceableFilter: &accesslogv3.TraceableFilter{}}}
	hcm.AccessLog = []*accesslogv3.AccessLog{al}
	files := accesslog.NewFiles(accesslog.FilesOptions{})
	defer files.Close()
	if _, err := New(hcm, &testEnv{}, Options{AccessLogFiles: files}); err == nil || !strings.Contains(err.Error(), "http_connection_manager.access_log[0].filter.traceable_filter") {
		t.Errorf("got %v, want the filter refused by name", err)
	}
}

// BenchmarkAccessLog is BenchmarkProxy's request with Istio's default access log on (written to
// a discarding file): the request path's added cost of access logging.
func BenchmarkAccessLog(b *testing.B) {
	up := startUpstream(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }), false)
	env := &testEnv{clusters: map[string]Upstream{"c": newTestUpstream(up, false)}}
	for _, on := range []bool{false, true} {
		name := "off"
		hcm := inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("c"))))
		files := accesslog.NewFiles(accesslog.FilesOptions{QueueLines: 1 << 16,
			Open: func(string) (io.WriteCloser, error) { return discard{}, nil }})
		if on {
			name = "istio-text"
			hcm.AccessLog = []*accesslogv3.AccessLog{fileAccessLog(b, "/discard", accesslog.IstioTextFormat)}
		}
		h, err := New(hcm, env, Options{AccessLogFiles: files})
		if err != nil {
			b.Fatal(err)
		}
		addr := serveConns(b, h, loopbackInfo)
		c := h1Client()
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				resp, err := c.Get("http://" + addr + "/x")
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
		files.Close()
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
func (discard) Close() error                { return nil }
