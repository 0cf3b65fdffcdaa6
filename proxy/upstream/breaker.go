package upstream

import (
	"fmt"
	"sync/atomic"

	"github.com/strait-mesh/strait/proxy/stats"
	"github.com/strait-mesh/strait/proxy/xdsfield"
	clusterv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/cluster/v3"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
)

// Envoy's default circuit-breaker thresholds.
const (
	defaultMaxConnections     = 1024
	defaultMaxPendingRequests = 1024
	defaultMaxRequests        = 1024
	defaultMaxRetries         = 3
)

// limit is one circuit-breaker resource: a counter with a maximum, and its open/remaining gauges.
type limit struct {
	max       int64
	cur       atomic.Int64
	open      *stats.Gauge
	remaining *stats.Gauge // nil unless track_remaining
}

// acquire takes one unit, or reports false (the breaker is open) and leaves the count unchanged.
func (l *limit) acquire() bool {
	n := l.cur.Add(1)
	if n > l.max {
		l.cur.Add(-1)
		l.open.Set(1)
		return false
	}
	if n == l.max {
		l.open.Set(1)
	}
	if l.remaining != nil {
		l.remaining.Set(l.max - n)
	}
	return true
}

func (l *limit) release() {
	n := l.cur.Add(-1)
	if n < l.max && l.open.Value() != 0 {
		// A store of the value already there is skipped: on amd64 it is an XCHG, and this
		// runs at every request's end while the breaker is almost always closed.
		l.open.Set(0)
	}
	if l.remaining != nil {
		l.remaining.Set(l.max - n)
	}
}

// breaker holds the cluster's circuit-breaker thresholds for the DEFAULT routing priority.
// Requests that exceed them fail fast with UO, as in Envoy.
type breaker struct {
	cx, pending, rq, retries limit
	// Retry budget (replaces max_retries when set): active retries may be up to budgetPct of
	// the active plus pending requests, and at least minRetries.
	budget     bool
	budgetPct  float64
	minRetries int64
}

// acquireRetry takes a retry slot under max_retries or the retry budget.
func (b *breaker) acquireRetry() bool {
	if !b.budget {
		return b.retries.acquire()
	}
	allowed := max(b.minRetries, int64(b.budgetPct/100*float64(b.rq.cur.Load()+b.pending.cur.Load())))
	n := b.retries.cur.Add(1)
	if n > allowed {
		b.retries.cur.Add(-1)
		b.retries.open.Set(1)
		return false
	}
	if b.retries.remaining != nil {
		b.retries.remaining.Set(allowed - n)
	}
	return true
}

func compileBreaker(cb *clusterv3.CircuitBreakers, st *clusterStats) (*breaker, error) {
	b := &breaker{
		cx:      limit{max: defaultMaxConnections, open: st.cbCxOpen},
		pending: limit{max: defaultMaxPendingRequests, open: st.cbPendingOpen},
		rq:      limit{max: defaultMaxRequests, open: st.cbRqOpen},
		retries: limit{max: defaultMaxRetries, open: st.cbRetryOpen},
	}
	if cb == nil {
		return b, nil
	}
	if err := xdsfield.Check(cb, "circuit_breakers", "thresholds"); err != nil {
		return nil, err
	}
	for i, t := range cb.GetThresholds() {
		path := fmt.Sprintf("circuit_breakers.thresholds[%d]", i)
		if err := xdsfield.Check(t, path, "priority", "max_connections", "max_pending_requests",
			"max_requests", "max_retries", "track_remaining", "retry_budget"); err != nil {
			return nil, err
		}
		if t.GetPriority() != corev3.RoutingPriority_DEFAULT {
			// Routes do not carry a priority here, so HIGH thresholds would never apply.
			return nil, fmt.Errorf("%s.priority %v is not supported (only DEFAULT)", path, t.GetPriority())
		}
		setUint32(&b.cx.max, t.GetMaxConnections())
		setUint32(&b.pending.max, t.GetMaxPendingRequests())
		setUint32(&b.rq.max, t.GetMaxRequests())
		setUint32(&b.retries.max, t.GetMaxRetries())
		if rb := t.GetRetryBudget(); rb != nil {
			if err := xdsfield.Check(rb, path+".retry_budget", "budget_percent", "min_retry_concurrency"); err != nil {
				return nil, err
			}
			// Envoy's defaults: 20% and 3.
			b.budget, b.budgetPct, b.minRetries = true, 20, 3
			if v := rb.GetBudgetPercent(); v != nil {
				b.budgetPct = v.GetValue()
			}
			setUint32(&b.minRetries, rb.GetMinRetryConcurrency())
		}
		if t.GetTrackRemaining() {
			b.cx.remaining, b.pending.remaining = st.cbRemainingCx, st.cbRemainingPending
			b.rq.remaining, b.retries.remaining = st.cbRemainingRq, st.cbRemainingRetries
		}
	}
	for _, l := range []*limit{&b.cx, &b.pending, &b.rq, &b.retries} {
		if l.remaining != nil {
			l.remaining.Set(l.max)
		}
	}
	return b, nil
}
