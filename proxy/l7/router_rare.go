package l7

import (
	"context"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/strait-mesh/strait/proxy/httpmsg"
	"github.com/strait-mesh/strait/proxy/route"
	"github.com/strait-mesh/strait/proxy/upstream"
)

// The functions below are forward's rare parts, kept out of its common path (//go:noinline:
// the compiler would otherwise put small ones back inline), so that the instructions a plain
// request runs through sit in fewer cache lines.

// routerControls applies an internal request's x-envoy-* controls of the route timeout
// (timeout-alt-response, upstream-rq-timeout-ms) and retries (effectiveRetry), consuming them.
//
//go:noinline
func routerControls(s *Stream, timeout time.Duration) (time.Duration, *route.RetryPolicy) {
	if s.req.Header.Del("X-Envoy-Upstream-Rq-Timeout-Alt-Response") > 0 {
		s.timeoutAlt = !s.external // answer a route timeout with 204 instead of 504
	}
	if d, ok := envoyHeaderMs(s, "X-Envoy-Upstream-Rq-Timeout-Ms"); ok {
		timeout = d
	}
	return timeout, effectiveRetry(s)
}

// perTryControl applies x-envoy-upstream-rq-per-try-timeout-ms and consumes the retry
// headers so that they do not travel upstream, as Envoy's router does.
//
//go:noinline
func perTryControl(s *Stream, perTry time.Duration) time.Duration {
	if d, ok := envoyHeaderMs(s, "X-Envoy-Upstream-Rq-Per-Try-Timeout-Ms"); ok {
		perTry = d
	}
	for _, k := range consumedRetryHeaders {
		s.req.Header.Del(k)
	}
	return perTry
}

// grpcTimeout applies a gRPC request's grpc-timeout, bounded by the route's max_grpc_timeout.
//
//go:noinline
func grpcTimeout(s *Stream, rt *route.Route, timeout time.Duration) time.Duration {
	if d, ok := route.ParseGRPCTimeout(s.Header("Grpc-Timeout")); ok {
		if rt.GrpcTimeoutHeaderMax > 0 && d > rt.GrpcTimeoutHeaderMax {
			d = rt.GrpcTimeoutHeaderMax
		}
		timeout = d
	}
	return timeout
}

// rewritePath sets the route's rewritten path p, keeping the original in
// x-envoy-original-path; false: p is invalid and the request was answered 400.
//
//go:noinline
func (h *Handler) rewritePath(s *Stream, p string) bool {
	orig := s.path
	if err := s.SetPath(p); err != nil {
		s.localReply(http.StatusBadRequest, 0, "invalid_rewritten_path", "", -1)
		return false
	}
	if !h.suppressEnvoyHdrs {
		s.req.Header.Set("X-Envoy-Original-Path", orig)
	}
	return true
}

// setExpectedTimeout sets x-envoy-expected-rq-timeout-ms: the per-try timeout when it is
// shorter than the route's.
//
//go:noinline
func setExpectedTimeout(hdr *httpmsg.Header, timeout, perTry time.Duration) {
	exp := timeout
	if perTry > 0 && perTry < exp {
		exp = perTry
	}
	var nb [20]byte
	hdr.SetNameBytes(nameExpectedRqTimeout, strconv.AppendInt(nb[:0], exp.Milliseconds(), 10))
}

// upstreamValues returns the context values a cluster that reads the request from its
// context (not a messageUpstream) finds the original destination and the host report by: rc
// answers them itself (setValues), so that the request's context stays rc (a context derived
// from rc, as a dial's, registers with rc instead of a goroutine watching a value context
// above it).
//
//go:noinline
func upstreamValues(origDst netip.AddrPort, report *upstream.HostReport) context.Context {
	var vals context.Context
	if origDst.IsValid() {
		vals = upstream.WithOriginalDst(context.Background(), origDst)
	}
	if report != nil {
		if vals == nil {
			vals = context.Background()
		}
		vals = upstream.WithHostReport(vals, report)
	}
	return vals
}

// setAttemptCount sets x-envoy-attempt-count on the attempt's request.
//
//go:noinline
func (s *Stream) setAttemptCount(out *http.Request, attempt int) {
	if s.headSet {
		s.req.Header.Set("X-Envoy-Attempt-Count", strconv.Itoa(attempt))
	} else {
		out.Header.Set("X-Envoy-Attempt-Count", strconv.Itoa(attempt))
	}
}

// beforeRetry counts a retry, abandons the attempt that is retried and waits the policy's
// back-off (or until ctx ends).
//
//go:noinline
func beforeRetry(ctx context.Context, policy *route.RetryPolicy, attempt int, res attemptResult, cst *clusterStats, rst *routeStats) {
	cst.retry.Inc()
	if rst != nil {
		rst.retry.Inc()
	}
	// Cancel before closing: closing an HTTP/2 response body waits for the request body
	// writer, which may be blocked on a downstream body that is still open.
	if res.cancel != nil {
		res.cancel(errStaleAttempt)
	}
	if res.resp != nil {
		res.resp.Body.Close()
	}
	if d := policy.Backoff(attempt); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
}

// failed answers a request whose attempts got no response (failReply) and counts it in the
// route's statistics.
//
//go:noinline
func (h *Handler) failed(s *Stream, ctx context.Context, res attemptResult, cst *clusterStats, rst *routeStats) {
	h.failReply(s, ctx, res, cst)
	if rst != nil {
		if s.Info.Flags&FlagUpstreamRequestTimeout != 0 {
			rst.timeout.Inc()
		}
		rst.code(s.Info.Status)
	}
}
