package testenv

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestRemoveStaleBinaries: binaries directories older than the age are removed, newer ones and
// other directories are kept.
func TestRemoveStaleBinaries(t *testing.T) {
	root := t.TempDir()
	old := time.Now().Add(-4 * time.Hour)
	mk := func(name string, mtime time.Time) string {
		dir := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "sub", "straitd"), []byte("x"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(dir, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	stale := mk(binDirPrefix+"1", old)
	fresh := mk(binDirPrefix+"2", time.Now())
	other := mk("other-dir", old)
	removeStaleBinaries(root, staleBinaries)
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("a binaries directory 4 hours old is still there (%v)", err)
	}
	for _, dir := range []string{fresh, other} {
		if _, err := os.Stat(dir); err != nil {
			t.Errorf("%s was removed: %v", dir, err)
		}
	}
}
