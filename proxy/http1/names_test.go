package http1

import (
	"encoding/binary"
	"strings"
	"testing"
)

// TestKnownNamesSlots checks knownNames: each well-known name is found by knownField in
// either case, and names share a slot only when they share their first four bytes.
func TestKnownNamesSlots(t *testing.T) {
	names := map[string]bool{}
	for slot, k := range knownNames {
		var first string
		for ; k != nil; k = k.next {
			var w [16]byte
			binary.LittleEndian.PutUint64(w[:], k.want[0])
			binary.LittleEndian.PutUint64(w[8:], k.want[1])
			name := string(w[:k.n])
			names[name] = true
			if first == "" {
				first = name[:4]
			} else if name[:4] != first {
				t.Errorf("slot %d holds %q after a name starting %q", slot, name, first)
			}
			for _, n := range []string{name, strings.ToUpper(name)} {
				line := []byte(n + ": value of the field\r\n")
				got := knownField(binary.LittleEndian.Uint64(line), binary.LittleEndian.Uint64(line[8:]))
				if got == nil || got.n != k.n || got.kind != k.kind {
					t.Errorf("knownField(%q) = %+v, want %q", line, got, name)
				}
			}
		}
	}
	if len(names) != 14 {
		t.Errorf("knownNames holds %d names, want 14", len(names))
	}
	for _, line := range []string{"hosts: x\r\n......", "content-foo: x\r\n..", "x-request: 1\r\n....", "accept-charset: x\r\n"} {
		b := []byte(line)
		if got := knownField(binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:])); got != nil {
			t.Errorf("knownField(%q) = %+v, want nil", line, got)
		}
	}
}
