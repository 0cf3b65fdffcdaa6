package tlsx

import (
	"crypto/tls"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	matcherv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/matcher/v3"
)

// BenchmarkMeshHandshake measures one sidecar-to-sidecar connection set-up with mutual TLS, as
// the proxies do it: the server and client configurations come from Server and Client with the
// SDS shapes Istio sends (istioServer, istioClient), the certificates are ECDSA P-256 with
// SPIFFE URI SANs from a test CA, and each connection is a loopback TCP connect, the handshake
// and one 4-byte exchange (so that TLS 1.3 session tickets are read and the server has checked
// the client's certificate), then close. Sub-benchmarks:
//
//   - tcp: the same connect, exchange and close in plaintext, the baseline to subtract;
//   - full: a full handshake (the client offers no session: no resumption);
//   - resumed: the client keeps Client's session cache (max_session_keys 1, Envoy's default), so
//     each connection resumes the session of the one before (PSK, still with ECDHE).
//
// Besides ns/op (wall time of one connection, client and server run concurrently) it reports
// cpu-ns/op: the process's user+system CPU time per connection, both sides together — the CPU
// one new connection costs a client and server proxy pair.
//
//	go test -run '^$' -bench MeshHandshake -benchmem ./proxy/tlsx/
func BenchmarkMeshHandshake(b *testing.B) {
	ca := newCA(b, "cluster.local")
	serverSecrets, clientSecrets := &secretMap{}, &secretMap{}
	sc, sk, _ := ca.issue(b, []string{serverID})
	serverSecrets.set(certSecret("default", sc, sk))
	serverSecrets.set(caSecret("ROOTCA", ca.pem))
	cc, ck, _ := ca.issue(b, []string{clientID})
	clientSecrets.set(certSecret("default", cc, ck))
	clientSecrets.set(caSecret("ROOTCA", ca.pem))

	// The SAN checks straitd configures: any workload of the trust domain inbound, the
	// destination's service account outbound.
	srv, err := Server(istioServer(uriMatcher(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "spiffe://cluster.local/"}})), serverSecrets)
	if err != nil {
		b.Fatal(err)
	}
	cli, err := Client(istioClient("outbound_.9080_._.reviews.default.svc.cluster.local", uriMatcher(exact(serverID))), clientSecrets)
	if err != nil {
		b.Fatal(err)
	}
	if cli.ClientSessionCache == nil {
		b.Fatal("Client set no session cache: the resumed case would measure full handshakes")
	}
	full := cli.Clone()
	full.ClientSessionCache = nil

	b.Run("tcp", func(b *testing.B) { benchConnections(b, nil, nil, false) })
	b.Run("full", func(b *testing.B) { benchConnections(b, srv, full, false) })
	b.Run("resumed", func(b *testing.B) { benchConnections(b, srv, cli.Clone(), true) })
}

// benchConnections opens b.N loopback connections one after the other, with TLS when server and
// client are set, and checks that every handshake did (or did not) resume as wantResumed says.
func benchConnections(b *testing.B, server, client *tls.Config, wantResumed bool) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	errs := make(chan error, 1)
	go func() { errs <- serveEcho(ln, server) }()

	// One unmeasured connection: certificate and validation caches are filled, and the resumed
	// case gets its first session.
	cs, err := connect(ln.Addr().String(), client)
	if err != nil {
		b.Fatal(err)
	}
	if client != nil && b.N == 1 { // once per sub-benchmark: its first run has N = 1
		b.Logf("%s, key exchange %s, cipher suite %s", tls.VersionName(cs.Version), cs.CurveID, tls.CipherSuiteName(cs.CipherSuite))
	}
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cs, err := connect(ln.Addr().String(), client)
		if err != nil {
			b.Fatal(err)
		}
		if client != nil && cs.DidResume != wantResumed {
			b.Fatalf("connection %d: resumed=%v, want %v", i, cs.DidResume, wantResumed)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
	ln.Close()
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
}

// connect dials addr, completes the TLS handshake when cfg is set, sends 4 bytes, reads them
// back and closes; it returns the client's view of the TLS connection (zero in plaintext).
func connect(addr string, cfg *tls.Config) (cs tls.ConnectionState, err error) {
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		return cs, err
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
	var c net.Conn = raw
	if cfg != nil {
		tc := tls.Client(raw, cfg)
		if err := tc.Handshake(); err != nil {
			return cs, err
		}
		c = tc
	}
	var buf [4]byte
	if _, err := c.Write([]byte("ping")); err != nil {
		return cs, err
	}
	if _, err := io.ReadFull(c, buf[:]); err != nil {
		return cs, err
	}
	if tc, ok := c.(*tls.Conn); ok {
		cs = tc.ConnectionState()
	}
	return cs, nil
}

// serveEcho accepts connections on ln until it is closed; each one (over TLS when cfg is set)
// echoes one 4-byte message, read after the handshake, in the accepting goroutine: the
// connections of the benchmark come one after the other.
func serveEcho(ln net.Listener, cfg *tls.Config) error {
	for {
		raw, err := ln.Accept()
		if err != nil {
			return nil // the listener was closed
		}
		_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
		var c net.Conn = raw
		if cfg != nil {
			c = tls.Server(raw, cfg)
		}
		var buf [4]byte
		if _, err := io.ReadFull(c, buf[:]); err != nil {
			raw.Close()
			return err
		}
		if _, err := c.Write(buf[:]); err != nil {
			raw.Close()
			return err
		}
		raw.Close()
	}
}

// cpuTime is the process's user+system CPU time in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
