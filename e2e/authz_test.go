package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
)

// TestAuthorizationPolicyBetweenSidecars enforces AuthorizationPolicy on a server sidecar with
// the callers' verified identities: an ALLOW for the client's service account lets it in and
// keeps another workload out (403 "RBAC: access denied"), a DENY beats the ALLOW, a dry-run DENY
// only counts, and removing the policies opens the server again.
func TestAuthorizationPolicyBetweenSidecars(t *testing.T) {
	skipShort(t)
	const clientIP, serverIP, intruderIP = "127.0.0.98", "127.0.0.99", "127.0.0.100"
	app := startBackend(t, "127.0.0.1", "reviews", backendOptions{})
	mesh := mtlsYAML(clientIP, serverIP, app.Addr()) + "---\n" +
		explicitSidecarYAML("intruder", "egress", "bind: "+intruderIP, `hosts: ["e2e/*"]`)
	sd := testenv.StartStraitd(t, map[string]string{"mesh.yaml": mesh})
	server := startSidecar(t, sd, "reviews-1", serverIP, appLabels("reviews"), "reviews")
	startSidecar(t, sd, "client-1", clientIP, appLabels("client"), "client")
	startSidecar(t, sd, "intruder-1", intruderIP, appLabels("intruder"), "intruder")
	host := "reviews.e2e.svc.cluster.local:9080"
	get := func(from, path string) (int, string) {
		rep, err := do(h1Client, request{URL: fmt.Sprintf("http://%s:9080%s", from, path), Host: host})
		if err != nil {
			return 0, err.Error()
		}
		return rep.Code, rep.Body
	}
	expect := func(what, from, path string, code int) {
		t.Helper()
		testenv.Eventually(t, 30*time.Second, func() error {
			if got, body := get(from, path); got != code {
				return fmt.Errorf("%s: %d %.100q, want %d", what, got, body, code)
			}
			return nil
		})
	}
	expect("client before any policy", clientIP, "/hello", http.StatusOK)
	expect("intruder before any policy", intruderIP, "/hello", http.StatusOK)

	sd.WriteConfig(t, "authz.yaml", reviewsPolicyYAML("AuthorizationPolicy", "reviews-callers", `  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/ns/e2e/sa/client]}}]
    to: [{operation: {methods: [GET], paths: ["/hello*"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-secrets, namespace: e2e}
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: ["/hello/secret"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: would-deny-everything
  namespace: e2e
  annotations: {istio.io/dry-run: "true"}
spec:
  action: DENY
  rules: [{}]
`))
	// strait wait returns once every proxy has acknowledged the policy: the server's
	// configuration has it at once (connections already open finish on the configuration they
	// started with, as in Envoy, so traffic is checked below with Eventually).
	if out, err := strait(t, sd, "wait", "authorizationpolicy", "reviews-callers.e2e", "--timeout", "30s"); err != nil {
		t.Fatalf("strait wait: %v\n%s", err, out)
	} else if !strings.Contains(out, "present on 3 out of 3 proxies") {
		t.Errorf("strait wait: %s", out)
	}
	if _, dump, err := server.AdminGet("/config_dump"); err != nil || !strings.Contains(dump, "ns[e2e]-policy[reviews-callers]-rule[0]") {
		t.Errorf("right after strait wait, the server's config dump lacks the policy (%v)", err)
	}
	expect("intruder under ALLOW for client only", intruderIP, "/hello", http.StatusForbidden)
	if code, body := get(intruderIP, "/hello"); code != http.StatusForbidden || body != "RBAC: access denied" {
		t.Errorf("the denial: %d %q, want 403 \"RBAC: access denied\"", code, body)
	}
	expect("client on an allowed path", clientIP, "/hello/world", http.StatusOK)
	expect("client on a path no rule allows", clientIP, "/other", http.StatusForbidden)
	expect("client on a denied path (DENY beats ALLOW)", clientIP, "/hello/secret", http.StatusForbidden)
	// Path tricks reach the same decision after normalization.
	expect("client with a dot-segment path into the denied one", clientIP, "/hello/x/../secret", http.StatusForbidden)

	// strait explain computes the same decisions from the server's live configuration with the
	// proxy's own evaluation code, naming the deciding policy.
	explain := func(wantErr bool, wants []string, args ...string) {
		t.Helper()
		out, err := strait(t, sd, append([]string{"explain", server.Admin, "--port", "9080", "--host", host}, args...)...)
		if (err != nil) != wantErr {
			t.Errorf("strait explain %v: error %v, want error %v:\n%s", args, err, wantErr, out)
		}
		for _, w := range wants {
			if !strings.Contains(out, w) {
				t.Errorf("strait explain %v: output lacks %q:\n%s", args, w, out)
				return
			}
		}
	}
	explain(false, []string{"Decision:      ALLOWED", "ns[e2e]-policy[reviews-callers]-rule[0]"},
		"--principal", "cluster.local/ns/e2e/sa/client", "--path", "/hello/world")
	explain(true, []string{"DENIED (403 RBAC: access denied)", "Decided by:    ns[e2e]-policy[no-secrets]-rule[0]"},
		"--principal", "cluster.local/ns/e2e/sa/client", "--path", "/hello/x/../secret")
	explain(true, []string{"DENIED", "-> denied"}, "--principal", "cluster.local/ns/e2e/sa/intruder", "--path", "/hello")
	explain(false, []string{"(shadow: dry run, AUDIT or CUSTOM) ns[e2e]-policy[would-deny-everything]-rule[0]"},
		"--principal", "spiffe://cluster.local/ns/e2e/sa/client", "--path", "/hello")
	explain(true, []string{"REFUSED (400"}, "--principal", "cluster.local/ns/e2e/sa/client", "--method", "get")

	// strait version reports every connected proxy's build, which is straitd's.
	if out, err := strait(t, sd, "version"); err != nil || !strings.Contains(out, "(3 proxies)") ||
		strings.Contains(out, "unknown") {
		t.Errorf("strait version: %v\n%s", err, out)
	}

	_, stats, err := server.AdminGet("/stats")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{".rbac.denied: ", ".rbac.allowed: ", ".rbac.istio_dry_run_deny_shadow_denied: "} {
		if !strings.Contains(stats, want) {
			t.Errorf("server stats lack %q", want)
		}
	}

	sd.WriteConfig(t, "authz.yaml", "# no policies\n")
	if out, err := strait(t, sd, "wait", "ap", "reviews-callers.e2e", "--for", "delete"); err != nil {
		t.Fatalf("strait wait --for delete: %v\n%s", err, out)
	}
	if _, dump, err := server.AdminGet("/config_dump"); err != nil || strings.Contains(dump, "policy[reviews-callers]") {
		t.Errorf("right after strait wait --for delete, the server's config dump still has the policy (%v)", err)
	}
	expect("intruder after the policies are removed", intruderIP, "/hello", http.StatusOK)
}
