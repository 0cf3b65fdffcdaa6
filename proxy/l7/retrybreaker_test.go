package l7

import (
	"net/http"
	"strings"
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

// TestMaxRetriesBreakerStopsRetries sends a request that fails with 503 through a route that
// retries 5xx twice: against a cluster whose max_retries circuit breaker is 0 the upstream sees
// one attempt and the overflow is counted; against the default thresholds it sees three.
func TestMaxRetriesBreakerStopsRetries(t *testing.T) {
	var hits atomic.Int64
	addr := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}), false)
	cluster := func(name string, maxRetries *wrapperspb.UInt32Value, st *stats.Store) *upstream.Cluster {
		c := xdspb.MustFrom[*clusterv3.Cluster](testenv.StaticCluster(name, 2*time.Second, addr))
		if maxRetries != nil {
			c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{MaxRetries: maxRetries}}}
		}
		uc, err := upstream.Compile(c, upstream.Deps{Stats: st})
		if err != nil {
			t.Fatalf("upstream.Compile: %v", err)
		}
		t.Cleanup(uc.Close)
		return uc
	}
	for _, tc := range []struct {
		name       string
		maxRetries *wrapperspb.UInt32Value
		wantHits   int64
		overflow   string
	}{
		{"breaker-closed", wrapperspb.UInt32(0), 1, "1"},
		{"default-thresholds", nil, 3, "0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hits.Store(0)
			st := stats.NewStore()
			env := &testEnv{clusters: map[string]Upstream{"c": cluster("c", tc.maxRetries, st)}}
			a := toCluster("c")
			a.RetryPolicy = &routev3.RetryPolicy{RetryOn: "5xx", NumRetries: wrapperspb.UInt32(2),
				RetryBackOff: &routev3.RetryPolicy_RetryBackOff{BaseInterval: durationpb.New(time.Millisecond)}}
			px := startProxy(t, inlineHCM(oneVhost(fwdRoute("r", pfx("/"), a))), env, false)
			resp, err := h1Client().Get(px.url("/"))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("status %d, want 503", resp.StatusCode)
			}
			if got := hits.Load(); got != tc.wantHits {
				t.Fatalf("upstream saw %d attempts, want %d", got, tc.wantHits)
			}
			var text strings.Builder
			st.WriteText(&text, "upstream_rq_retry_overflow")
			if !strings.Contains(text.String(), "upstream_rq_retry_overflow: "+tc.overflow) {
				t.Fatalf("retry overflow stat: %q, want %s", text.String(), tc.overflow)
			}
		})
	}
}
