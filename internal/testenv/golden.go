package testenv

import (
	"os"
	"testing"
)

// Golden compares got with the golden file at path, or, with update (a test's -update flag),
// rewrites the file with got.
func Golden(t testing.TB, path, got string, update bool) {
	t.Helper()
	if update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run the test with -update)", err)
	}
	if got != string(want) {
		t.Errorf("got differs from %s (run the test with -update and read the diff):\n--- got\n%s--- want\n%s", path, got, want)
	}
}
