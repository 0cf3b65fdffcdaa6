package httppath

import (
	"strings"
	"testing"
)

func TestCanonicalize(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"/", "/"},
		{"/a/b", "/a/b"},
		{"/a/../b", "/b"},
		{"/a/./b", "/a/b"},
		{"/a/b/..", "/a/"},
		{"/a/b/.", "/a/b/"},
		{"/..", "/"},
		{"/../../a", "/a"},
		{"/a/..b/.c", "/a/..b/.c"},
		{"/a/%2e%2e/b", "/b"},
		{"/a/%2E%2e/b", "/b"},
		{"/a/.%2e/b", "/b"},
		{"/a/%2e/b", "/a/b"},
		{"/a/%252e%252e/b", "/a/%252e%252e/b"}, // decoded once only
		{"/some%2fdata/%61%62%63", "/some%2fdata/abc"},
		{"/%41%5a%30%2d%5f%7e", "/AZ0-_~"},
		{`/some\data`, "/some/data"},
		{`/a\..\b`, "/b"},
		{`\a`, "/a"},
		{"/a b", "/a%20b"},
		{"/é", "/%C3%A9"},
		{"/a%zz", "/a%25zz"},
		{"/a%2", "/a%252"},
		{"/%7%30", "/%2570"}, // never a new escape from decoded characters
		{"/a//b", "/a//b"},
		{"/a/;x=1/../b", "/a/b"},
	} {
		got, err := Canonicalize(c.in)
		if err != nil || got != c.want {
			t.Errorf("Canonicalize(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "a/b", "*", "/a%00b"} {
		if got, err := Canonicalize(bad); err == nil {
			t.Errorf("Canonicalize(%q) = %q, want an error", bad, got)
		}
	}
}

func TestNormalizeOrder(t *testing.T) {
	all := Options{Canonicalize: true, MergeSlashes: true, UnescapeSlashes: true}
	for _, c := range []struct {
		in   string
		o    Options
		want string
	}{
		{"/a//b", Options{Canonicalize: true}, "/a//b"},
		{"/a//b", Options{Canonicalize: true, MergeSlashes: true}, "/a/b"},
		{"/a%2fb", Options{Canonicalize: true, MergeSlashes: true}, "/a%2fb"},
		{"/a%2fb", all, "/a/b"},
		{"/a%2F%2Fb", all, "/a/b"},
		{"/a/b%2f..%2fc", all, "/a/c"},
		{"/a%5c..%5cb", all, "/b"},
		{"/a/../b", Options{}, "/a/../b"},
		{"//x//..//y", all, "/x/y"}, // Envoy merges after resolving dots
	} {
		got, err := Normalize(c.in, c.o)
		if err != nil || got != c.want {
			t.Errorf("Normalize(%q, %+v) = %q, %v; want %q", c.in, c.o, got, err, c.want)
		}
	}
	if _, err := Normalize("/a%00", Options{}); err != ErrNUL {
		t.Errorf("%%00 without normalization: %v, want ErrNUL", err)
	}
}

func TestNoAllocWhenCanonical(t *testing.T) {
	p := "/api/v1/books/12345?x=1"[:len("/api/v1/books/12345")]
	n := testing.AllocsPerRun(100, func() {
		if _, err := Normalize(p, Options{Canonicalize: true, MergeSlashes: true, UnescapeSlashes: true}); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Errorf("%v allocations for a canonical path, want 0", n)
	}
}

// FuzzNormalize checks the normalizer's invariants on any input: it never panics; its output
// is absolute, has no dot segments, no backslashes, no encoded unreserved characters, no
// controls; and normalizing again changes nothing (a second proxy hop sees the same path).
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"/", "/a/../b", "/a/%2e%2E/b", `/a\..\b`, "/a%2f..%2fb", "//a//b", "/a%00", "/%c3%a9", "/a/.%2e/%2e./b"} {
		f.Add(s, true, true, true)
	}
	f.Fuzz(func(t *testing.T, in string, canon, merge, unescape bool) {
		o := Options{Canonicalize: canon, MergeSlashes: merge, UnescapeSlashes: unescape}
		out, err := Normalize(in, o)
		if err != nil || !canon {
			return
		}
		if !strings.HasPrefix(out, "/") || strings.ContainsRune(out, '\\') {
			t.Fatalf("Normalize(%q) = %q: not absolute or has a backslash", in, out)
		}
		for _, seg := range strings.Split(out[1:], "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("Normalize(%q) = %q: dot segment left", in, out)
			}
		}
		for i := 0; i < len(out); i++ {
			if out[i] <= ' ' || out[i] >= 0x7f {
				t.Fatalf("Normalize(%q) = %q: byte %#x left unescaped", in, out, out[i])
			}
		}
		again, err := Normalize(out, o)
		if err != nil || again != out {
			// Decoding is single-pass by design (%252e stays), so a second pass may only differ
			// where the first produced a new escape from "%25"-free input: it must not.
			t.Fatalf("Normalize not idempotent: %q -> %q -> %q (%v)", in, out, again, err)
		}
	})
}

func TestNormalizeURI(t *testing.T) {
	base := Options{Canonicalize: true}
	for _, c := range []struct {
		in   string
		o    Options
		want string
		err  error
	}{
		{"/a/../b?x=/../y", base, "/b?x=/../y", nil}, // the query is never touched
		{"/admin#/../public", base, "/admin", nil},   // the fragment goes
		{"/a?x=1#frag", base, "/a?x=1", nil},         // a fragment after the query too
		{"/a%2fb", Options{RejectEscapedSlashes: true}, "", ErrEscapedSlash},
		{"/a%2fb?q", Options{UnescapeSlashes: true}, "/a/b?q", nil},
		{"/a%00", base, "", ErrNUL},
	} {
		got, err := NormalizeURI(c.in, c.o)
		if got != c.want || err != c.err {
			t.Errorf("NormalizeURI(%q, %+v) = %q, %v; want %q, %v", c.in, c.o, got, err, c.want, c.err)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = NormalizeURI("/api/v1/books/1?full=1", base) }); n != 0 {
		t.Errorf("%v allocations for a canonical URI with a query, want 0", n)
	}
	if !UpperMethod("GET") || !UpperMethod("M-SEARCH") || UpperMethod("get") || UpperMethod("Delete") {
		t.Error("UpperMethod")
	}
}
