package testenv

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strait-mesh/strait/controlplane/config/embedded"
)

// Identity mints a bootstrap token for namespace/serviceAccount through straitd's admin API and
// returns the strait-proxy flags that give a proxy that identity through its agent
// (--ca-address, --ca-root-cert, --bootstrap-token-file, --service-account) and make it speak
// xDS on straitd's mesh port as that identity (--xds-address: later flags win over an earlier
// one, so these go after StartProxy's), as `strait run` passes them.
func (s *Straitd) Identity(t testing.TB, namespace, serviceAccount string) []string {
	t.Helper()
	tok, err := os.ReadFile(s.AdminTokenFile())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := embedded.NewClient(s.HTTP).MintBootstrapToken(ctx, strings.TrimSpace(string(tok)),
		embedded.BootstrapTokenRequest{Namespace: namespace, ServiceAccount: serviceAccount})
	if err != nil {
		t.Fatalf("minting a bootstrap token for %s/%s: %v", namespace, serviceAccount, err)
	}
	dir := t.TempDir()
	tokenFile, rootsFile := filepath.Join(dir, "bootstrap-token"), filepath.Join(dir, "root-cert.pem")
	if err := os.WriteFile(tokenFile, []byte(resp.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rootsFile, []byte(resp.TrustBundle), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"--ca-address", resp.CAAddress, "--ca-root-cert", rootsFile, "--bootstrap-token-file", tokenFile,
		"--service-account", serviceAccount, "--xds-address", resp.CAAddress}
}

// TrustBundle returns the mesh's root certificates (PEM) as straitd hands them to workloads.
func (s *Straitd) TrustBundle(t testing.TB) []byte {
	t.Helper()
	flags := s.Identity(t, "default", "trust-bundle-reader")
	b, err := os.ReadFile(flags[3])
	if err != nil {
		t.Fatal(err)
	}
	return b
}
