package httpmsg

import (
	"math/rand/v2"
	"testing"
)

// TestNameMatchesStringAPI checks AddName, SetName and SetNameBytes against Add, Set and
// SetBytes from random header states: same fields, same valid marks, same x-envoy mark.
func TestNameMatchesStringAPI(t *testing.T) {
	names := []string{"X-Request-Id", "x-request-id", "Server", "X-Envoy-Internal", "Host", "X-Forwarded-For"}
	values := []string{"", "v", "a b", "bad\r\nv", "x\x00y", "0123456789abcdef0123"}
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 20000; n++ {
		var a, b Header
		for k := r.IntN(5); k > 0; k-- {
			nm, v := names[r.IntN(len(names))], values[r.IntN(len(values))]
			a.Add(nm, v)
			b.Add(nm, v)
		}
		nm, v := names[r.IntN(len(names))], values[r.IntN(len(values))]
		name := MustName(nm)
		switch r.IntN(3) {
		case 0:
			a.Add(nm, v)
			b.AddName(name, v)
		case 1:
			a.Set(nm, v)
			b.SetName(name, v)
		default:
			a.SetBytes(nm, []byte(v))
			b.SetNameBytes(name, []byte(v))
		}
		if a.Len() != b.Len() || a.MayHaveEnvoyNames() != b.MayHaveEnvoyNames() {
			t.Fatalf("len %d/%d envoy %v/%v", a.Len(), b.Len(), a.MayHaveEnvoyNames(), b.MayHaveEnvoyNames())
		}
		for i := 0; i < a.Len(); i++ {
			ka, va := a.Field(i)
			kb, vb := b.Field(i)
			if string(ka) != string(kb) || string(va) != string(vb) || a.Valid(i) != b.Valid(i) {
				t.Fatalf("field %d: %q: %q (valid %v) vs %q: %q (valid %v)", i, ka, va, a.Valid(i), kb, vb, b.Valid(i))
			}
		}
		if name.String() != nm {
			t.Fatal("String")
		}
	}
}

func TestMustNamePanics(t *testing.T) {
	for _, bad := range []string{"", "a b", "x:y", "é"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("MustName(%q) did not panic", bad)
				}
			}()
			MustName(bad)
		}()
	}
}
