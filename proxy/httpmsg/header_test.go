package httpmsg

import (
	"slices"
	"strings"
	"testing"
)

func fields(h *Header) []string {
	var l []string
	h.Range(func(n, v []byte) bool { l = append(l, string(n)+"="+string(v)); return true })
	return l
}

func TestHeaderEdits(t *testing.T) {
	var h Header
	h.Add("Content-Type", "text/plain")
	h.Add("X-A", "1")
	h.AddBytes([]byte("x-a"), []byte("2"))
	h.Add("X-B", "b")
	if v, ok := h.Value("x-A"); !ok || string(v) != "1" || h.Get("X-B") != "b" || h.Count("X-a") != 2 || h.Has("x-c") {
		t.Fatalf("lookups: %v", fields(&h))
	}
	h.Set("x-a", "3")
	if want := []string{"Content-Type=text/plain", "X-A=3", "X-B=b"}; !slices.Equal(fields(&h), want) {
		t.Fatalf("Set: %v, want %v", fields(&h), want)
	}
	h.SetBytes("x-c", []byte("c"))
	if n := h.Del("CONTENT-TYPE"); n != 1 || h.Len() != 3 {
		t.Fatalf("Del: %d, %v", n, fields(&h))
	}
	var c Header
	c.CopyFrom(&h)
	if !c.Equal(&h) || c.Size() != h.Size() {
		t.Fatalf("CopyFrom: %v", fields(&c))
	}
	h.DelAt(0)
	if want := []string{"X-B=b", "x-c=c"}; !slices.Equal(fields(&h), want) {
		t.Fatalf("DelAt: %v", fields(&h))
	}
	h.Reset()
	if h.Len() != 0 || h.Has("x-b") {
		t.Fatal("Reset")
	}
}

func TestHeaderNoAllocs(t *testing.T) {
	var h Header
	name, value := []byte("X-Request-Id"), []byte("abc")
	run := func() {
		h.Reset()
		h.AddBytes(name, value)
		h.Add("x-forwarded-proto", "http")
		h.Set("x-request-id", "def")
		h.Del("x-forwarded-proto")
		_, _ = h.Value("X-REQUEST-ID")
	}
	run()
	if n := testing.AllocsPerRun(100, run); n != 0 {
		t.Errorf("%v allocations", n)
	}
}

func TestHasTokenAndMethod(t *testing.T) {
	for _, tc := range []struct {
		v, tok string
		want   bool
	}{{"keep-alive, Upgrade", "upgrade", true}, {" close ", "close", true}, {"closed", "close", false}, {"", "close", false}} {
		if HasToken([]byte(tc.v), tc.tok) != tc.want {
			t.Errorf("HasToken(%q, %q) != %v", tc.v, tc.tok, tc.want)
		}
	}
	if Method([]byte("GET")) != "GET" || Method([]byte("PROPFIND")) != "PROPFIND" {
		t.Error("Method")
	}
	var r Request
	r.SetAuthorityString("a")
	r.SetPath([]byte("/p"))
	if r.AuthorityString() != "a" || r.PathString() != "/p" {
		t.Error("pseudo-headers")
	}
	r.Reset()
	if len(r.Path()) != 0 || len(r.Authority()) != 0 {
		t.Error("Reset")
	}
}

// TestLookupByLength covers the name-length filter of Index: names whose lengths differ by 64
// share a bit, deleted names keep theirs, Reset and CopyFrom carry the filter.
func TestLookupByLength(t *testing.T) {
	long := strings.Repeat("x", 65) // same bit as a 1-byte name
	var h Header
	h.Add("a", "1")
	h.AddBytes([]byte(long), []byte("2"))
	if h.Get(long) != "2" || h.Get("A") != "1" || h.Has("b") || h.Has(strings.Repeat("y", 65)) {
		t.Fatal("lookups")
	}
	if h.Del("a") != 1 || h.Has("a") || h.Get(long) != "2" || h.Del("ab") != 0 {
		t.Fatal("after Del")
	}
	var c Header
	c.CopyFrom(&h)
	if c.Get(long) != "2" {
		t.Fatal("CopyFrom")
	}
	h.Reset()
	if h.Has(long) || h.Len() != 0 {
		t.Fatal("Reset")
	}
	h.Set("Content-Type", "text/plain")
	h.SetBytes("Server", []byte("s"))
	if h.Get("content-type") != "text/plain" || h.Get("server") != "s" {
		t.Fatal("Set")
	}
}
