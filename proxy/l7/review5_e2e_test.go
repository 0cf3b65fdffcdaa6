package l7

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/stats"
	"github.com/strait-mesh/strait/proxy/upstream"
	"github.com/strait-mesh/strait/proxy/xdspb"
	clusterv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/cluster/v3"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
)

// review5Echo echoes the request body with the request's x-id, after an optional delay
// (x-delay-ms); x-fail-first answers 503 to the first try of an id.
func review5Echo(failed *atomic.Int64) http.Handler {
	var seen sync.Map
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		if ms, _ := strconv.Atoi(r.Header.Get("x-delay-ms")); ms > 0 {
			time.Sleep(time.Duration(ms) * time.Millisecond)
		}
		if _, again := seen.LoadOrStore(r.Header.Get("x-id"), true); !again && r.Header.Get("x-fail-first") != "" {
			failed.Add(1)
			w.WriteHeader(503)
			return
		}
		w.Header().Set("x-id", r.Header.Get("x-id"))
		w.Write(b)
	})
}

// TestReview5KeepAliveMixedBodies drives the pooled per-Stream state changed today (solo
// replayBody and its hand-over, the stream stage without timers' lock, the reqCancel's
// endRequest, the spare h1Body, the HTTP/1.1 pool's ready list and lock-guarded busy state,
// the lazy deadlines and the lock-free watch) through keep-alive connections, each request of
// which alternates: bodiless, a small body (prefetched, in memory), a large body (streamed
// through a bodyView, recorded), a chunked body, a first try answered 503 (a retry, replaying
// the body), and a request slow enough that the client gives up (per-try timeout, then a
// retry). Every response must be the echo of its own request (id and body), the upstream
// pool must end idle, and the derived downstream stats must add up. Run with -race.
func TestReview5KeepAliveMixedBodies(t *testing.T) {
	t.Run("h1", func(t *testing.T) {
		review5MixedBodies(t, func() *http.Transport {
			return &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1, DisableCompression: true}
		})
	})
	// HTTP/2 (h2c): the stream stage's write stall watch (stream_idle_timeout) runs, so a
	// pooled streamEnd goes from no timers to timers.
	t.Run("h2c", func(t *testing.T) {
		review5MixedBodies(t, func() *http.Transport {
			p := new(http.Protocols)
			p.SetUnencryptedHTTP2(true)
			return &http.Transport{Protocols: p, DisableCompression: true}
		})
	})
}

func review5MixedBodies(t *testing.T, transport func() *http.Transport) {
	var failed atomic.Int64
	up := startUpstream(t, review5Echo(&failed), false)
	// max_retries well above the concurrent retries (Envoy's default 3 would overflow, as it
	// should, when the connections retry at once).
	cc := xdspb.MustFrom[*clusterv3.Cluster](testenv.StaticCluster("c", 2*time.Second, up))
	cc.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{MaxRetries: wrapperspb.UInt32(100)}}}
	cl, err := upstream.Compile(cc, upstream.Deps{Stats: stats.NewStore()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	env := &testEnv{clusters: map[string]Upstream{"c": cl}}
	a := toCluster("c")
	a.Timeout = durationpb.New(5 * time.Second)
	a.RetryPolicy = &routev3.RetryPolicy{RetryOn: "5xx", NumRetries: wrapperspb.UInt32(1),
		PerTryTimeout: durationpb.New(150 * time.Millisecond)}
	hcm := inlineHCM(oneVhost(fwdRoute("r", pfx("/"), a)))
	hcm.RequestTimeout = durationpb.New(5 * time.Second)
	hcm.StreamIdleTimeout = durationpb.New(5 * time.Second)
	p := startProxy(t, hcm, env, false)

	const conns, each = 4, 60
	var sent atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for ci := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := transport()
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			for i := range each {
				id := fmt.Sprintf("%d-%d", ci, i)
				var body []byte
				var rdr io.Reader
				kind := i % 6
				switch kind {
				case 1, 4, 5:
					body = bytes.Repeat([]byte(id+"."), 20)
				case 2:
					body = bytes.Repeat([]byte(id+"-large."), 40<<10/len(id+"-large."))
				case 3:
					body = bytes.Repeat([]byte(id+"-chunked."), 300)
				}
				method := "POST"
				if body == nil {
					method = "GET"
				} else {
					rdr = bytes.NewReader(body)
					if kind == 3 {
						rdr = io.MultiReader(bytes.NewReader(body[:100]), bytes.NewReader(body[100:]))
					}
				}
				req, err := http.NewRequest(method, p.url("/x"), rdr)
				if err != nil {
					errs <- err
					return
				}
				if kind == 3 {
					req.ContentLength = -1
				}
				req.Header.Set("x-id", id)
				switch kind {
				case 4:
					req.Header.Set("x-fail-first", "1")
				case 5:
					if i%12 == 5 {
						req.Header.Set("x-delay-ms", "400") // past the per-try timeout: both tries time out
					}
				}
				sent.Add(1)
				resp, err := c.Do(req)
				if err != nil {
					errs <- fmt.Errorf("request %s: %v", id, err)
					return
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					errs <- fmt.Errorf("request %s: reading the response: %v", id, err)
					return
				}
				if req.Header.Get("x-delay-ms") != "" {
					if resp.StatusCode != http.StatusGatewayTimeout {
						errs <- fmt.Errorf("request %s (slow): status %d, want 504", id, resp.StatusCode)
						return
					}
					continue
				}
				if resp.StatusCode != 200 || resp.Header.Get("x-id") != id || !bytes.Equal(got, body) {
					errs <- fmt.Errorf("request %s (kind %d): status %d, x-id %q, body %d bytes (want %d): %.60q",
						id, kind, resp.StatusCode, resp.Header.Get("x-id"), len(got), len(body), got)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if failed.Load() == 0 {
		t.Error("no first try was answered 503: the retry path was not exercised")
	}
	n := uint64(sent.Load())
	var text string
	waitFor(t, "the downstream stats to settle", func() bool {
		var b strings.Builder
		_ = p.st.WriteText(&b, "http.test.downstream_rq")
		text = b.String()
		return strings.Contains(text, "http.test.downstream_rq_active: 0\n")
	})
	for _, want := range []string{
		fmt.Sprintf("http.test.downstream_rq_total: %d\n", n),
		fmt.Sprintf("http.test.downstream_rq_completed: %d\n", n),
		fmt.Sprintf("http.test.downstream_rq_time_count: %d\n", n),
	} {
		if !strings.Contains(text, want) {
			t.Errorf("missing %q in\n%s", want, text)
		}
	}
}
