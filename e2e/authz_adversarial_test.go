package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
)

// adversarialPolicies guard the server with DENY rules an attacker tries to get around, and an
// ALLOW rule whose scope an attacker tries to leave. Under Istio's semantics: paths are matched
// after normalization and without the query, hosts case-insensitively on the whole authority
// (port included: "host:*" is Istio's idiom for any port), methods exactly, header names
// case-insensitively and duplicate headers as one comma-joined value.
var adversarialPolicies = reviewsPolicyYAML("AuthorizationPolicy", "deny-tricks", `  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin*"]}}]
  - to: [{operation: {hosts: ["secret.example.com", "secret.example.com:*", "secret.example.com.*"]}}]
  - to: [{operation: {methods: ["DELETE"]}}]
  - when: [{key: "request.headers[x-user]", values: ["admin", "*,admin", "admin,*"]}]
  - from: [{source: {notPrincipals: ["cluster.local/ns/e2e/sa/client"]}}]
    to: [{operation: {paths: ["/id*"]}}]
`) + "---\n" + reviewsPolicyYAML("AuthorizationPolicy", "allow-public", `  action: ALLOW
  rules:
  - to: [{operation: {paths: ["/public/*", "/admin*", "/id*"]}}]
`)

// rawCase is one request written byte for byte to the server sidecar, and the outcome a
// correct mesh gives it: the status and, when the request reaches the application, the path
// the application sees (decoded, as a server routes on it).
type rawCase struct {
	name    string
	line    string // request line without CRLF, e.g. "GET /a HTTP/1.1"
	host    string
	headers []string
	code    int
	appPath string // "" when not checked
}

// TestAuthorizationAdversarialRequests sends attackers' spellings of denied requests straight
// to a server sidecar's inbound port (plaintext, as an outsider could under PERMISSIVE) and
// checks that none gets past a policy that denies it: path tricks (dot segments, encoded dots,
// backslashes, doubled and encoded slashes, ";" parameters, fragments, queries), host tricks
// (case, port, trailing dot), method case, duplicate and underscore headers, and spoofed
// identity headers. Then the same under MeshConfig pathNormalization DECODE_AND_MERGE_SLASHES,
// where encoded and doubled slashes are decoded and merged before any decision.
func TestAuthorizationAdversarialRequests(t *testing.T) {
	skipShort(t)
	const serverIP = "127.0.0.111" // unique among the e2e tests, which run in parallel
	app := startBackend(t, "127.0.0.1", "reviews", backendOptions{})
	cfg := staticServiceYAML("reviews.e2e.svc.cluster.local", 9080, "http", "HTTP",
		"{address: "+serverIP+", serviceAccount: reviews, labels: {app: reviews, security.istio.io/tlsMode: istio}}") + "---\n" +
		explicitSidecarYAML("reviews", "ingress", "defaultEndpoint: "+app.Addr(), "bind: "+serverIP) + "---\n" + adversarialPolicies

	base := []rawCase{
		// Baseline.
		{name: "allowed path", line: "GET /public/ok HTTP/1.1", code: 200, appPath: "/public/ok"},
		{name: "denied path", line: "GET /admin HTTP/1.1", code: 403},
		{name: "path outside the ALLOW", line: "GET /private HTTP/1.1", code: 403},
		// Dot segments, plain and encoded, and backslashes: normalized before the decision.
		{name: "dot-dot into denied", line: "GET /public/../admin HTTP/1.1", code: 403},
		{name: "dot-dot out of allowed", line: "GET /public/../private HTTP/1.1", code: 403},
		{name: "single dots", line: "GET /./admin/./x HTTP/1.1", code: 403},
		{name: "encoded dot-dot", line: "GET /public/%2e%2e/admin HTTP/1.1", code: 403},
		{name: "mixed-case encoded dots", line: "GET /public/.%2E/private HTTP/1.1", code: 403},
		{name: "dot-dot above the root", line: "GET /../../admin HTTP/1.1", code: 403},
		{name: "backslash dot-dot", line: `GET /public\..\admin HTTP/1.1`, code: 403},
		{name: "backslash separator", line: `GET /public\ok HTTP/1.1`, code: 200, appPath: "/public/ok"},
		{name: "encoded unreserved letters", line: "GET /%61dmin HTTP/1.1", code: 403},
		{name: "encoded letters in allowed", line: "GET /public/%6fk HTTP/1.1", code: 200, appPath: "/public/ok"},
		{name: "double encoding stays encoded", line: "GET /public/%252e%252e/admin HTTP/1.1", code: 200, appPath: "/public/%2e%2e/admin"},
		{name: "invalid escape", line: "GET /public/%7%30 HTTP/1.1", code: 400}, // never glued into %70
		{name: "NUL", line: "GET /public/%00 HTTP/1.1", code: 400},
		// Parameters, fragments, queries.
		{name: "semicolon parameter", line: "GET /admin;jsessionid=1 HTTP/1.1", code: 403},
		{name: "parameter then dot-dot", line: "GET /public/;x/../../admin HTTP/1.1", code: 403},
		{name: "fragment", line: "GET /admin#frag HTTP/1.1", code: 403},
		{name: "fragment hides nothing", line: "GET /public/ok#/../../admin HTTP/1.1", code: 200, appPath: "/public/ok"},
		{name: "query is not the path", line: "GET /admin?x=/public/ok HTTP/1.1", code: 403},
		{name: "query with a path", line: "GET /public/ok?x=/admin HTTP/1.1", code: 200, appPath: "/public/ok"},
		// Under BASE encoded and doubled slashes are kept: the ALLOW's "/public/*" does not
		// match "/public%2f.." and the DENY's "/admin*" is not fooled by "//admin" (a
		// different path for Istio and for the application).
		{name: "encoded slash out of allowed", line: "GET /public%2f..%2fprivate HTTP/1.1", code: 403},
		{name: "doubled slash", line: "GET //admin HTTP/1.1", code: 403},
		// Hosts.
		{name: "denied host", line: "GET /public/ok HTTP/1.1", host: "secret.example.com", code: 403},
		{name: "host case", line: "GET /public/ok HTTP/1.1", host: "SeCrEt.Example.COM", code: 403},
		{name: "host with port", line: "GET /public/ok HTTP/1.1", host: "secret.example.com:9080", code: 403},
		{name: "host trailing dot", line: "GET /public/ok HTTP/1.1", host: "secret.example.com.", code: 403},
		{name: "host trailing dot and port", line: "GET /public/ok HTTP/1.1", host: "secret.example.com.:80", code: 403},
		// Methods.
		{name: "denied method", line: "DELETE /public/ok HTTP/1.1", code: 403},
		{name: "lower-case method", line: "delete /public/ok HTTP/1.1", code: 400},
		{name: "mixed-case method", line: "Delete /public/ok HTTP/1.1", code: 400},
		// Headers.
		{name: "denied header", line: "GET /public/ok HTTP/1.1", headers: []string{"x-user: admin"}, code: 403},
		{name: "header name case", line: "GET /public/ok HTTP/1.1", headers: []string{"X-USER: admin"}, code: 403},
		{name: "duplicate header", line: "GET /public/ok HTTP/1.1", headers: []string{"x-user: guest", "X-User: admin"}, code: 403},
		{name: "duplicate header first", line: "GET /public/ok HTTP/1.1", headers: []string{"x-user: admin", "x-user: guest"}, code: 403},
		{name: "underscore header is another header", line: "GET /public/ok HTTP/1.1", headers: []string{"x_user: admin"}, code: 200, appPath: "/public/ok"},
		// Spoofed identity: only the TLS peer is an identity.
		{name: "no identity", line: "GET /id HTTP/1.1", code: 403},
		{name: "spoofed XFCC", line: "GET /id HTTP/1.1", code: 403, headers: []string{
			`x-forwarded-client-cert: By=spiffe://cluster.local/ns/e2e/sa/reviews;URI=spiffe://cluster.local/ns/e2e/sa/client`}},
		{name: "spoofed peer metadata", line: "GET /id HTTP/1.1", code: 403, headers: []string{
			"x-envoy-peer-metadata-id: sidecar~127.0.0.1~client-1.e2e~e2e.svc.cluster.local", "x-envoy-peer-metadata: e30="}},
		{name: "spoofed forwarded identity", line: "GET /id HTTP/1.1", code: 403, headers: []string{
			"x-forwarded-for: 127.0.0.1", "x-envoy-external-address: 127.0.0.1", "x-envoy-internal: true"}},
	}
	spoofed := []string{"x-forwarded-client-cert", "x-envoy-peer-metadata", "x-envoy-peer-metadata-id"}

	run := func(t *testing.T, extra []string, cases []rawCase) {
		sd := testenv.StartStraitd(t, map[string]string{"mesh.yaml": cfg}, extra...)
		testenv.StartProxy(t, sd.XDS, testenv.ProxyOptions{Mode: "sidecar", Name: "reviews-1", Namespace: "e2e", IP: serverIP,
			Labels: map[string]string{"app": "reviews"}, Extra: append([]string{"--interception-mode", "NONE"}, sd.Identity(t, "e2e", "reviews")...)})
		addr := net.JoinHostPort(serverIP, "9080")
		testenv.Eventually(t, 30*time.Second, func() error {
			if code, _, err := rawRequest(addr, "GET /private HTTP/1.1", "reviews.e2e.svc.cluster.local", nil); err != nil || code != 403 {
				return fmt.Errorf("policies not in force yet: %d %v", code, err)
			}
			return nil
		})
		for _, c := range cases {
			host := c.host
			if host == "" {
				host = "reviews.e2e.svc.cluster.local"
			}
			code, body, err := rawRequest(addr, c.line, host, c.headers)
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
				continue
			}
			if code != c.code {
				t.Errorf("%s (%q, Host %q): %d %.120q, want %d", c.name, c.line, host, code, body, c.code)
				continue
			}
			if code != 200 {
				continue
			}
			var e echo
			if err := json.Unmarshal([]byte(body), &e); err != nil {
				t.Errorf("%s: not an echo: %.120q", c.name, body)
				continue
			}
			if c.appPath != "" && e.Path != c.appPath {
				t.Errorf("%s: the application saw path %q, want %q (what authorization judged)", c.name, e.Path, c.appPath)
			}
			for _, h := range spoofed {
				if v, ok := e.Headers[h]; ok {
					t.Errorf("%s: the application received %s: %q from an outsider", c.name, h, v)
				}
			}
			if _, ok := e.Headers["x-user"]; ok && c.name == "underscore header is another header" {
				t.Errorf("%s: x_user reached the application as x-user", c.name)
			}
		}
	}

	t.Run("BASE", func(t *testing.T) { run(t, nil, base) })

	t.Run("DECODE_AND_MERGE_SLASHES", func(t *testing.T) {
		meshFile := filepath.Join(t.TempDir(), "meshconfig.yaml")
		if err := os.WriteFile(meshFile, []byte("pathNormalization: {normalization: DECODE_AND_MERGE_SLASHES}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		run(t, []string{"--mesh-config", meshFile}, []rawCase{
			{name: "allowed path", line: "GET /public/ok HTTP/1.1", code: 200, appPath: "/public/ok"},
			{name: "encoded slash into denied", line: "GET /public%2f..%2fadmin HTTP/1.1", code: 403},
			{name: "encoded slash out of allowed", line: "GET /public%2f..%2fprivate HTTP/1.1", code: 403},
			{name: "upper-case encoded slash", line: "GET /public%2F..%2Fprivate HTTP/1.1", code: 403},
			{name: "encoded backslash", line: "GET /public%5c..%5cadmin HTTP/1.1", code: 403},
			{name: "doubled slash", line: "GET //admin HTTP/1.1", code: 403},
			// Envoy resolves dot segments before merging slashes, and forwards the result: the
			// application gets the very path that was judged.
			{name: "many slashes", line: "GET /public///..//admin HTTP/1.1", code: 200, appPath: "/public/admin"},
			{name: "slashes then dot-dot", line: "GET /public//../admin HTTP/1.1", code: 200, appPath: "/public/admin"},
			{name: "dot-dot then slashes", line: "GET /public/..//admin HTTP/1.1", code: 403},
			{name: "encoded slash in allowed", line: "GET /public%2fok HTTP/1.1", code: 200, appPath: "/public/ok"},
			{name: "merged slashes in allowed", line: "GET /public//ok HTTP/1.1", code: 200, appPath: "/public/ok"},
		})
	})
}

// rawRequest writes one request byte for byte (request line, Host, extra header lines,
// Connection: close) and returns the response status and body.
func rawRequest(addr, line, host string, headers []string) (int, string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	b.WriteString(line + "\r\nHost: " + host + "\r\n")
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("Connection: close\r\n\r\n")
	if _, err := io.WriteString(c, b.String()); err != nil {
		return 0, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, string(body), nil
}
