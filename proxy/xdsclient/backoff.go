package xdsclient

import (
	"math/rand/v2"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/strait-mesh/strait/internal/grpclite"
)

// Reconnect backoff. When straitd restarts, every proxy's stream ends at the same instant; if
// they all came back on the same schedule the restarted server would see them in lockstep. So
// the wait before each attempt is drawn with full jitter, uniformly from [0, delay), delay
// doubling from BackoffBase to BackoffMax and back to BackoffBase once a stream got a response:
// already the first retry spreads the proxies over BackoffBase, later ones over ever wider
// windows. A server that refuses a stream with a google.rpc.RetryInfo (straitd's stream
// admission: too many new streams) sets a floor: the proxy waits the hinted delay plus up to
// half of it again, so the refused proxies spread over the time the server needs for them.
//
// The connection below the streams (internal/grpclite) has no schedule of its own: it is
// opened when a stream starts and the previous connection is gone, so a proxy reconnects
// exactly on the jittered schedule above, however long straitd was away.

// Backoff is the reconnect schedule of one client: Next gives the wait before each attempt. The
// zero value is not usable; set Base and Max. It is not safe for concurrent use.
type Backoff struct {
	Base, Max time.Duration
	delay     time.Duration
}

// Next returns how long to wait before the next attempt, after a stream ended with err; got
// reports whether that stream received a response, which restarts the schedule from Base.
func (b *Backoff) Next(err error, got bool) time.Duration {
	if got || b.delay == 0 {
		b.delay = b.Base
	}
	wait := retryWait(b.delay, retryHint(err, b.Max), jitter)
	b.delay = min(b.delay*2, b.Max)
	return wait
}

// retryWait returns how long to wait before the next attempt: full jitter over delay, and at
// least hint plus up to half of it when the server gave a hint. randN(n) returns a uniform
// value in [0, n).
func retryWait(delay, hint time.Duration, randN func(time.Duration) time.Duration) time.Duration {
	wait := time.Duration(0)
	if delay > 0 {
		wait = randN(delay)
	}
	if hint > 0 {
		wait = max(wait, hint+randN(hint/2+1))
	}
	return wait
}

// jitter is retryWait's source of randomness.
func jitter(n time.Duration) time.Duration { return rand.N(n) }

// retryHint returns the retry delay a server attached to a stream's error as a
// google.rpc.RetryInfo detail (in grpc-status-details-bin), or 0. It is capped at limit so that
// a server cannot park a proxy for long. The details are untrusted: what does not decode is no
// hint.
func retryHint(err error, limit time.Duration) time.Duration {
	st, ok := grpclite.FromError(err) // also when err wraps the status
	if !ok || len(st.Details) == 0 {
		return 0
	}
	var details rpcstatus.Status
	if proto.Unmarshal(st.Details, &details) != nil {
		return 0
	}
	for _, d := range details.GetDetails() {
		var ri errdetails.RetryInfo
		if d.MessageIs(&ri) && d.UnmarshalTo(&ri) == nil {
			return min(max(ri.GetRetryDelay().AsDuration(), 0), limit)
		}
	}
	return 0
}
