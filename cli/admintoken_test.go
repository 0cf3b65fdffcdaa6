package cli

import (
	"os"
	"path/filepath"
	"testing"
)

// TestLoadAdminTokenOrder: --admin-token-file, else $STRAIT_ADMIN_TOKEN_FILE, else
// .strait/data/admin-token when it exists, else none (not an error).
func TestLoadAdminTokenOrder(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	write := func(path, tok string) string {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	g := &globals{}
	t.Setenv(adminTokenEnv, "")
	if a, err := g.loadAdminToken(); err != nil || a.token != "" || a.path != defaultAdminTokenFile {
		t.Errorf("nothing: %+v, %v", a, err)
	}
	write(defaultAdminTokenFile, "from-default")
	if a, err := g.loadAdminToken(); err != nil || a.token != "from-default" {
		t.Errorf("default: %+v, %v", a, err)
	}
	t.Setenv(adminTokenEnv, write(filepath.Join(dir, "env-token"), "from-env"))
	if a, err := g.loadAdminToken(); err != nil || a.token != "from-env" {
		t.Errorf("env: %+v, %v", a, err)
	}
	g.adminTokenFile = write(filepath.Join(dir, "flag-token"), "from-flag")
	if a, err := g.loadAdminToken(); err != nil || a.token != "from-flag" {
		t.Errorf("flag: %+v, %v", a, err)
	}
	g.adminTokenFile = filepath.Join(dir, "missing")
	if _, err := g.loadAdminToken(); err == nil {
		t.Error("a missing --admin-token-file was accepted")
	}
	g.adminTokenFile = ""
	t.Setenv(adminTokenEnv, "")
	os.Chmod(defaultAdminTokenFile, 0o644)
	if _, err := g.loadAdminToken(); err == nil {
		t.Error("a world-readable default token file was accepted")
	}
}
