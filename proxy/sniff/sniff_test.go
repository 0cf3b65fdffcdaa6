package sniff

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"slices"
	"testing"
	"time"
)

// clientHello captures the ClientHello crypto/tls sends for cfg.
func clientHello(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	go func() {
		c := tls.Client(b, cfg)
		c.Handshake() //nolint:errcheck // the other side never answers
		b.Close()
	}()
	a.SetReadDeadline(time.Now().Add(5 * time.Second))
	var out []byte
	buf := make([]byte, 4096)
	for {
		n, err := a.Read(buf)
		out = append(out, buf[:n]...)
		if _, perr := ParseClientHello(out, 0); perr == nil {
			return out
		}
		if err != nil {
			t.Fatalf("reading ClientHello: %v (have %d bytes)", err, len(out))
		}
	}
}

func TestParseClientHelloRealClient(t *testing.T) {
	raw := clientHello(t, &tls.Config{ServerName: "Reviews.Default.svc.cluster.local", NextProtos: []string{"h2", "http/1.1"}})
	ch, err := ParseClientHello(raw, 0)
	if err != nil {
		t.Fatal(err)
	}
	if ch.ServerName != "reviews.default.svc.cluster.local" {
		t.Errorf("ServerName = %q", ch.ServerName)
	}
	if !slices.Equal(ch.ALPN, []string{"h2", "http/1.1"}) {
		t.Errorf("ALPN = %q", ch.ALPN)
	}
	if !slices.Contains(ch.Versions, tls.VersionTLS13) {
		t.Errorf("Versions = %x", ch.Versions)
	}
	// Every strict prefix needs more data.
	for i := 0; i < len(raw); i++ {
		if _, err := ParseClientHello(raw[:i], 0); !errors.Is(err, ErrShort) {
			t.Fatalf("prefix %d: err = %v, want ErrShort", i, err)
		}
	}
	if _, err := ParseClientHello(raw, 64); !errors.Is(err, ErrTooLarge) {
		t.Errorf("small max: err = %v", err)
	}
}

func TestParseClientHelloSplitRecords(t *testing.T) {
	raw := clientHello(t, &tls.Config{ServerName: "a.example", NextProtos: []string{"istio-peer-exchange", "istio"}})
	body := raw[recordHeaderLen:]
	// Re-frame the handshake message into records of 100 bytes.
	var split []byte
	for len(body) > 0 {
		n := min(100, len(body))
		split = append(split, 0x16, 0x03, 0x01, byte(n>>8), byte(n))
		split = append(split, body[:n]...)
		body = body[n:]
	}
	ch, err := ParseClientHello(split, 0)
	if err != nil {
		t.Fatal(err)
	}
	if ch.ServerName != "a.example" || !slices.Equal(ch.ALPN, []string{"istio-peer-exchange", "istio"}) {
		t.Errorf("got %+v", ch)
	}
}

func TestParseClientHelloNotTLS(t *testing.T) {
	for _, in := range []string{"GET / HTTP/1.1\r\n", "\x16\x02", "\x16\x03\x01\x00\x00", "\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00", "SSH-2.0-x"} {
		if _, err := ParseClientHello([]byte(in), 0); !errors.Is(err, ErrNotTLS) {
			t.Errorf("%q: err = %v, want ErrNotTLS", in, err)
		}
	}
}

func TestDetectHTTP(t *testing.T) {
	cases := []struct {
		in, want string
		err      error
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", ProtoHTTP11, nil},
		{"POST /x?y=1 HTTP/1.0\r\n", ProtoHTTP10, nil},
		{"OPTIONS * HTTP/1.1\n", ProtoHTTP11, nil},
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", ProtoH2C, nil},
		{"PRI * HTTP/2.0\r\n", "", ErrShort},
		{"GET / HTTP/1.", "", ErrShort},
		{"GET /abc", "", ErrShort},
		{"GET", "", ErrShort},
		{"GET / HTTP/2.0\r\n", "", ErrNotHTTP},
		{"GET  / HTTP/1.1\r\n", "", ErrNotHTTP},
		{"GET / HTTP/1.1\rX", "", ErrNotHTTP},
		{"\x16\x03\x01", "", ErrNotHTTP},
		{"hello world\n", "", ErrNotHTTP},
		{"G(T / HTTP/1.1\r\n", "", ErrNotHTTP},
	}
	for _, c := range cases {
		got, err := DetectHTTP([]byte(c.in))
		if got != c.want || !errors.Is(err, c.err) {
			t.Errorf("DetectHTTP(%q) = %q, %v; want %q, %v", c.in, got, err, c.want, c.err)
		}
	}
}

// pair returns the two ends of a real loopback TCP connection.
func pair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(ch)
			return
		}
		ch <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-ch
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func TestInspectTLSOverTCP(t *testing.T) {
	client, server := pair(t)
	go tls.Client(client, &tls.Config{ServerName: "x.test", NextProtos: []string{"h2"}}).Handshake() //nolint:errcheck
	sc, res, err := Inspect(server, Options{TLS: true, HTTP: true, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.TransportProtocol != "tls" || res.ServerName != "x.test" || !slices.Equal(res.ALPN, []string{"h2"}) {
		t.Fatalf("res = %+v", res)
	}
	// The peeked bytes are replayed: a real TLS server can complete the handshake... up to the
	// point where it needs a certificate; it must at least read a well-formed ClientHello.
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(sc, hdr); err != nil || hdr[0] != 0x16 {
		t.Fatalf("replay: %x %v", hdr, err)
	}
}

func TestInspectHTTPAndRaw(t *testing.T) {
	client, server := pair(t)
	msg := "GET /p HTTP/1.1\r\nHost: a\r\n\r\n"
	go client.Write([]byte(msg)) //nolint:errcheck
	sc, res, err := Inspect(server, Options{TLS: true, HTTP: true, Timeout: 10 * time.Second})
	if err != nil || res.TransportProtocol != "raw_buffer" || !slices.Equal(res.ALPN, []string{"http/1.1"}) {
		t.Fatalf("res = %+v, err = %v", res, err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(sc, got); err != nil || string(got) != msg {
		t.Fatalf("replay = %q, %v", got, err)
	}

	client2, server2 := pair(t)
	go func() { client2.Write([]byte("\x00\x01binary protocol\n")); client2.(*net.TCPConn).CloseWrite() }() //nolint:errcheck
	sc2, res2, err := Inspect(server2, Options{TLS: true, HTTP: true, Timeout: 10 * time.Second})
	if err != nil || res2.TransportProtocol != "raw_buffer" || res2.ALPN != nil {
		t.Fatalf("res = %+v, err = %v", res2, err)
	}
	all, err := io.ReadAll(sc2)
	if err != nil || string(all) != "\x00\x01binary protocol\n" {
		t.Fatalf("replay = %q, %v", all, err)
	}
}

func TestInspectTimeout(t *testing.T) {
	_, server := pair(t) // a server-first protocol: the client sends nothing
	_, _, err := Inspect(server, Options{TLS: true, Timeout: 50 * time.Millisecond})
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	client2, server2 := pair(t)
	sc, res, err := Inspect(server2, Options{TLS: true, HTTP: true, Timeout: 50 * time.Millisecond, ContinueOnTimeout: true})
	if err != nil || !res.TimedOut || res.TransportProtocol != "raw_buffer" {
		t.Fatalf("res = %+v, err = %v", res, err)
	}
	// The deadline was cleared: a later write is read normally.
	go client2.Write([]byte("late")) //nolint:errcheck
	b := make([]byte, 4)
	if _, err := io.ReadFull(sc, b); err != nil || string(b) != "late" {
		t.Fatalf("after timeout: %q %v", b, err)
	}
}

func TestConnWriteToReplaysPeeked(t *testing.T) {
	client, server := pair(t)
	go func() {
		client.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nrest"))
		client.(*net.TCPConn).CloseWrite()
	}() //nolint:errcheck
	sc, res, err := Inspect(server, Options{HTTP: true, Timeout: 10 * time.Second})
	if err != nil || !slices.Equal(res.ALPN, []string{"h2c"}) {
		t.Fatalf("res = %+v, err = %v", res, err)
	}
	var out bytes.Buffer
	if _, err := sc.WriteTo(&out); err != nil {
		t.Fatal(err)
	}
	if out.String() != "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nrest" {
		t.Fatalf("WriteTo = %q", out.String())
	}
}

func BenchmarkParseClientHello(b *testing.B) {
	raw := clientHello(b, &tls.Config{ServerName: "reviews.default.svc.cluster.local", NextProtos: []string{"istio-peer-exchange", "istio"}})
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseClientHello(raw, 0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDetectHTTP(b *testing.B) {
	req := []byte("GET /productpage HTTP/1.1\r\nHost: productpage:9080\r\n\r\n")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DetectHTTP(req); err != nil {
			b.Fatal(err)
		}
	}
}
