package cli

import (
	"strings"
	"testing"

	"github.com/strait-mesh/strait/internal/testenv/kubeenv"
)

// TestInstallUninstallCLI runs `strait install`, `strait uninstall --dry-run`, `strait
// uninstall` (twice) against a real API server with --kubeconfig.
func TestInstallUninstallCLI(t *testing.T) {
	c := kubeenv.Start(t, kubeenv.Options{})
	kc := "--kubeconfig=" + c.Kubeconfig
	if out, err := runCLI(t, "install", kc); err != nil || !strings.Contains(out, "installed") {
		t.Fatalf("install: %v\n%s", err, out)
	}
	out, err := runCLI(t, "uninstall", kc, "--dry-run")
	if err != nil || !strings.Contains(out, "would remove Deployment istio-system/istiod") || !strings.Contains(out, "would remove CustomResourceDefinition virtualservices.networking.istio.io") {
		t.Fatalf("uninstall --dry-run: %v\n%s", err, out)
	}
	out, err = runCLI(t, "uninstall", kc)
	if err != nil || !strings.Contains(out, "removed MutatingWebhookConfiguration istio-sidecar-injector") || !strings.Contains(out, "removed Secret istio-system/cacerts") {
		t.Fatalf("uninstall: %v\n%s", err, out)
	}
	out, err = runCLI(t, "uninstall", kc)
	if err != nil || !strings.Contains(out, "nothing to remove") {
		t.Fatalf("a second uninstall: %v\n%s", err, out)
	}
	if _, err := runCLI(t, "uninstall", kc, "--revision=Not_A_Label"); err == nil || !strings.Contains(err.Error(), "DNS label") {
		t.Errorf("a bad revision: %v", err)
	}
}
