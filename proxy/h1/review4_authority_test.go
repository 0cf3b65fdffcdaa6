package h1

import "testing"

// oldValidAuthority is validAuthority as it was before 4307ba4 (one byte at a time): the
// reference for the four-bytes-a-test version.
func oldValidAuthority(b []byte) bool {
	i := 0
	if len(b) > 0 && b[0] == '[' {
		for i = 1; i < len(b) && b[i] != ']'; i++ {
			if c := b[i]; !(c == ':' || c == '.' || '0' <= c && c <= '9' || 'a' <= c|0x20 && c|0x20 <= 'f') {
				return false
			}
		}
		if i == len(b) {
			return false
		}
		i++
	} else {
		for i < len(b) && regName[b[i]] != 0 {
			i++
		}
	}
	if i == len(b) {
		return true
	}
	if b[i] != ':' {
		return false
	}
	for _, c := range b[i+1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// TestReview4ValidAuthorityEveryByte: every byte value at every position of authorities of
// lengths 1 to 13 (reg-names, with ports, IPv6 literals), two bad bytes too, against the
// byte-at-a-time reference.
func TestReview4ValidAuthorityEveryByte(t *testing.T) {
	bases := []string{"a", "ab", "abc", "abcd", "abcde", "abcdefg", "abcdefgh", "abcdefghi", "abcdefghijklm",
		"a:1", "abc:80", "abcd:8080", "abcdefg:443", "[::1]", "[::1]:80", ":", "a:"}
	for _, base := range bases {
		for pos := 0; pos < len(base); pos++ {
			for c := 0; c < 256; c++ {
				b := []byte(base)
				b[pos] = byte(c)
				if got, want := validAuthority(b), oldValidAuthority(b); got != want {
					t.Fatalf("validAuthority(%q) = %v, want %v", b, got, want)
				}
				for pos2 := pos + 1; pos2 < len(b); pos2++ {
					for _, c2 := range []byte{0, ':', '[', ']', '0', 'x', 0x80, 0xff, ' ', '%'} {
						b2 := append([]byte(nil), b...)
						b2[pos2] = c2
						if got, want := validAuthority(b2), oldValidAuthority(b2); got != want {
							t.Fatalf("validAuthority(%q) = %v, want %v", b2, got, want)
						}
					}
				}
			}
		}
	}
}
