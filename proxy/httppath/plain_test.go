package httppath

import "testing"

func checkPlain(t *testing.T, uri string) {
	if !plainURI(uri) {
		return
	}
	for m := 0; m < 16; m++ {
		o := Options{Canonicalize: m&1 != 0, MergeSlashes: m&2 != 0, UnescapeSlashes: m&4 != 0, RejectEscapedSlashes: m&8 != 0}
		if got, err := normalizeURI(uri, o); err != nil || got != uri {
			t.Fatalf("plainURI(%q) but the full normalization (%+v) gives %q, %v", uri, o, got, err)
		}
	}
}

// TestPlainURI checks plainURI's fast answer against the full normalization: a URI it calls
// plain comes out unchanged under every option.
func TestPlainURI(t *testing.T) {
	for _, u := range []string{"/", "/echo", "/a/b?x=1", "/a/b?x=%2e#", "/a//b", "/a/./b", "/.well-known", "/a%2fb",
		"/a\\b", "/a b", "/a\x00", "?", "", "a", "/a?b?c", "/a;b=c", "/~user/x.y", "/..", "/a/..", "/a/b."} {
		checkPlain(t, u)
	}
	for _, u := range []string{"/", "/echo", "/a/b?x=1", "/a/b?x=%2e&y=\\", "/a;b=c@d:e", "/~user/x.y", "/a/b."} {
		if !plainURI(u) {
			t.Errorf("plainURI(%q) = false", u)
		}
	}
	// Every byte value, and every pair around a slash, at several positions.
	for c := 0; c < 256; c++ {
		for _, u := range []string{"/" + string(rune(c)), "/a" + string([]byte{byte(c)}) + "b", "/a/" + string([]byte{byte(c)}), "/a?" + string([]byte{byte(c)})} {
			checkPlain(t, u)
		}
	}
}

// FuzzPlainURI: any URI plainURI accepts comes out of the full normalization unchanged.
func FuzzPlainURI(f *testing.F) {
	for _, s := range []string{"/", "/echo?x", "/a/./b", "/a//b", "/%2e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) { checkPlain(t, uri) })
}
