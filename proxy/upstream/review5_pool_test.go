package upstream

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/balance"
	"github.com/strait-mesh/strait/proxy/httpmsg"
	clusterv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/cluster/v3"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	httpv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/upstreams/http/v3"
)

// TestReview5HTTP1PoolChurn: requests from several goroutines over an HTTP/1.1 pool whose
// connections churn (max_requests_per_connection, a short idle timeout, a short
// max_connection_duration, the max_connections breaker), through both RoundTrip and
// RoundTripMessage, some canceled while the upstream holds them (the exchange aborted through
// its watch, the connection closed). Every answered request must get its own response (its id
// echoed), and once idle the pool must forget every connection (the idle timers close them)
// with the accounting back to zero: busy state, ready list and the breakers under the pool's
// lock, onState waiting for it. Run with -race.
func TestReview5HTTP1PoolChurn(t *testing.T) {
	a := newBackend(t, "a")
	a.setHandler(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if strings.HasPrefix(r.URL.Path, "/slow") {
			time.Sleep(30 * time.Millisecond)
		}
		w.Header().Set("X-Id", r.Header.Get("X-Id"))
		_, _ = io.WriteString(w, "id="+r.Header.Get("X-Id"))
	})
	c := breakerCluster("churn", a, &clusterv3.CircuitBreakers_Thresholds{
		MaxConnections: u32(3), MaxPendingRequests: u32(1000)})
	c.TypedExtensionProtocolOptions = protoOptions(t, &httpv3.HttpProtocolOptions{
		CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{
			MaxRequestsPerConnection: u32(4),
			IdleTimeout:              durationpb.New(3 * time.Millisecond),
			MaxConnectionDuration:    durationpb.New(40 * time.Millisecond),
		},
		UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}}}},
	})
	cl, st := compileT(t, c, Deps{})

	const workers, each = 6, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 5))
			for i := range each {
				id := fmt.Sprintf("%d-%d", w, i)
				slow := r.IntN(8) == 0
				path := "/"
				if slow {
					path = "/slow"
				}
				timeout := 10 * time.Second
				if slow && r.IntN(2) == 0 {
					timeout = 5 * time.Millisecond // canceled while the upstream holds it
				}
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				got, err := review5Do(ctx, cl, path, id, r.IntN(2) == 0)
				cancel()
				if err != nil {
					if timeout < time.Second {
						continue // the cancellation may win
					}
					errs <- fmt.Errorf("request %s: %v", id, err)
					return
				}
				if got != "id="+id {
					errs <- fmt.Errorf("request %s answered %q", id, got)
					return
				}
				if r.IntN(3) == 0 {
					time.Sleep(time.Duration(r.IntN(5000)) * time.Microsecond)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	p := cl.set.Load().eps[0].pools[poolH1].Load()
	testenv.WaitFor(t, "the idle connections to time out and the pool to forget them", 10*time.Second, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.conns) == 0 && len(p.ready) == 0 && p.dialing == 0 && p.waiters == 0
	})
	testenv.WaitFor(t, "the accounting to settle", 5*time.Second, func() bool {
		return gauge(st, "cluster.churn.upstream_cx_active") == 0 && cl.breaker.cx.cur.Load() == 0
	})
	for _, g := range []string{"upstream_rq_active", "upstream_rq_pending_active"} {
		if v := gauge(st, "cluster.churn."+g); v != 0 {
			t.Errorf("%s = %d, want 0", g, v)
		}
	}
	if v := cl.breaker.rq.cur.Load(); v != 0 {
		t.Errorf("max_requests breaker holds %d, want 0", v)
	}
}

// review5Do sends a GET with x-id id through RoundTripMessage (msg) or RoundTrip and returns
// the response body.
func review5Do(ctx context.Context, cl *Cluster, path, id string, msg bool) (string, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://svc.test"+path, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("X-Id", id)
	if !msg {
		resp, err := cl.RoundTrip(req, balance.Context{})
		if err != nil {
			return "", err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.Header.Get("X-Id") != id {
			return "", fmt.Errorf("x-id %q in the response", resp.Header.Get("X-Id"))
		}
		return string(b), err
	}
	var h httpmsg.Header
	h.Add("X-Id", id)
	head := &MessageHead{Header: &h, Path: path}
	resp, err := cl.RoundTripMessage(req, head, balance.Context{})
	if err != nil {
		return "", err
	}
	b, err := io.ReadAll(resp.Body)
	got := resp.Header.Get("X-Id")
	resp.Body.Close()
	if got != id {
		return "", fmt.Errorf("x-id %q in the response", got)
	}
	return string(b), err
}

// TestReview5MaxRequestsPerConnectionOne: max_requests_per_connection 1 (Envoy's way to turn
// upstream keep-alive off) lets every connection carry one request: n sequential requests open
// n connections. The request that dials a connection reserves it without the count's check
// (acquire's dial path: pc.requests++ only), so the connection is not drained after it and
// carries a second request.
func TestReview5MaxRequestsPerConnectionOne(t *testing.T) {
	a := newBackend(t, "a")
	c := staticCluster("one", clusterv3.Cluster_ROUND_ROBIN, a)
	c.TypedExtensionProtocolOptions = protoOptions(t, &httpv3.HttpProtocolOptions{
		CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{MaxRequestsPerConnection: u32(1)},
		UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}}}},
	})
	cl, st := compileT(t, c, Deps{})
	const n = 4
	for range n {
		get(t, cl, balance.Context{})
	}
	if got := a.accepted.Load(); got != n {
		t.Errorf("%d requests with max_requests_per_connection 1 used %d connections, want %d (upstream_cx_max_requests %d)",
			n, got, n, counter(st, "cluster.one.upstream_cx_max_requests"))
	}
}
