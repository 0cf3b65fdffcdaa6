package httpmsg

import "testing"

// TestMayHaveEnvoyNames checks the mark every way a field can be added, and that it is never
// false while an x-envoy-* field is present.
func TestMayHaveEnvoyNames(t *testing.T) {
	names := []string{"x-envoy-retry-on", "X-Envoy-Max-Retries", "X-ENVOY-A", "x-envoy-", "x-envoy",
		"x-envoyx-a", "x_envoy-a", "x-forwarded-for", "X-Request-Id", "host", "xx-envoy-a", "x-Envoy-internal"}
	adders := map[string]func(h *Header, name string){
		"Add":      func(h *Header, n string) { h.Add(n, "v") },
		"AddBytes": func(h *Header, n string) { h.AddBytes([]byte(n), []byte("v")) },
		"AddValid": func(h *Header, n string) { h.AddValid([]byte(n), []byte("v")) },
		"Set":      func(h *Header, n string) { h.Set(n, "v") },
		"SetBytes": func(h *Header, n string) { h.SetBytes(n, []byte("v")) },
		"invalid":  func(h *Header, n string) { h.Add(n, "bad\r\nvalue") },
		"AddField": func(h *Header, n string) {
			var src Header
			src.Add(n, "v")
			h.AddField(&src, 0)
		},
		"CopyFrom": func(h *Header, n string) {
			var src Header
			src.Add("a", "b")
			src.Add(n, "v")
			h.CopyFrom(&src)
		},
	}
	for how, add := range adders {
		for _, n := range names {
			var h Header
			h.Add("host", "example")
			if h.MayHaveEnvoyNames() {
				t.Fatalf("%s: marked before any x-envoy field", how)
			}
			add(&h, n)
			want := IsEnvoyName([]byte(n))
			if got := h.MayHaveEnvoyNames(); got != want {
				t.Errorf("%s(%q): MayHaveEnvoyNames = %v, want %v", how, n, got, want)
			}
			h.Reset()
			if h.MayHaveEnvoyNames() {
				t.Errorf("%s(%q): still marked after Reset", how, n)
			}
		}
	}
	if !IsEnvoyName([]byte("X-ENVOY-A")) || IsEnvoyName([]byte("x-envoy-")) || IsEnvoyName([]byte("x-envoz-a")) {
		t.Fatal("IsEnvoyName")
	}
}

// FuzzMayHaveEnvoyNames adds arbitrary names and checks the mark never misses one.
func FuzzMayHaveEnvoyNames(f *testing.F) {
	f.Add("x-envoy-a", "host", true)
	f.Add("X-eNvOy-zz", "x-request-id", false)
	f.Fuzz(func(t *testing.T, a, b string, bytesToo bool) {
		var h Header
		h.Add(a, "1")
		if bytesToo {
			h.AddValid([]byte(b), []byte("2"))
		} else {
			h.Set(b, "2")
		}
		any := false
		for i := 0; i < h.Len(); i++ {
			if k, _ := h.Field(i); IsEnvoyName(k) {
				any = true
			}
		}
		if any && !h.MayHaveEnvoyNames() {
			t.Fatalf("x-envoy field present but not marked: %q %q", a, b)
		}
	})
}

// TestIsEnvoyNameBytes changes each byte of an Envoy name to every value and compares
// IsEnvoyName with an ASCII-only reference.
func TestIsEnvoyNameBytes(t *testing.T) {
	ref := func(k []byte) bool {
		if len(k) <= len(envoyPrefix) {
			return false
		}
		for i := 0; i < len(envoyPrefix); i++ {
			c := k[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != envoyPrefix[i] {
				return false
			}
		}
		return true
	}
	for i := 0; i < 9; i++ {
		for c := 0; c < 256; c++ {
			k := []byte("x-envoy-a")
			k[i] = byte(c)
			if got, want := IsEnvoyName(k), ref(k); got != want {
				t.Fatalf("IsEnvoyName(%q) = %v, want %v", k, got, want)
			}
		}
	}
}
