package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
)

// webHost is the service every routing rule sends to; subsets a, b and d are its three backends.
const webHost = "web.e2e.svc.cluster.local"

// routingVS exercises every HTTP match kind (under /m/) and every action (under /a/). Each rule
// that matches sends to subset a; a request no rule matches falls through to subset d, so a test
// tells "matched" from "not matched" by the backend that answered.
var routingVS = edgeVS("routes", "e2e", `["*"]`, `  http:
  - match: [{uri: {exact: /m/exact}}]
    route: [{destination: {host: web.e2e.svc.cluster.local, subset: a}}]
  - match: [{uri: {prefix: /m/prefix/}}]
    route: [{destination: {host: web.e2e.svc.cluster.local, subset: a}}]
  - match: [{uri: {regex: "/m/regex/[0-9]+"}}]
    route: [{destination: {host: web.e2e.svc.cluster.local, subset: a}}]
  - match: [{uri: {exact: /m/icase}, ignoreUriCase: true}]
    route: [{destination: {host: web.e2e.svc.cluster.local, subset: a}}]
  - match: [{uri: {prefix: /m/hdr-exact}, headers: {x-k: {exact: "yes"}}}]
    route: [{destination: {host: web.e2e.svc.cluster.local, subset: a}}]
  - match: [{uri: {prefix: /m/hdr-prefix}, headers: {x-k: {prefix: pre}}}]
    route: [{destination: {host: web.e2e.svc.cluster.local, subset: a}}]
  - match: [{uri: {prefix: /m/hdr-regex}, headers: {x-k: {regex: "v[0-9]+"}}}]
    route: [{destination: {host: web.e2e.svc.cluster.local, subset: a}}]
  - match: [{uri: {prefix: /m/hdr-present}, headers: {x-k: {}}}]
    route: [{destination: {host: web.e2e.svc.cluster.local, subset: a}}]
  - match: [{uri: {prefix: /m/hdr-absent}, withoutHeaders: {x-k: {}}}]
    route: [{destination: {host: web.e2e.svc.cluster.local, subset: a}}]
  - match: [{uri: {prefix: /m/query-exact}, queryParams: {q: {exact: "1"}}}]
    route: [{destination: {host: web.e2e.svc.cluster.local, subset: a}}]
  - match: [{uri: {prefix: /m/query-regex}, queryParams: {q: {regex: "[a-c]+"}}}]
    route: [{destination: {host: web.e2e.svc.cluster.local, subset: a}}]
  - match: [{uri: {prefix: /m/method}, method: {exact: POST}}]
    route: [{destination: {host: web.e2e.svc.cluster.local, subset: a}}]
  - match: [{uri: {prefix: /m/authority}, authority: {exact: special.example}}]
    route: [{destination: {host: web.e2e.svc.cluster.local, subset: a}}]
  - match: [{uri: {prefix: /m/or}, headers: {x-k: {exact: one}}}, {uri: {prefix: /m/or}, queryParams: {k: {exact: two}}}]
    route: [{destination: {host: web.e2e.svc.cluster.local, subset: a}}]
  - match: [{uri: {prefix: /a/split}}]
    route:
    - {destination: {host: web.e2e.svc.cluster.local, subset: a}, weight: 75}
    - {destination: {host: web.e2e.svc.cluster.local, subset: b}, weight: 25}
  - match: [{uri: {prefix: /a/redirect}}]
    redirect: {uri: /landed, authority: elsewhere.example, redirectCode: 301}
  - match: [{uri: {prefix: /a/rewrite-prefix/}}]
    rewrite: {uri: /new/}
    route: [{destination: {host: web.e2e.svc.cluster.local, subset: a}}]
  - match: [{uri: {prefix: /a/rewrite-regex/}}]
    rewrite: {uriRegexRewrite: {match: "^/a/rewrite-regex/([^/]+)/(.*)$", rewrite: "/\\2/\\1"}}
    route: [{destination: {host: web.e2e.svc.cluster.local, subset: a}}]
  - match: [{uri: {prefix: /a/rewrite-authority}}]
    rewrite: {authority: rewritten.example}
    route: [{destination: {host: web.e2e.svc.cluster.local, subset: a}}]
  - match: [{uri: {prefix: /a/headers}}]
    headers:
      request: {set: {x-set: forced}, add: {x-add: added}, remove: [x-drop]}
      response: {set: {x-resp-set: forced}, add: {x-resp-add: added}, remove: [x-backend-secret]}
    route: [{destination: {host: web.e2e.svc.cluster.local, subset: a}}]
  - match: [{uri: {prefix: /a/direct}}]
    directResponse: {status: 418, body: {string: "short and stout"}}
  - match: [{uri: {prefix: /a/timeout}}]
    timeout: 300ms
    route: [{destination: {host: web.e2e.svc.cluster.local, subset: a}}]
  - match: [{uri: {prefix: /a/retry}}]
    retries: {attempts: 3, retryOn: 5xx}
    route: [{destination: {host: web.e2e.svc.cluster.local, subset: a}}]
  - match: [{uri: {prefix: /a/pertry}}]
    retries: {attempts: 2, perTryTimeout: 300ms, retryOn: gateway-error}
    route: [{destination: {host: web.e2e.svc.cluster.local, subset: a}}]
  - match: [{uri: {prefix: /a/noretry}}]
    retries: {attempts: 0}
    route: [{destination: {host: web.e2e.svc.cluster.local, subset: a}}]
  - match: [{uri: {prefix: /a/fault-delay}}]
    fault: {delay: {fixedDelay: 400ms, percentage: {value: 100}}}
    route: [{destination: {host: web.e2e.svc.cluster.local, subset: a}}]
  - match: [{uri: {prefix: /a/fault-abort}}]
    fault: {abort: {httpStatus: 503, percentage: {value: 100}}}
    route: [{destination: {host: web.e2e.svc.cluster.local, subset: a}}]
  - match: [{uri: {prefix: /a/mirror}}]
    route: [{destination: {host: web.e2e.svc.cluster.local, subset: a}}]
    mirror: {host: web.e2e.svc.cluster.local, subset: b}
    mirrorPercentage: {value: 100}
  - match: [{uri: {prefix: /a/cors}}]
    corsPolicy:
      allowOrigins: [{exact: "https://ok.example"}]
      allowMethods: [GET, POST]
      allowHeaders: [x-custom]
      exposeHeaders: [x-backend]
      maxAge: 1h
    route: [{destination: {host: web.e2e.svc.cluster.local, subset: a}}]
  - route: [{destination: {host: web.e2e.svc.cluster.local, subset: d}}]
`)

// TestHTTPRouting drives every VirtualService HTTP match kind and action through one router
// proxy in front of three backends.
func TestHTTPRouting(t *testing.T) {
	skipShort(t)
	a := startBackend(t, "127.0.0.2", "a", backendOptions{})
	b := startBackend(t, "127.0.0.3", "b", backendOptions{})
	d := startBackend(t, "127.0.0.4", "d", backendOptions{})
	gw := testenv.FreePort(t)
	edge(t, map[string]string{
		"gateway.yaml": gatewayYAML(gw),
		"web.yaml":     serviceEntryYAML(webHost, 80, "HTTP", endpoints(a, b, d)...) + "---\n" + subsetsYAML(webHost, "a", "b", "d"),
		"routes.yaml":  routingVS,
		"sem.yaml":     semanticsVS,
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", gw)
	waitBackend(t, 30*time.Second, h1Client, request{URL: base + "/m/exact"}, "a")

	t.Run("match", func(t *testing.T) {
		hdr := func(v string) http.Header { return http.Header{"X-K": {v}} }
		cases := []struct {
			name string
			req  request
			want string // backend; "a" when the rule matched, "d" when it fell through
		}{
			{"uri exact", request{URL: base + "/m/exact"}, "a"},
			{"uri exact, longer path", request{URL: base + "/m/exact/more"}, "d"},
			{"uri exact, other case", request{URL: base + "/M/EXACT"}, "d"},
			{"uri prefix", request{URL: base + "/m/prefix/x/y"}, "a"},
			{"uri prefix, not a prefix", request{URL: base + "/m/prefi"}, "d"},
			{"uri regex", request{URL: base + "/m/regex/123"}, "a"},
			{"uri regex, full match only", request{URL: base + "/m/regex/12x"}, "d"},
			{"ignoreUriCase", request{URL: base + "/M/ICase"}, "a"},
			{"header exact", request{URL: base + "/m/hdr-exact", Header: hdr("yes")}, "a"},
			{"header exact, other value", request{URL: base + "/m/hdr-exact", Header: hdr("yes!")}, "d"},
			{"header prefix", request{URL: base + "/m/hdr-prefix", Header: hdr("prefixed")}, "a"},
			{"header prefix, no prefix", request{URL: base + "/m/hdr-prefix", Header: hdr("xpre")}, "d"},
			{"header regex", request{URL: base + "/m/hdr-regex", Header: hdr("v42")}, "a"},
			{"header regex, full match only", request{URL: base + "/m/hdr-regex", Header: hdr("v42x")}, "d"},
			{"header present", request{URL: base + "/m/hdr-present", Header: hdr("")}, "a"},
			{"header present, absent", request{URL: base + "/m/hdr-present"}, "d"},
			{"withoutHeaders, absent", request{URL: base + "/m/hdr-absent"}, "a"},
			{"withoutHeaders, present", request{URL: base + "/m/hdr-absent", Header: hdr("x")}, "d"},
			{"query exact", request{URL: base + "/m/query-exact?q=1"}, "a"},
			{"query exact, other value", request{URL: base + "/m/query-exact?q=11"}, "d"},
			{"query exact, missing", request{URL: base + "/m/query-exact?p=1"}, "d"},
			{"query regex", request{URL: base + "/m/query-regex?q=abca"}, "a"},
			{"query regex, full match only", request{URL: base + "/m/query-regex?q=abd"}, "d"},
			{"method", request{Method: http.MethodPost, URL: base + "/m/method", Body: "x"}, "a"},
			{"method, other", request{URL: base + "/m/method"}, "d"},
			{"authority", request{URL: base + "/m/authority", Host: "special.example"}, "a"},
			{"authority, other", request{URL: base + "/m/authority", Host: "plain.example"}, "d"},
			{"match list, first", request{URL: base + "/m/or", Header: hdr("one")}, "a"},
			{"match list, second", request{URL: base + "/m/or?k=two"}, "a"},
			{"match list, neither", request{URL: base + "/m/or?k=one", Header: hdr("two")}, "d"},
		}
		for _, c := range cases {
			got, err := backendName(h1Client, c.req)
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			} else if got != c.want {
				t.Errorf("%s: %s %s answered by %q, want %q", c.name, c.req.Method, c.req.URL, got, c.want)
			}
		}
	})

	t.Run("weighted split", func(t *testing.T) {
		const n = 200
		counts := tally(t, h1Client, n, func(int) request { return request{URL: base + "/a/split"} })
		// 75/25: a is expected 150 times (standard deviation ~6); the bounds are ~5 deviations.
		if counts["a"]+counts["b"] != n || counts["a"] < 120 || counts["a"] > 180 {
			t.Fatalf("75/25 split over %d requests: %s", n, fmtCounts(counts))
		}
	})

	t.Run("redirect", func(t *testing.T) {
		rep := mustDo(t, h1Client, request{URL: base + "/a/redirect/x?y=1"})
		if rep.Code != http.StatusMovedPermanently || rep.Header.Get("Location") != "http://elsewhere.example/landed?y=1" {
			t.Fatalf("redirect: %d Location %q", rep.Code, rep.Header.Get("Location"))
		}
	})

	t.Run("rewrite", func(t *testing.T) {
		cases := []struct{ url, host, wantPath, wantHost string }{
			{base + "/a/rewrite-prefix/x/y", "", "/new/x/y", ""},
			{base + "/a/rewrite-regex/one/two/three", "", "/two/three/one", ""},
			{base + "/a/rewrite-authority/p", "original.example", "/a/rewrite-authority/p", "rewritten.example"},
		}
		for _, c := range cases {
			rep := mustDo(t, h1Client, request{URL: c.url, Host: c.host})
			if rep.Code != http.StatusOK || rep.Echo == nil || rep.Echo.Backend != "a" {
				t.Errorf("%s: %d %.200s", c.url, rep.Code, rep.Body)
				continue
			}
			if rep.Echo.Path != c.wantPath {
				t.Errorf("%s: backend saw path %q, want %q", c.url, rep.Echo.Path, c.wantPath)
			}
			if c.wantHost != "" && rep.Echo.Host != c.wantHost {
				t.Errorf("%s: backend saw host %q, want %q", c.url, rep.Echo.Host, c.wantHost)
			}
		}
	})

	t.Run("headers", func(t *testing.T) {
		rep := mustDo(t, h1Client, request{URL: base + "/a/headers", Header: http.Header{
			"X-Set": {"client"}, "X-Add": {"client"}, "X-Drop": {"gone"}, "X-Keep": {"kept"}}})
		if rep.Code != http.StatusOK || rep.Echo == nil {
			t.Fatalf("headers: %d %.200s", rep.Code, rep.Body)
		}
		h := rep.Echo.Headers
		if h["x-set"] != "forced" || h["x-add"] != "client,added" || h["x-drop"] != "" || h["x-keep"] != "kept" {
			t.Errorf("request headers at the backend: x-set=%q x-add=%q x-drop=%q x-keep=%q; want forced, client,added, none, kept",
				h["x-set"], h["x-add"], h["x-drop"], h["x-keep"])
		}
		if got := rep.Header.Get("x-resp-set"); got != "forced" {
			t.Errorf("response x-resp-set = %q, want forced", got)
		}
		if got := rep.Header.Values("x-resp-add"); len(got) != 1 || got[0] != "added" {
			t.Errorf("response x-resp-add = %q, want [added]", got)
		}
		if got := rep.Header.Get("x-backend-secret"); got != "" {
			t.Errorf("response x-backend-secret = %q, want removed", got)
		}
		if got := rep.Header.Get("x-backend"); got != "a" {
			t.Errorf("response x-backend = %q, want a (untouched)", got)
		}
		// What the connection manager adds on its own (a gateway uses the remote address).
		if h["x-request-id"] == "" || h["x-forwarded-proto"] != "http" || !strings.Contains(h["x-forwarded-for"], "127.0.0.1") {
			t.Errorf("generated headers: x-request-id=%q x-forwarded-proto=%q x-forwarded-for=%q",
				h["x-request-id"], h["x-forwarded-proto"], h["x-forwarded-for"])
		}
	})

	t.Run("header limits", func(t *testing.T) {
		many := http.Header{}
		for i := 0; i < 120; i++ {
			many.Set(fmt.Sprintf("X-H%d", i), "v")
		}
		for _, c := range []struct {
			name   string
			client *http.Client
		}{{"HTTP/1.1", h1Client}, {"h2c", h2cClient}} {
			if rep := mustDo(t, c.client, request{URL: base + "/m/exact", Header: many}); rep.Code != http.StatusRequestHeaderFieldsTooLarge {
				t.Errorf("%s with 120 headers: %d, want 431", c.name, rep.Code)
			}
		}
		big := http.Header{}
		for i := 0; i < 18; i++ {
			big.Set(fmt.Sprintf("X-Big-%d", i), strings.Repeat("b", 4<<10))
		}
		for name, h := range map[string]http.Header{"one 70 KiB header": {"X-Big": {strings.Repeat("b", 70<<10)}}, "72 KiB in 18 headers": big} {
			if rep := mustDo(t, h2cClient, request{URL: base + "/m/exact", Header: h}); rep.Code != http.StatusRequestHeaderFieldsTooLarge {
				t.Errorf("h2c with %s: %d, want 431", name, rep.Code)
			}
		}
		// Over HTTP/1.1 the proxy answers and closes the connection with request bytes unread; the
		// client must still read the whole 431 (no reset before it).
		rep := mustDo(t, h1Client, request{URL: base + "/m/exact", Header: http.Header{"X-Big": {strings.Repeat("b", 70<<10)}}})
		if rep.Code != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("HTTP/1.1 with a 70 KiB header: %d, want 431", rep.Code)
		}
	})

	t.Run("direct response", func(t *testing.T) {
		before := a.Hits() + b.Hits() + d.Hits()
		rep := mustDo(t, h1Client, request{URL: base + "/a/direct"})
		if rep.Code != http.StatusTeapot || rep.Body != "short and stout" {
			t.Fatalf("direct response: %d %q", rep.Code, rep.Body)
		}
		if after := a.Hits() + b.Hits() + d.Hits(); after != before {
			t.Fatalf("direct response reached a backend (%d requests)", after-before)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		if rep := mustDo(t, h1Client, request{URL: base + "/a/timeout?sleep=10ms"}); rep.Code != http.StatusOK {
			t.Fatalf("fast request under the timeout: %d %.200s", rep.Code, rep.Body)
		}
		rep := mustDo(t, h1Client, request{URL: base + "/a/timeout?sleep=5s"})
		if rep.Code != http.StatusGatewayTimeout {
			t.Fatalf("slow request: %d %.200s, want 504", rep.Code, rep.Body)
		}
		if rep.Header.Get("x-backend") != "" {
			t.Fatalf("504 carries backend headers: %v", rep.Header)
		}
	})

	t.Run("retries", func(t *testing.T) {
		key := fmt.Sprintf("retry-%d", time.Now().UnixNano())
		rep := mustDo(t, h1Client, request{URL: base + "/a/retry?failonce=" + key})
		if rep.Code != http.StatusOK || rep.Echo == nil || rep.Echo.Backend != "a" {
			t.Fatalf("retried request: %d %.200s", rep.Code, rep.Body)
		}
		if n := a.Attempts(key); n != 2 {
			t.Fatalf("backend saw %d attempts, want 2 (one failure, one retry)", n)
		}
		// A try that outlives perTryTimeout is abandoned and retried.
		key += "-pertry"
		if rep := mustDo(t, h1Client, request{URL: base + "/a/pertry?slowonce=" + key}); rep.Code != http.StatusOK || rep.Echo == nil {
			t.Fatalf("request whose first try is slow: %d %.200s, want 200 from the retry", rep.Code, rep.Body)
		}
		if n := a.Attempts(key); n != 2 {
			t.Fatalf("perTryTimeout: backend saw %d attempts, want 2", n)
		}
		// Istio's default policy (no retries field) retries a 503 too.
		key += "-default"
		if rep := mustDo(t, h1Client, request{URL: base + "/m/exact?failonce=" + key}); rep.Code != http.StatusOK {
			t.Fatalf("request under the default retry policy: %d %.200s, want 200 after a retry", rep.Code, rep.Body)
		}
		if n := a.Attempts(key); n != 2 {
			t.Fatalf("default retry policy: backend saw %d attempts, want 2", n)
		}
		// The control: without retries the failure reaches the client.
		key += "-none"
		if rep := mustDo(t, h1Client, request{URL: base + "/a/noretry?failonce=" + key}); rep.Code != http.StatusServiceUnavailable {
			t.Fatalf("request without retries: %d %.200s, want 503", rep.Code, rep.Body)
		}
		if n := a.Attempts(key); n != 1 {
			t.Fatalf("without retries the backend saw %d attempts, want 1", n)
		}
	})

	t.Run("fault", func(t *testing.T) {
		before := a.Hits()
		rep := mustDo(t, h1Client, request{URL: base + "/a/fault-abort"})
		if rep.Code != http.StatusServiceUnavailable || rep.Header.Get("x-backend") != "" {
			t.Fatalf("fault abort: %d %v %.200s", rep.Code, rep.Header, rep.Body)
		}
		if a.Hits() != before {
			t.Fatalf("aborted request reached the backend")
		}
		// A delay is a lower bound on the answer time; the request then goes through.
		start := time.Now()
		name, err := backendName(h1Client, request{URL: base + "/a/fault-delay"})
		if err != nil || name != "a" {
			t.Fatalf("fault delay: %q, %v", name, err)
		}
		if took := time.Since(start); took < 400*time.Millisecond {
			t.Fatalf("fault delay of 400ms answered after %s", took)
		}
	})

	t.Run("mirror", func(t *testing.T) {
		before := b.Hits()
		for i := 0; i < 5; i++ {
			if name, err := backendName(h1Client, request{URL: base + "/a/mirror"}); err != nil || name != "a" {
				t.Fatalf("mirrored request %d: %q, %v (the answer must come from a)", i, name, err)
			}
		}
		testenv.Eventually(t, 10*time.Second, func() error {
			if n := b.Hits() - before; n != 5 {
				return fmt.Errorf("mirror backend b saw %d requests, want 5", n)
			}
			return nil
		})
	})

	t.Run("cors", func(t *testing.T) {
		preflight := func(origin string) *reply {
			return mustDo(t, h1Client, request{Method: http.MethodOptions, URL: base + "/a/cors", Header: http.Header{
				"Origin": {origin}, "Access-Control-Request-Method": {"POST"}, "Access-Control-Request-Headers": {"x-custom"}}})
		}
		before := a.Hits()
		rep := preflight("https://ok.example")
		if rep.Code != http.StatusOK || rep.Header.Get("Access-Control-Allow-Origin") != "https://ok.example" {
			t.Fatalf("preflight from an allowed origin: %d %v", rep.Code, rep.Header)
		}
		if m := rep.Header.Get("Access-Control-Allow-Methods"); !strings.Contains(m, "POST") {
			t.Errorf("Access-Control-Allow-Methods = %q", m)
		}
		if h := rep.Header.Get("Access-Control-Allow-Headers"); !strings.Contains(h, "x-custom") {
			t.Errorf("Access-Control-Allow-Headers = %q", h)
		}
		if ma := rep.Header.Get("Access-Control-Max-Age"); ma != "3600" {
			t.Errorf("Access-Control-Max-Age = %q, want 3600", ma)
		}
		if a.Hits() != before {
			t.Errorf("the preflight from an allowed origin reached the backend")
		}
		if rep := preflight("https://evil.example"); rep.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("preflight from a foreign origin allowed: %d %v", rep.Code, rep.Header)
		}
		// A simple request from an allowed origin gets the CORS response headers.
		rep = mustDo(t, h1Client, request{URL: base + "/a/cors", Header: http.Header{"Origin": {"https://ok.example"}}})
		if rep.Code != http.StatusOK || rep.Header.Get("Access-Control-Allow-Origin") != "https://ok.example" ||
			!strings.Contains(strings.ToLower(rep.Header.Get("Access-Control-Expose-Headers")), "x-backend") {
			t.Errorf("actual CORS request: %d %v", rep.Code, rep.Header)
		}
	})

	t.Run("semantics", func(t *testing.T) { testRoutingSemantics(t, base, b) })
}
