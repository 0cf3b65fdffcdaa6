package http1

import "testing"

// The heads of proxy/l7's BenchmarkLoopback/proxy_cluster_post: net/http's client request and
// its server's response.
const (
	benchRequest = "POST / HTTP/1.1\r\nHost: 127.0.0.1:34567\r\nUser-Agent: Go-http-client/1.1\r\n" +
		"Content-Length: 1024\r\nContent-Type: application/octet-stream\r\nAccept-Encoding: gzip\r\n\r\n"
	benchResponse = "HTTP/1.1 200 OK\r\nDate: Mon, 07 Dec 2026 02:17:27 GMT\r\nContent-Length: 1024\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n\r\n"
)

func BenchmarkParser(b *testing.B) {
	in := []byte(benchRequest)
	p := new(Parser)
	p.Init(Limits{}, true)
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for i := 0; i < b.N; i++ {
		p.Reset()
		if _, err := p.Feed(in); err != nil || !p.Done() {
			b.Fatal(err)
		}
	}
}

func BenchmarkResponseParser(b *testing.B) {
	in := []byte(benchResponse)
	p := new(ResponseParser)
	p.Init(Limits{})
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for i := 0; i < b.N; i++ {
		p.Reset()
		if _, err := p.Feed(in); err != nil || !p.Done() {
			b.Fatal(err)
		}
		if _, _, _, err := p.Body(false, false); err != nil {
			b.Fatal(err)
		}
	}
}
