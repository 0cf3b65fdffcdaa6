package listener

import (
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/internal/testenv"
	listenerv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/listener/v3"
	tcpv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/tcp_proxy/v3"
)

// sinkBackend reads and discards everything, acknowledging each 1 MiB with one byte.
func sinkBackend(b *testing.B) string {
	return testenv.ServeTCP(b, "127.0.0.1:0", func(c net.Conn) {
		buf := make([]byte, 1<<20)
		for {
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			if _, err := c.Write([]byte{1}); err != nil {
				return
			}
		}
	})
}

// BenchmarkTCPProxyThroughput pushes 1 MiB per iteration through listener + tcp_proxy to a sink
// over loopback: directly (baseline), with the default idle timeout (pooled-buffer copy that tracks activity) and
// with idle_timeout 0 (io.Copy, i.e. splice(2) between the sockets).
func BenchmarkTCPProxyThroughput(b *testing.B) {
	for _, mode := range []struct {
		name string
		idle *durationpb.Duration
	}{{"direct", nil}, {"tracked", nil}, {"splice", durationpb.New(0)}} {
		b.Run(mode.name, func(b *testing.B) {
			env := newEnv()
			env.tcp["sink"] = sinkBackend(b)
			fc := tcpChain(b, "bench", "sink", nil)
			fc.Filters[0].GetTypedConfig().MarshalFrom(&tcpv3.TcpProxy{StatPrefix: "bench", IdleTimeout: mode.idle, ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: "sink"}})
			_, target := start(b, &listenerv3.Listener{Name: "bench", FilterChains: []*listenerv3.FilterChain{fc}}, env)
			if mode.name == "direct" {
				target = env.tcp["sink"] // baseline without the proxy
			}
			c, err := net.Dial("tcp", target)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Minute))
			buf := make([]byte, 1<<20)
			ack := make([]byte, 1)
			b.SetBytes(int64(len(buf)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, ack); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkConnectionSetup measures accepting a connection, running tls_inspector and
// http_inspector on a plaintext request line, selecting a chain among 20, dialing the backend
// and relaying its first line.
func BenchmarkConnectionSetup(b *testing.B) {
	env := newEnv()
	env.tcp["c"] = tcpBackendB(b, "C")
	var chains []*listenerv3.FilterChain
	for i := 0; i < 19; i++ {
		chains = append(chains, tcpChain(b, "p"+uitoa(uint32(i)), "c", &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(uint32(20000 + i))}))
	}
	chains = append(chains, tcpChain(b, "any", "c", nil))
	_, addr := start(b, &listenerv3.Listener{Name: "setup",
		ListenerFilters: []*listenerv3.ListenerFilter{tlsInspector(b), httpInspector(b)}, FilterChains: chains}, env)
	req := []byte("GET / HTTP/1.1\r\n\r\n")
	buf := make([]byte, 2)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write(req)
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

func tcpBackendB(b *testing.B, tag string) string {
	return testenv.ServeTCP(b, "127.0.0.1:0", func(c net.Conn) {
		c.Write([]byte(tag + "\n"))
		io.Copy(io.Discard, c)
	})
}
