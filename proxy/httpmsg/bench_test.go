package httpmsg

import "testing"

// benchFields are the fields of a typical proxied request and response head.
var benchFields = [][2]string{
	{"User-Agent", "Go-http-client/1.1"}, {"Content-Length", "1024"},
	{"Content-Type", "application/octet-stream"}, {"Accept-Encoding", "gzip"},
	{"Date", "Mon, 07 Dec 2026 13:10:58 GMT"}, {"X-Request-Id", "3f1c5a0e-8d2b-4c11-9a7e-0b6f2d9e4c31"},
	{"X-Forwarded-Proto", "http"},
}

// BenchmarkAddValid adds a head's fields one at a time, as a codec does.
func BenchmarkAddValid(b *testing.B) {
	var fs [][2][]byte
	for _, f := range benchFields {
		fs = append(fs, [2][]byte{[]byte(f[0]), []byte(f[1])})
	}
	var h Header
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		h.Reset()
		for _, f := range fs {
			h.AddValid(f[0], f[1])
		}
	}
}

// BenchmarkValue looks up fields present, as the proxy does per request.
func BenchmarkValue(b *testing.B) {
	var h Header
	for _, f := range benchFields {
		h.Add(f[0], f[1])
	}
	names := []string{"Content-Length", "Content-Type", "Date", "x-request-id"}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		for _, n := range names {
			if _, ok := h.Value(n); !ok {
				b.Fatal(n)
			}
		}
	}
}

// BenchmarkValidValue checks values the proxy adds to a request or response.
func BenchmarkValidValue(b *testing.B) {
	vals := []string{"http", "3f1c5a0e-8d2b-4c11-9a7e-0b6f2d9e4c31", "15000", "2", "10.0.0.1"}
	for i := 0; i < b.N; i++ {
		for _, v := range vals {
			if !validValue(v) {
				b.Fatal(v)
			}
		}
	}
}
