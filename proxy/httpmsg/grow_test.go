package httpmsg

import (
	"strings"
	"testing"
)

// TestSetGrowsWithFullFields sets a field's value so that the storage grows while the field
// list is full: the value must land in the field, not in a copy of the list.
func TestSetGrowsWithFullFields(t *testing.T) {
	for n := 1; n < 20; n++ {
		var h Header
		for i := 0; i < n; i++ {
			h.Add("a", "1")
		}
		h.fields = h.fields[:len(h.fields):len(h.fields)] // full
		h.buf = h.buf[:len(h.buf):len(h.buf)]
		long := strings.Repeat("v", 100)
		h.Set("a", long)
		if got := h.Get("a"); got != long || h.Len() != 1 {
			t.Fatalf("%d fields: Set: Get = %q, %d fields", n, got, h.Len())
		}
		h.SetBytes("a", []byte(long+"w"))
		if got := h.Get("a"); got != long+"w" {
			t.Fatalf("%d fields: SetBytes: Get = %q", n, got)
		}
		h.fields = h.fields[:len(h.fields):len(h.fields)]
		h.buf = h.buf[:len(h.buf):len(h.buf)]
		h.AddValid([]byte("b"), []byte(long))
		h.Add("c\x00", "x") // unmarked
		var g Header
		g.AddField(&h, 1)
		if v, _ := h.Value("b"); string(v) != long || h.Len() != 3 || !h.Valid(1) || h.Valid(2) {
			t.Fatalf("%d fields: after adds: %q, %d fields", n, v, h.Len())
		}
		if k, v := g.Field(0); string(k) != "b" || string(v) != long || !g.Valid(0) {
			t.Fatalf("AddField: %q: %q", k, v)
		}
	}
}
