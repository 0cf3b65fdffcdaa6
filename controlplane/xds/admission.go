package xds

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Stream admission: what keeps a reconnect storm (straitd restarted under 1,000 connected
// proxies) from turning into 1,000 initial generations and full-configuration sends at once.
//
// New ADS streams, SotW and Delta alike, take a token of one bucket (FlowLimits.StreamRate per
// second, FlowLimits.StreamBurst deep) before the server reads their first request. A stream
// whose token is due within FlowLimits.StreamWait waits for it, in arrival order: waiting costs
// the server one goroutine and an open stream, and the proxy is served as soon as its turn
// comes, with no reconnect. A stream whose token is further out than that is refused with
// UNAVAILABLE (retriable in gRPC's terms) and a google.rpc.RetryInfo detail saying when its
// token would have been due; strait-proxy waits at least that long, plus jitter, before it
// reconnects (proxy/xdsclient). Refusing past a bound keeps the queue of waiting streams short
// (rate × wait), so a storm larger than that costs neither unbounded goroutines nor streams that
// sit past a client's own deadline; the hint spreads the refused proxies over the time the
// bucket needs for them instead of letting them return in lockstep.
//
// Streams are counted in strait_xds_stream_admissions_total{result}: "admitted" at once,
// "deferred" after waiting for a token, "refused".

// Defaults for FlowLimits' admission fields. The rate bounds the server's memory while a fleet
// resyncs after a restart (every admitted stream's proxy is generated at once): at 1,000 proxies
// (bench/xdsload -restart, docs/performance.md) 100/s resynced in 14 s with a 2.6 GiB peak, 50/s
// in 23 s with 1.1 GiB, 25/s (istiod's default) in 44 s with 0.8 GiB.
const (
	DefaultStreamRate  = 50.0
	DefaultStreamBurst = 50
	DefaultStreamWait  = 2 * time.Second
)

// admission results, the values of strait_xds_stream_admissions_total's result label.
const (
	admitted = "admitted"
	deferred = "deferred"
	refused  = "refused"
)

// admission is the token bucket of new streams. A nil *admission admits everything.
type admission struct {
	lim     *rate.Limiter
	wait    time.Duration
	metrics *metrics
}

// newAdmission returns the admission control for l, or nil when l.StreamRate is negative
// (unlimited).
func newAdmission(l FlowLimits, m *metrics) *admission {
	if l.StreamRate < 0 {
		return nil
	}
	return &admission{lim: rate.NewLimiter(rate.Limit(l.StreamRate), l.StreamBurst), wait: l.StreamWait, metrics: m}
}

// admit takes a token for a new stream, waiting for it when it is due within the admission wait.
// It returns nil when the stream may proceed, a gRPC status error when it must end: UNAVAILABLE
// with a RetryInfo when the token is too far out, or the context's error when the stream ended
// while waiting.
func (a *admission) admit(ctx context.Context) error {
	if a == nil {
		return nil
	}
	now := time.Now()
	r := a.lim.ReserveN(now, 1)
	if !r.OK() { // a burst of 0: nothing is ever admitted
		a.metrics.admissions.WithLabelValues(refused).Inc()
		return status.Error(codes.Unavailable, "xds stream admission: the stream burst is 0")
	}
	d := r.DelayFrom(now)
	if d == 0 {
		a.metrics.admissions.WithLabelValues(admitted).Inc()
		return nil
	}
	if d > a.wait {
		r.CancelAt(now)
		a.metrics.admissions.WithLabelValues(refused).Inc()
		return retryLater(d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		a.metrics.admissions.WithLabelValues(deferred).Inc()
		return nil
	case <-ctx.Done():
		r.Cancel()
		return status.FromContextError(ctx.Err()).Err()
	}
}

// retryLater is the UNAVAILABLE status of a refused stream, with the delay after which a token
// would be free as a google.rpc.RetryInfo.
func retryLater(d time.Duration) error {
	d = d.Round(time.Millisecond)
	st := status.New(codes.Unavailable, fmt.Sprintf(
		"xds stream admission: too many new streams, retry in %s or later", d))
	if withInfo, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(d)}); err == nil {
		st = withInfo
	}
	return st.Err()
}
