package l7

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/accesslog"
	accesslogv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/accesslog/v3"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
	matcherv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/matcher/v3"
)

// TestReviewLentValuesKeepAlive: on one keep-alive connection, whose request header storage
// each request overwrites, the lent field values give every request its own answers: header
// matchers (exact and regex), a header hash policy with a regex rewrite and a cookie policy,
// %REQ()% in request_headers_to_add (one of which overwrites the very field it reads, making
// the header's storage grow), and the access log's %REQ()%/%RESP()%, formatted after the router
// edited the header.
func TestReviewLentValuesKeepAlive(t *testing.T) {
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-R", "r:"+r.Header.Get("X-A")+"|"+r.Header.Get("X-Copy"))
	}), false)
	env := &testEnv{clusters: map[string]Upstream{"backend": newTestUpstream(up, false)}}
	hash := []*routev3.RouteAction_HashPolicy{
		{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{Header: &routev3.RouteAction_HashPolicy_Header{
			HeaderName: "x-user", RegexRewrite: &matcherv3.RegexMatchAndSubstitute{
				Pattern: &matcherv3.RegexMatcher{Regex: "nomatch-ever"}, Substitution: "z"}}}},
		{PolicySpecifier: &routev3.RouteAction_HashPolicy_Cookie_{Cookie: &routev3.RouteAction_HashPolicy_Cookie{Name: "session"}}},
	}
	add := func(k, v string) *corev3.HeaderValueOption {
		return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}
	}
	mk := func(name string, m *routev3.RouteMatch) *routev3.Route {
		act := toCluster("backend")
		act.HashPolicy = hash
		r := fwdRoute(name, m, act)
		r.RequestHeadersToAdd = []*corev3.HeaderValueOption{
			add("x-copy", name+":%REQ(x-user)%/%REQ(x-a)%"),
			add("x-a", "%REQ(x-a)%+%REQ(x-a)%"),
		}
		return r
	}
	exact := headerRoute("X-User", &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "bob"}})
	regex := headerRoute("X-User", &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{
		SafeRegex: &matcherv3.RegexMatcher{Regex: "u[0-9]+"}}})
	hcm := inlineHCM(oneVhost(mk("exact", exact), mk("regex", regex), fwdRoute("other", pfx("/"), toCluster("backend"))))
	hcm.UseRemoteAddress = wrapperspb.Bool(false)
	path := filepath.Join(t.TempDir(), "access.log")
	hcm.AccessLog = []*accesslogv3.AccessLog{fileAccessLog(t, path,
		"%REQ(X-A)% %REQ(X-USER)% %REQ(X-COPY)% %REQ(X-REQUEST-ID)% %RESP(X-R)% %ROUTE_NAME%\n")}
	files := accesslog.NewFiles(accesslog.FilesOptions{})
	t.Cleanup(func() { files.Close() })
	h, err := New(hcm, env, Options{AccessLogFiles: files})
	if err != nil {
		t.Fatal(err)
	}
	addr := serveConns(t, h, loopbackInfo)

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	var want []string
	for i := 0; i < 40; i++ {
		user := []string{"bob", fmt.Sprintf("u%d", i), "carol" + strings.Repeat("x", i)}[i%3]
		route := []string{"exact", "regex", "other"}[i%3]
		a := fmt.Sprintf("a%d-%s", i, strings.Repeat("y", (i*7)%31))
		id := fmt.Sprintf("id-%d-%s", i, strings.Repeat("k", i%9))
		fields := "X-User: " + user + "\r\nX-A: " + a + "\r\nX-Request-Id: " + id + "\r\nCookie: other=1; session=s" + a + "\r\n"
		if _, err := io.WriteString(c, "GET /x HTTP/1.1\r\nHost: svc\r\n"+fields+"\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		wantA, wantCopy := a, "-"
		if route != "other" {
			wantA, wantCopy = a+"+"+a, route+":"+user+"/"+a
		}
		upCopy := wantCopy
		if upCopy == "-" {
			upCopy = ""
		}
		if got := resp.Header.Get("X-R"); got != "r:"+wantA+"|"+upCopy {
			t.Errorf("request %d: upstream saw %q, want %q", i, got, "r:"+wantA+"|"+upCopy)
		}
		want = append(want, fmt.Sprintf("%s %s %s %s %s %s", wantA, user, wantCopy, id, "r:"+wantA+"|"+upCopy, route))
	}
	var lines []string
	testenv.WaitFor(t, "the access log lines", 10*time.Second, func() bool {
		b, _ := os.ReadFile(path)
		lines = strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		return len(lines) >= len(want)
	})
	for i := range want {
		if lines[i] != want[i] {
			t.Errorf("line %d: %q, want %q", i, lines[i], want[i])
		}
	}
}
