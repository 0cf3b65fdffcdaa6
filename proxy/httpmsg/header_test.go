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

func marks(h *Header) []bool {
	var l []bool
	for i := 0; i < h.Len(); i++ {
		l = append(l, h.Valid(i))
	}
	return l
}

// TestHeaderValidMarks: AddValid marks a field valid; Set and SetBytes drop the mark of the
// field they change; Add and AddBytes add unmarked fields; AddField and CopyFrom copy marks;
// deletions keep the others' marks; Reset forgets all.
func TestHeaderValidMarks(t *testing.T) {
	var h Header
	h.AddValid([]byte("A"), []byte("1"))
	h.AddValid([]byte("B"), []byte("2"))
	h.AddValid([]byte("C"), []byte("3"))
	h.AddValid([]byte("D"), []byte("4"))
	h.Add("E", "5")
	h.AddBytes([]byte("F"), []byte("6"))
	if want := []bool{true, true, true, true, false, false}; !slices.Equal(marks(&h), want) {
		t.Fatalf("added: %v, want %v", marks(&h), want)
	}
	h.Set("b", "two")
	h.SetBytes("c", []byte("three"))
	if want := []bool{true, false, false, true, false, false}; !slices.Equal(marks(&h), want) {
		t.Fatalf("after Set: %v, want %v", marks(&h), want)
	}
	if want := []string{"A=1", "B=two", "C=three", "D=4", "E=5", "F=6"}; !slices.Equal(fields(&h), want) {
		t.Fatalf("after Set: %v", fields(&h))
	}
	var c Header
	c.CopyFrom(&h)
	var d Header
	for i := 0; i < h.Len(); i++ {
		d.AddField(&h, i)
	}
	for _, x := range []*Header{&c, &d} {
		if !slices.Equal(marks(x), marks(&h)) || !x.Equal(&h) {
			t.Fatalf("copy: %v %v, want %v %v", fields(x), marks(x), fields(&h), marks(&h))
		}
	}
	d.Del("a")
	d.DelAt(2) // D
	if want := []bool{false, false, false, false}; !slices.Equal(marks(&d), want) {
		t.Fatalf("after deletes: %v %v", fields(&d), marks(&d))
	}
	c.Del("B")
	if want := []bool{true, false, true, false, false}; !slices.Equal(marks(&c), want) {
		t.Fatalf("after Del: %v %v", fields(&c), marks(&c))
	}
	c.Reset()
	c.Add("A", "1")
	if c.Valid(0) {
		t.Fatal("Reset kept a mark")
	}
}

// TestHeaderLines: runs of consecutive marked fields come back as their field lines, stop
// before a stop name or an unmarked field, and break where a field was deleted between.
func TestHeaderLines(t *testing.T) {
	var h Header
	for _, n := range []string{"A", "B", "Content-Length", "C", "D", "E", "F"} {
		h.AddValid([]byte(n), []byte("v"+strings.ToLower(n)))
	}
	h.Set("d", "x")
	h.DelAt(5) // E
	stop := NewFieldNames("content-length", "transfer-encoding")
	type run struct {
		lines string
		next  int
	}
	var got []run
	for i := 0; i < h.Len(); i++ {
		l, next := h.Lines(i, stop)
		got = append(got, run{string(l), next})
	}
	want := []run{
		{"A: va\r\nB: vb\r\n", 2}, {"B: vb\r\n", 2}, {"", 2}, {"C: vc\r\n", 4}, {"", 4}, {"F: vf\r\n", 6},
	}
	if !slices.Equal(got, want) {
		t.Errorf("Lines: %v, want %v", got, want)
	}
	if l, next := h.Lines(0, nil); string(l) != "A: va\r\nB: vb\r\nContent-Length: vcontent-length\r\nC: vc\r\n" || next != 4 {
		t.Errorf("Lines without stop names: %q %d", l, next)
	}
}

// TestHeaderLookupSignatures: names that share length, first and last byte, or differ only in
// ASCII case, are told apart or matched as they should, and bytes that fold to the same
// signature but are not letters do not match.
func TestHeaderLookupSignatures(t *testing.T) {
	var h Header
	h.Add("x-ab", "1")
	h.AddValid([]byte("X-CB"), []byte("2"))
	h.Add("x-ab", "3")
	h.Add("a^", "4")
	if h.Get("X-AB") != "1" || h.Get("x-cb") != "2" || h.Count("x-Ab") != 2 || h.Has("x-bb") || h.Index("x-ab", 1) != 2 {
		t.Fatalf("lookups: %v", fields(&h))
	}
	if h.Has("a~") || !h.Has("A^") || h.Has("") {
		t.Fatal("a~ or empty name matched")
	}
	if n := h.Del("X-ab"); n != 2 || !slices.Equal(fields(&h), []string{"X-CB=2", "a^=4"}) {
		t.Fatalf("Del: %d %v", n, fields(&h))
	}
	h.Add("", "empty")
	if !h.Has("") || h.Get("") != "empty" {
		t.Fatal("empty name")
	}
}
