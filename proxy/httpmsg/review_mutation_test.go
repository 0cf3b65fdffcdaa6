package httpmsg

import (
	"bytes"
	"math/rand"
	"testing"
)

// refFold is the reference lookup: ASCII case-insensitive (only A-Z/a-z fold).
func refFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	low := func(c byte) byte {
		if 'A' <= c && c <= 'Z' {
			return c + 0x20
		}
		return c
	}
	for i := 0; i < len(a); i++ {
		if low(a[i]) != low(b[i]) {
			return false
		}
	}
	return true
}

func refToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tchar[s[i]] {
			return false
		}
	}
	return true
}

func refValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// reviewName draws names of lengths around the word and lens-bit edges from bytes that
// differ only in bit 0x20 (letters and non-letters), non-ASCII bytes, DEL and framing bytes.
func reviewName(r *rand.Rand) string {
	const alpha = "aAbB@`[{]}^~-xX_zZ\x7f\x80\xc1\xe1 :\r\n\x00"
	lens := []int{0, 1, 2, 7, 8, 9, 15, 16, 17, 63, 64, 65, 128}
	n := lens[r.Intn(len(lens))]
	b := make([]byte, n)
	clean := r.Intn(3) == 0
	for i := range b {
		if clean {
			b[i] = "aAbB-xX"[r.Intn(7)]
		} else {
			b[i] = alpha[r.Intn(len(alpha))]
		}
	}
	return string(b)
}

func reviewValue(r *rand.Rand) string {
	const alpha = "ab \t\r\n\x00\x7f\x80\xffz~"
	n := []int{0, 1, 7, 8, 9, 16, 17, 33}[r.Intn(8)]
	b := make([]byte, n)
	clean := r.Intn(2) == 0
	for i := range b {
		if clean {
			b[i] = "ab \tz~\x80"[r.Intn(7)]
		} else {
			b[i] = alpha[r.Intn(len(alpha))]
		}
	}
	return string(b)
}

type refField struct{ name, value string }

// TestReviewMutationSequences drives Header through random sequences of every mutation,
// pooled reuse (Reset) included, against a reference list, and checks after each step that
// (1) the fields are the reference's, (2) a field marked valid is a token and a value the
// writer accepts stored as its exact field line, (3) the lookups find exactly what an ASCII
// case-insensitive comparison finds, and (4) a writer that copies runs of marked lines and
// checks the rest emits exactly the reference's lines or refuses.
func TestReviewMutationSequences(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	var h, src Header
	var ref []refField
	names := make([]string, 0, 16)
	for step := 0; step < 200000; step++ {
		if len(names) < 16 || r.Intn(4) == 0 {
			names = append(names[:0:0], names...)
			if len(names) >= 16 {
				names = names[1:]
			}
			names = append(names, reviewName(r))
		}
		pick := func() string {
			n := names[r.Intn(len(names))]
			if r.Intn(2) == 0 { // same name, other case of its letters, other pointer
				b := []byte(n)
				for i, c := range b {
					if r.Intn(2) == 0 && ('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
						b[i] ^= 0x20
					}
				}
				n = string(b)
			}
			return n
		}
		name, value := pick(), reviewValue(r)
		switch op := r.Intn(13); op {
		case 0, 1:
			h.Add(name, value)
			ref = append(ref, refField{name, value})
		case 2:
			h.AddBytes([]byte(name), []byte(value))
			ref = append(ref, refField{name, value})
		case 3:
			if refToken(name) && refValue(value) { // what a strict parser accepts
				h.AddValid([]byte(name), []byte(value))
				ref = append(ref, refField{name, value})
			}
		case 4:
			src.Reset()
			src.Add(name, value)
			src.Set(name, reviewValue(r))
			src.AddBytes([]byte(pick()), []byte(reviewValue(r)))
			for i := 0; i < src.Len(); i++ {
				h.AddField(&src, i)
				n, v := src.Field(i)
				ref = append(ref, refField{string(n), string(v)})
			}
		case 5, 6:
			h.Set(name, value)
			ref = refSet(ref, name, value)
		case 7:
			h.SetBytes(name, []byte(value))
			ref = refSet(ref, name, value)
		case 8:
			want := 0
			out := ref[:0:0]
			for _, f := range ref {
				if refFold(f.name, name) {
					want++
				} else {
					out = append(out, f)
				}
			}
			if got := h.Del(name); got != want {
				t.Fatalf("step %d: Del(%q) = %d, want %d", step, name, got, want)
			}
			ref = out
		case 9:
			if len(ref) > 0 {
				i := r.Intn(len(ref))
				h.DelAt(i)
				ref = append(ref[:i:i], ref[i+1:]...)
			}
		case 10:
			var c Header
			c.CopyFrom(&h)
			h.Reset()
			h.Add("pad", "x")
			h.CopyFrom(&c)
		case 11:
			if r.Intn(20) == 0 {
				h.Reset()
				ref = ref[:0]
			}
		case 12:
			// AddField of the header's own field.
			if len(ref) > 0 {
				i := r.Intn(len(ref))
				h.AddField(&h, i)
				ref = append(ref, ref[i])
			}
		}
		reviewCheck(t, step, &h, ref, names)
	}
}

func refSet(ref []refField, name, value string) []refField {
	out := ref[:0:0]
	done := false
	for _, f := range ref {
		if refFold(f.name, name) {
			if done {
				continue
			}
			done = true
			f.value = value
		}
		out = append(out, f)
	}
	if !done {
		out = append(out, refField{name, value})
	}
	return out
}

func reviewCheck(t *testing.T, step int, h *Header, ref []refField, names []string) {
	t.Helper()
	if h.Len() != len(ref) {
		t.Fatalf("step %d: Len %d, want %d", step, h.Len(), len(ref))
	}
	var want, got bytes.Buffer
	wantOK := true
	for i, f := range ref {
		n, v := h.Field(i)
		if string(n) != f.name || string(v) != f.value {
			t.Fatalf("step %d: field %d = %q: %q, want %q: %q", step, i, n, v, f.name, f.value)
		}
		if !refToken(f.name) || !refValue(f.value) {
			wantOK = false
		}
		want.WriteString(f.name + ": " + f.value + "\r\n")
		if off, ne, end, ok := h.Line(i); ok {
			if !refToken(f.name) || !refValue(f.value) {
				t.Fatalf("step %d: field %d %q: %q marked valid", step, i, f.name, f.value)
			}
			if string(h.Raw(off, end)) != f.name+": "+f.value+"\r\n" || string(h.Raw(off, ne)) != f.name {
				t.Fatalf("step %d: field %d line %q, name %q", step, i, h.Raw(off, end), h.Raw(off, ne))
			}
		}
	}
	// The writer's algorithm (proxy/h1 writeFields, without skip).
	gotOK := true
	from, to := 0, -1
	for i := 0; i < h.Len(); i++ {
		if off, _, end, ok := h.Line(i); ok {
			if off != to {
				if to >= 0 {
					got.Write(h.Raw(from, to))
				}
				from = off
			}
			to = end
			continue
		}
		if to >= 0 {
			got.Write(h.Raw(from, to))
			to = -1
		}
		n, v := h.Field(i)
		if !ValidName(n) || !ValidValue(v) {
			gotOK = false
			break
		}
		got.WriteString(string(n) + ": " + string(v) + "\r\n")
	}
	if gotOK && to >= 0 {
		got.Write(h.Raw(from, to))
	}
	if gotOK != wantOK || gotOK && got.String() != want.String() {
		t.Fatalf("step %d: writer ok=%v %q, want ok=%v %q", step, gotOK, got.String(), wantOK, want.String())
	}
	probe := append(names[max(0, len(names)-4):len(names):len(names)], "", "@", "`", "[", "{")
	for _, p := range probe {
		first, count := -1, 0
		for i, f := range ref {
			if refFold(f.name, p) {
				if first < 0 {
					first = i
				}
				count++
			}
		}
		if g := h.Index(p, 0); g != first {
			t.Fatalf("step %d: Index(%q) = %d, want %d", step, p, g, first)
		}
		if g := h.Count(p); g != count {
			t.Fatalf("step %d: Count(%q) = %d, want %d", step, p, g, count)
		}
		if h.Has(p) != (first >= 0) {
			t.Fatalf("step %d: Has(%q)", step, p)
		}
		if v, ok := h.Value(p); ok != (first >= 0) || ok && string(v) != ref[first].value {
			t.Fatalf("step %d: Value(%q) = %q %v", step, p, v, ok)
		}
	}
}

// TestReviewEqualFoldBit20 checks every pair of bytes at every position of names of 1 to 17
// bytes: EqualFold folds A-Z/a-z only.
func TestReviewEqualFoldBit20(t *testing.T) {
	for _, n := range []int{1, 7, 8, 9, 16, 17} {
		for pos := 0; pos < n; pos++ {
			a := bytes.Repeat([]byte("k"), n)
			b := bytes.Repeat([]byte("K"), n)
			for x := 0; x < 256; x++ {
				for _, y := range []int{x ^ 0x20, x, x ^ 0x01, x ^ 0x80} {
					a[pos], b[pos] = byte(x), byte(y)
					if g, w := EqualFold(a, string(b)), refFold(string(a), string(b)); g != w {
						t.Fatalf("EqualFold(%q, %q) = %v, want %v", a, b, g, w)
					}
				}
			}
		}
	}
}
