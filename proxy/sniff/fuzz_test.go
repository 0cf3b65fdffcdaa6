package sniff

import (
	"testing"
)

// FuzzParseClientHello checks that arbitrary bytes never make the parser panic or return
// inconsistent results. Seeds (real ClientHellos from crypto/tls) are in testdata/fuzz.
func FuzzParseClientHello(f *testing.F) {
	f.Add([]byte("\x16\x03\x01\x00\x04\x01\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ch, err := ParseClientHello(b, 0)
		if err == nil {
			if ch == nil {
				t.Fatal("nil ClientHello without error")
			}
			if len(ch.ALPN) > maxALPN || len(ch.Versions) > maxVersions || len(ch.ServerName) > 255 {
				t.Fatalf("limits exceeded: %+v", ch)
			}
			// A complete ClientHello stays parseable with trailing bytes.
			if _, err := ParseClientHello(append(b[:len(b):len(b)], 0x17), 0); err != nil {
				t.Fatalf("trailing byte changed result: %v", err)
			}
		}
	})
}

// FuzzDetectHTTP checks the HTTP detector on arbitrary input: no panics, and a positive answer is
// stable when more bytes arrive.
func FuzzDetectHTTP(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DetectHTTP(b)
		if err == nil {
			if p2, err2 := DetectHTTP(append(b[:len(b):len(b)], 'x')); err2 != nil || p2 != p {
				t.Fatalf("result changed with more data: %q %v -> %q %v", p, err, p2, err2)
			}
		}
	})
}
