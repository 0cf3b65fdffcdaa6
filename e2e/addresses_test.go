package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// TestLoopbackAddressesAreUnique guards the e2e tests, which run in parallel, against two tests
// binding the same loopback workload address (127.0.0.N, N > 2): a second test's proxy would
// then fail to listen, or the first one's clients would reach it. 127.0.0.1 and 127.0.0.2 are
// shared on purpose (backends on ephemeral ports).
func TestLoopbackAddressesAreUnique(t *testing.T) {
	files, err := filepath.Glob("*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`"127\.0\.0\.(\d+)"`)
	owners := map[string][]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			if m[1] == "1" || m[1] == "2" || seen[m[1]] {
				continue
			}
			seen[m[1]] = true
			owners[m[1]] = append(owners[m[1]], f)
		}
	}
	var clash []string
	for n, fs := range owners {
		if len(fs) > 1 {
			clash = append(clash, "127.0.0."+n+" in "+strings.Join(fs, ", "))
		}
	}
	sort.Strings(clash)
	for _, c := range clash {
		t.Errorf("loopback address used by more than one test file: %s", c)
	}
}
