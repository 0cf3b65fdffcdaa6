package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
)

// TestAccessLogs turns on MeshConfig accessLogFile /dev/stdout and checks the lines both sidecars
// print in Istio's default TEXT format for a real request between them: the client side names the
// outbound cluster and the server sidecar it reached, the server side the inbound cluster and the
// application; a request an AuthorizationPolicy DENY refuses is logged by the server with 403 and
// the denying policy in %RESPONSE_CODE_DETAILS%.
func TestAccessLogs(t *testing.T) {
	skipShort(t)
	const clientIP, serverIP = "127.0.0.121", "127.0.0.122"
	app := startBackend(t, "127.0.0.1", "reviews", backendOptions{})
	meshFile := filepath.Join(t.TempDir(), "meshconfig.yaml")
	if err := os.WriteFile(meshFile, []byte("accessLogFile: /dev/stdout\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := mtlsYAML(clientIP, serverIP, app.Addr()) + "---\n" + `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-secrets, namespace: e2e}
spec:
  selector: {matchLabels: {app: reviews}}
  action: DENY
  rules:
  - to: [{operation: {paths: ["/hello/secret"]}}]
`
	sd := testenv.StartStraitd(t, map[string]string{"mesh.yaml": cfg}, "--mesh-config", meshFile)
	sidecar := func(name, ip, app, sa string) *testenv.Proxy {
		return testenv.StartProxy(t, sd.XDS, testenv.ProxyOptions{Mode: "sidecar", Name: name, Namespace: "e2e", IP: ip,
			Labels: map[string]string{"app": app}, Extra: append([]string{"--interception-mode", "NONE"}, sd.Identity(t, "e2e", sa)...)})
	}
	statusAddr := net.JoinHostPort(serverIP, "15020") // Istio's status port, beside the admin
	server := testenv.StartProxy(t, sd.XDS, testenv.ProxyOptions{Mode: "sidecar", Name: "reviews-1", Namespace: "e2e", IP: serverIP,
		Labels: map[string]string{"app": "reviews"}, Extra: append([]string{"--interception-mode", "NONE",
			"--status-address", statusAddr, "--app-metrics-url", "http://" + app.Addr() + "/metrics"}, sd.Identity(t, "e2e", "reviews")...)})
	client := sidecar("client-1", clientIP, "client", "client")
	host := "reviews.e2e.svc.cluster.local:9080"
	get := func(path, id string) int {
		rep, err := do(h1Client, request{URL: fmt.Sprintf("http://%s:9080%s", clientIP, path), Host: host,
			Header: http.Header{"User-Agent": {"accesslog-e2e/1"}, "X-Request-Id": {id}}})
		if err != nil {
			return 0
		}
		return rep.Code
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		if code := get("/hello", "warmup"); code != http.StatusOK {
			return fmt.Errorf("warm-up request: %d", code)
		}
		return nil
	})
	const id = "6b0ec1f4-2d55-4c39-9d0b-accesslog0001"
	if code := get("/hello/world", id); code != http.StatusOK {
		t.Fatalf("request: %d", code)
	}
	q := regexp.QuoteMeta
	start := `\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] `
	// The client sidecar: the outbound route and cluster, the server sidecar as upstream host.
	client.WaitOutput(t, regexp.MustCompile(start+q(`"GET /hello/world HTTP/1.1" 200 - via_upstream - "-" 0 `)+`\d+ \d+ \d+ `+
		q(`"-" "accesslog-e2e/1" "`+id+`" "`+host+`" "`+serverIP+`:9080" outbound|9080||reviews.e2e.svc.cluster.local `)+
		`\S+ \S+ \S+ - \S+\n`), 20*time.Second)
	// The server sidecar: the inbound cluster, the application as upstream host, the client
	// sidecar's mutual TLS connection (SNI of the outbound cluster).
	server.WaitOutput(t, regexp.MustCompile(start+q(`"GET /hello/world HTTP/1.1" 200 - via_upstream - "-" 0 `)+`\d+ \d+ \d+ `+
		q(`"-" "accesslog-e2e/1" "`+id+`" "`+host+`" "`+app.Addr()+`" inbound|9080|| `)+`\S+ `+q(serverIP+`:9080 `)+
		`127\.0\.0\.\d+:\d+ `+q(`outbound_.9080_._.reviews.e2e.svc.cluster.local`)+` \S+\n`), 20*time.Second)

	const deniedID = "6b0ec1f4-2d55-4c39-9d0b-accesslog0002"
	if code := get("/hello/secret", deniedID); code != http.StatusForbidden {
		t.Fatalf("denied request: %d", code)
	}
	server.WaitOutput(t, regexp.MustCompile(start+q(`"GET /hello/secret HTTP/1.1" 403 - rbac_access_denied_matched_policy[ns[e2e]-policy[no-secrets]-rule[0]] - "-" 0 19 `)+
		`\d+ - `+q(`"-" "accesslog-e2e/1" "`+deniedID+`"`)), 20*time.Second)
	client.WaitOutput(t, regexp.MustCompile(q(`"GET /hello/secret HTTP/1.1" 403 - via_upstream - "-" 0 19 `)+`\d+ \d+ `+q(`"-" "accesslog-e2e/1" "`+deniedID+`"`)), 20*time.Second)

	// Istio's status port: ready, and the merged Prometheus page has the server sidecar's
	// standard metrics for these requests, reported as the destination with the caller's
	// verified identity (and the application's own page, here the echo of /metrics).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if code, body, err := testenv.Get(ctx, "http://"+statusAddr+"/healthz/ready", nil); err != nil || code != http.StatusOK {
		t.Errorf("/healthz/ready: %d %v %s", code, err, body)
	}
	_, metrics, err := testenv.Get(ctx, "http://"+statusAddr+"/stats/prometheus", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`istio_requests_total{reporter="destination"`, `source_principal="spiffe://cluster.local/ns/e2e/sa/client"`,
		`response_code="403"`, `connection_security_policy="mutual_tls"`, `"path":"/metrics"`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("the status port's metrics lack %s", want)
		}
	}
}
