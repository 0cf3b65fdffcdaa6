package http1

import (
	"bytes"
	"strings"
	"testing"
)

func runOf(b []byte, class uint8) int {
	i := 0
	for i < len(b) && charClass[b[i]]&class != 0 {
		i++
	}
	return i
}

// TestWordScans checks valueRun, targetRun and tokenRun against the byte loop for every byte value at
// every position of runs of 1 to 24 bytes, among neighbours of each kind.
func TestWordScans(t *testing.T) {
	for _, fill := range []byte{'a', 'Z', '9', '_', '/', ':', 0x80, 0xff, '\t', ' ', 0x7e, '-'} {
		for n := 1; n <= 24; n++ {
			for pos := 0; pos < n; pos++ {
				for c := 0; c < 256; c++ {
					b := bytes.Repeat([]byte{fill}, n)
					b[pos] = byte(c)
					if got, want := valueRun(b), runOf(b, cValue); got != want {
						t.Fatalf("valueRun(%q) = %d, byte loop says %d", b, got, want)
					}
					if got, want := targetRun(b), runOf(b, cTarget); got != want {
						t.Fatalf("targetRun(%q) = %d, byte loop says %d", b, got, want)
					}
					if got, want := tokenRun(b), runOf(b, cToken); got != want {
						t.Fatalf("tokenRun(%q) = %d, byte loop says %d", b, got, want)
					}
				}
			}
		}
	}
}

// TestKindOf checks kindOf against a byte-wise ASCII case-insensitive comparison for every
// framing field's name in every case, with every token byte at every position, and names one
// byte shorter or longer.
func TestKindOf(t *testing.T) {
	names := map[string]fieldKind{"content-length": kContentLength, "transfer-encoding": kTransferEncoding,
		"connection": kConnection, "upgrade": kUpgrade, "host": kHost}
	want := func(name []byte) fieldKind {
		for s, k := range names {
			if equalFold(name, s) {
				return k
			}
		}
		return kOther
	}
	for s := range names {
		for _, base := range []string{s, strings.ToUpper(s), strings.ToUpper(s[:1]) + s[1:]} {
			for pos := 0; pos < len(base); pos++ {
				for c := 0; c < 256; c++ {
					if !isToken(byte(c)) {
						continue
					}
					b := []byte(base)
					b[pos] = byte(c)
					for _, name := range [][]byte{b, b[1:], append(b, byte(c))} {
						if got, w := kindOf(name), want(name); got != w {
							t.Fatalf("kindOf(%q) = %d, want %d", name, got, w)
						}
					}
				}
			}
		}
	}
}

func FuzzWordScans(f *testing.F) {
	f.Add([]byte("/echo?size=1024 HTTP/1.1"))
	f.Add([]byte("text/html; charset=utf-8\r\n"))
	f.Add([]byte("abcdefgh\x7fijklmnop"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := valueRun(b), runOf(b, cValue); got != want {
			t.Fatalf("valueRun(%q) = %d, byte loop says %d", b, got, want)
		}
		if got, want := targetRun(b), runOf(b, cTarget); got != want {
			t.Fatalf("targetRun(%q) = %d, byte loop says %d", b, got, want)
		}
		if got, want := tokenRun(b), runOf(b, cToken); got != want {
			t.Fatalf("tokenRun(%q) = %d, byte loop says %d", b, got, want)
		}
	})
}

// TestFastPathsKeepLineLimit checks that the request line's fast paths (method, path, version)
// enforce MaxRequestLineBytes at the same byte as the byte-at-a-time path, for every limit.
func TestFastPathsKeepLineLimit(t *testing.T) {
	heads := []string{
		"GET /echo?size=1024 HTTP/1.1\r\nHost: a\r\n\r\n",
		"PROPFIND /a/b/c/d/e/f/g/h/i/j HTTP/1.0\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET http://example.com/x HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"VERYLONGMETHODNAMEOVERTWENTYBYTES / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.2\r\n\r\n",
		"GET / HTTP/1.1x\r\n\r\n",
	}
	for _, in := range heads {
		for lim := 1; lim < len(in)+2; lim++ {
			l := Limits{MaxRequestLineBytes: lim}
			whole, _ := feedPieces(l, in)
			cuts := make([]int, 0, len(in))
			for c := 1; c < len(in); c++ {
				cuts = append(cuts, c)
			}
			if r, _ := feedPieces(l, in, cuts...); r != whole {
				t.Fatalf("%q, line limit %d: byte by byte %+v, whole %+v", in, lim, r, whole)
			}
		}
	}
}
