package route

import (
	"strings"
	"testing"
)

// stripQueryRef is stripQuery as it was written with strings.IndexAny, the reference.
func stripQueryRef(path string) (string, string) {
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		q := ""
		if path[i] == '?' {
			q = path[i+1:]
			if j := strings.IndexByte(q, '#'); j >= 0 {
				q = q[:j]
			}
		}
		return path[:i], q
	}
	return path, ""
}

func TestStripQuery(t *testing.T) {
	for _, p := range []string{"", "/", "/a", "/a?", "/a?b=1", "/a#f", "/a?b#f", "/a#f?b", "?", "#", "/a?b?c#d#e", "/\x00?\xff"} {
		gp, gq := stripQuery(p)
		wp, wq := stripQueryRef(p)
		if gp != wp || gq != wq {
			t.Errorf("stripQuery(%q) = %q, %q; want %q, %q", p, gp, gq, wp, wq)
		}
	}
}

func FuzzStripQuery(f *testing.F) {
	f.Add("/a?b#c")
	f.Fuzz(func(t *testing.T, p string) {
		gp, gq := stripQuery(p)
		wp, wq := stripQueryRef(p)
		if gp != wp || gq != wq {
			t.Errorf("stripQuery(%q) = %q, %q; want %q, %q", p, gp, gq, wp, wq)
		}
	})
}
