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

// TestHeaderValidMarks: AddValid marks a field valid, and Add and AddBytes a field that
// passes the checks (a token name, no CR, LF, NUL or other control character but HTAB in the
// value); Set and SetBytes drop the mark of the field they change; AddField and CopyFrom copy
// marks; deletions keep the others' marks; Reset forgets all.
func TestHeaderValidMarks(t *testing.T) {
	var h Header
	h.AddValid([]byte("A"), []byte("1"))
	h.AddValid([]byte("B"), []byte("2"))
	h.AddValid([]byte("C"), []byte("3"))
	h.AddValid([]byte("D"), []byte("4"))
	h.Add("E", "5\t5")
	h.AddBytes([]byte("F"), []byte("6"))
	h.Add("G", "7\r\nInjected: 1")
	h.AddBytes([]byte("H"), []byte("\x00"))
	h.Add("I J", "9")
	h.AddBytes([]byte("K:"), []byte("10"))
	h.Add("L", "\x7f")
	h.AddBytes(nil, []byte("12"))
	if want := []bool{true, true, true, true, true, true, false, false, false, false, false, false}; !slices.Equal(marks(&h), want) {
		t.Fatalf("added: %v, want %v", marks(&h), want)
	}
	h.Set("b", "two")
	h.SetBytes("c", []byte("three"))
	if want := []bool{true, false, false, true, true, true}; !slices.Equal(marks(&h)[:6], want) {
		t.Fatalf("after Set: %v, want %v", marks(&h), want)
	}
	if want := []string{"A=1", "B=two", "C=three", "D=4", "E=5\t5", "F=6"}; !slices.Equal(fields(&h)[:6], want) {
		t.Fatalf("after Set: %v", fields(&h))
	}
	var c Header
	c.CopyFrom(&h)
	var d Header
	for i := 0; i < h.Len(); i++ {
		d.AddField(&h, i)
	}
	if !slices.Equal(marks(&c), marks(&h)) || !c.Equal(&h) {
		t.Fatalf("CopyFrom: %v %v, want %v %v", fields(&c), marks(&c), fields(&h), marks(&h))
	}
	// AddField keeps a mark, and checks an unmarked field as AddBytes does.
	if want := []bool{true, true, true, true, true, true, false, false, false, false, false, false}; !slices.Equal(marks(&d), want) || !d.Equal(&h) {
		t.Fatalf("AddField: %v %v, want %v", fields(&d), marks(&d), want)
	}
	d.Set("a", "\r")
	d.DelAt(2) // C
	if want := []bool{false, true, true, true}; !slices.Equal(marks(&d)[:4], want) {
		t.Fatalf("after deletes: %v %v", fields(&d), marks(&d))
	}
	c.Del("B")
	if want := []bool{true, false, true, true}; !slices.Equal(marks(&c)[:4], want) {
		t.Fatalf("after Del: %v %v", fields(&c), marks(&c))
	}
	c.Reset()
	c.Add("A", "1\n")
	if c.Len() != 1 || c.Valid(0) {
		t.Fatal("Reset kept a mark")
	}
}

// TestHeaderLine: marked fields' lines lie end to end until a field is deleted between,
// and a changed or unmarked field has none.
func TestHeaderLine(t *testing.T) {
	var h Header
	for _, n := range []string{"A", "Bb", "C", "D"} {
		h.AddValid([]byte(n), []byte("v"+strings.ToLower(n)))
	}
	h.Set("c", "x")
	h.Add("E", "v\x00")
	type line struct {
		line, name string
		ok         bool
	}
	var got []line
	var offs, ends []int
	for i := 0; i < h.Len(); i++ {
		off, nameEnd, end, ok := h.Line(i)
		offs, ends = append(offs, off), append(ends, end)
		if !ok {
			got = append(got, line{})
			continue
		}
		got = append(got, line{string(h.Raw(off, end)), string(h.Raw(off, nameEnd)), true})
	}
	if offs[1] != ends[0] || offs[3] == ends[1] {
		t.Errorf("A and Bb's lines do not lie end to end, or Bb and D's do (C is between)")
	}
	want := []line{{"A: va\r\n", "A", true}, {"Bb: vbb\r\n", "Bb", true}, {}, {"D: vd\r\n", "D", true}, {}}
	if !slices.Equal(got, want) {
		t.Fatalf("lines: %v, want %v", got, want)
	}
	h.DelAt(1)
	if _, _, aEnd, _ := h.Line(0); aEnd == offs[2] {
		t.Errorf("after deleting Bb, C's line starts where A's ends")
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

// TestEqualFoldWordAtATime checks EqualFold against a byte-by-byte ASCII fold for every pair
// of byte values at every position of strings of 1 to 20 bytes.
func TestEqualFoldWordAtATime(t *testing.T) {
	fold := func(b []byte, s string) bool {
		if len(b) != len(s) {
			return false
		}
		for i := range b {
			x, y := b[i], s[i]
			if 'A' <= x && x <= 'Z' {
				x += 'a' - 'A'
			}
			if 'A' <= y && y <= 'Z' {
				y += 'a' - 'A'
			}
			if x != y {
				return false
			}
		}
		return true
	}
	for _, fill := range []string{"a", "Z", "-", "\xc1", "^"} {
		for n := 1; n <= 20; n++ {
			for pos := 0; pos < n; pos++ {
				for x := 0; x < 256; x++ {
					for _, y := range []int{x, x ^ 0x20, x ^ 0x80, x ^ 0xa0, 'a', 'A', 0} {
						b := []byte(strings.Repeat(fill, n))
						s := []byte(strings.Repeat(fill, n))
						if len(fill) == 1 && fill[0] >= 'a' && pos%2 == 0 {
							s = []byte(strings.ToUpper(string(s)))
						}
						b[pos], s[pos] = byte(x), byte(y)
						if got, want := EqualFold(b, string(s)), fold(b, string(s)); got != want {
							t.Fatalf("EqualFold(%q, %q) = %v, want %v", b, s, got, want)
						}
					}
				}
			}
		}
	}
	if EqualFold([]byte("abc"), "abcd") {
		t.Fatal("lengths differ")
	}
}

func FuzzEqualFold(f *testing.F) {
	f.Add([]byte("X-Forwarded-Proto"), "x-forwarded-proto")
	f.Add([]byte("a^"), "a~")
	f.Fuzz(func(t *testing.T, b []byte, s string) {
		want := len(b) == len(s)
		for i := 0; want && i < len(b); i++ {
			x, y := b[i], s[i]
			want = x == y || x|0x20 == y|0x20 && 'a' <= x|0x20 && x|0x20 <= 'z'
		}
		if got := EqualFold(b, s); got != want {
			t.Fatalf("EqualFold(%q, %q) = %v, want %v", b, s, got, want)
		}
	})
}

// TestHeaderTokenNames: Add marks a field valid exactly when its name is a token, whatever
// was added before and across Resets.
func TestHeaderTokenNames(t *testing.T) {
	var h Header
	names := []string{"X-Forwarded-Proto", "X-Request-Id", "x-envoy-expected-rq-timeout-ms", "X-Envoy-Upstream-Service-Time", "Content-Type", "Server"}
	for round := 0; round < 3; round++ {
		h.Reset()
		for _, n := range names {
			h.Add(n, "v")
			// Same length as a remembered name, not a token.
			h.Add(strings.Repeat(" ", len(n)), "v")
			h.Add(n[:len(n)-1]+":", "v")
			h.Add(strings.ToUpper(n), "v")
		}
		for i := 0; i < h.Len(); i++ {
			name, _ := h.Field(i)
			if want := ValidName(name); h.Valid(i) != want {
				t.Fatalf("round %d: %q marked %v, want %v", round, name, h.Valid(i), want)
			}
		}
	}
	if n := testing.AllocsPerRun(100, func() { h.Reset(); h.Add("X-Forwarded-Proto", "http") }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}
