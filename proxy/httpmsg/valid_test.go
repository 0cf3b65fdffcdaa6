package httpmsg

import (
	"bytes"
	"testing"
)

// TestValidValueWordAtATime checks the eight-bytes-at-a-time test against the byte loop for
// every byte value at every position of values of 1 to 24 bytes, with neighbours that are
// allowed, high (obs-text) and HTAB.
func TestValidValueWordAtATime(t *testing.T) {
	for _, fill := range []byte{'a', 0x80, 0xff, '\t', ' ', 0x7e} {
		for n := 1; n <= 24; n++ {
			for pos := 0; pos < n; pos++ {
				for c := 0; c < 256; c++ {
					b := bytes.Repeat([]byte{fill}, n)
					b[pos] = byte(c)
					if got, want := validValue(string(b)), validBytes(b); got != want {
						t.Fatalf("validValue(%q) = %v, byte loop says %v", b, got, want)
					}
				}
			}
		}
	}
}

func FuzzValidValue(f *testing.F) {
	f.Add([]byte("text/html; charset=utf-8"))
	f.Add([]byte("a\x00bcdefghijk"))
	f.Add([]byte("abcdefgh\x7fijklmnop"))
	f.Add([]byte("\t\t\t\t\t\t\t\t\r"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validValue(string(b)), validBytes(b); got != want {
			t.Fatalf("validValue(%q) = %v, byte loop says %v", b, got, want)
		}
	})
}

// TestValidNameWordAtATime checks the eight-bytes-at-a-time name test against the table for
// every byte value at every position of names of 1 to 24 bytes, among letters of both cases,
// digits, "-" and other token characters.
func TestValidNameWordAtATime(t *testing.T) {
	for _, fill := range []byte{'a', 'Z', '0', '9', '-', '~', '!'} {
		for n := 1; n <= 24; n++ {
			for pos := 0; pos < n; pos++ {
				for c := 0; c < 256; c++ {
					b := bytes.Repeat([]byte{fill}, n)
					b[pos] = byte(c)
					if got, want := validName(string(b)), validToken(b); got != want {
						t.Fatalf("validName(%q) = %v, table says %v", b, got, want)
					}
				}
			}
		}
	}
	if validName(string([]byte(nil))) || validName("") {
		t.Fatal("empty name is valid")
	}
}

func FuzzValidName(f *testing.F) {
	f.Add([]byte("X-Forwarded-Proto"))
	f.Add([]byte("x-envoy-expected-rq-timeout-ms"))
	f.Add([]byte("abcdefg\rhijk"))
	f.Add([]byte("abcdefgh:ijklmnop"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validName(string(b)), len(b) > 0 && validToken(b); got != want {
			t.Fatalf("validName(%q) = %v, table says %v", b, got, want)
		}
	})
}
