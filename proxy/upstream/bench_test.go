package upstream

import (
	"io"
	"net/http"
	"testing"

	"github.com/strait-mesh/strait/proxy/balance"
	clusterv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/cluster/v3"
)

// BenchmarkRoundTrip measures one request through a cluster to a loopback backend, HTTP/1.1
// keep-alive and h2c, against net/http's Transport on the same backend as the baseline.
func BenchmarkRoundTrip(b *testing.B) {
	for _, h2 := range []bool{false, true} {
		name := "http1"
		var opts []backendOpt
		if h2 {
			name = "h2c"
			opts = append(opts, h2cBackend)
		}
		bk := newBenchBackend(b, opts...)
		c := staticCluster("bench-"+name, clusterv3.Cluster_ROUND_ROBIN, bk)
		if h2 {
			c.TypedExtensionProtocolOptions = protoOptions(b, explicitH2())
		}
		cl, err := Compile(c, Deps{})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name+"/cluster", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest("GET", "http://svc.test/", nil)
					resp, err := cl.RoundTrip(req, balance.Context{})
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
				}
			})
		})
		cl.Close()
		if h2 {
			continue
		}
		tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
		url := "http://127.0.0.1:" + itoa(bk.port()) + "/"
		b.Run(name+"/net-http-transport", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest("GET", url, nil)
					resp, err := tr.RoundTrip(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
				}
			})
		})
		tr.CloseIdleConnections()
	}
}

func newBenchBackend(b *testing.B, opts ...backendOpt) *backend {
	return newBackendTB(b, "bench", opts...)
}
