package l7

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/strait-mesh/strait/proxy/balance"
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

// forwardExtras is forward's setup of what most requests do without, in its order: for a
// cluster that is not a messageUpstream (values), rc's context values (upstreamValues: the
// original destination, and the host report when the handler reports hosts or the request is
// traced); the trace's headers; and for a route timeout (timeout > 0) the stream's route timer,
// which cancels rc (Stream.routeTimer), set as done's: started at once for a request without a
// body (the request is complete), else by the body's reader at its end (replayBody's onEOF).
//
//go:noinline
func (h *Handler) forwardExtras(s *Stream, rc *reqCancel, values bool, timeout time.Duration, done *forwardDone) {
	if values {
		var report *upstream.HostReport
		if h.hostReport || s.trace != nil {
			report = &s.hostReport
		}
		rc.setValues(upstreamValues(s.originalDst(), report))
	}
	if s.trace != nil {
		s.injectTrace()
	}
	if timeout > 0 {
		done.rtimer = s.routeTimer(timeout, rc.routeFunc())
		if !s.hasBody() {
			done.rtimer.start()
		}
	}
}

// retries makes the request's retries after its first attempt, whose outcome res holds (a
// failure, or a response the policy retries on: forward calls it for nothing else) and
// which forward made with the same up, mu, out and prep: after each attempt tryAgain decides,
// and a retry abandons the last attempt, waits the back-off (beforeRetry) and makes the next
// into res. On return res holds the last attempt's outcome, and s.Info the attempts made, the
// retry limit's flag (URX) and the retry's success statistic. What forward finds once per
// request (the body, trackSent, the cluster's statistics) it finds again: few requests get
// here.
//
//go:noinline
func (h *Handler) retries(s *Stream, rc *reqCancel, up Upstream, mu messageUpstream, out *http.Request,
	prep *forwardPrep, res *attemptResult) {
	policy, lb, body := prep.policy, prep.lb, s.reqBody
	trackSent := prep.maxRetries > 0 && policy.TracksRequestSent()
	cst, rst := h.streamClusterStats(s), prep.rst
	retrySlot := false // a retry budget slot, held by the attempt being made
	// The first attempt's response, if any, is one the policy retries on: forward found so.
	onResp := res.resp != nil
	for attempt := 1; ; {
		if retrySlot {
			up.ReleaseRetry()
		}
		var exhausted bool
		if retrySlot, exhausted = tryAgain(rc, policy, attempt, prep.maxRetries, res, onResp, body, up); !retrySlot {
			if exhausted {
				s.Info.Flags |= FlagUpstreamRetryLimitExceed
			} else if attempt > 1 {
				cst.retryOK.Inc()
			}
			return
		}
		beforeRetry(rc, policy, attempt, res, cst, rst)
		attempt++
		s.Info.Attempts = attempt
		if s.Route.VirtualHost.IncludeAttemptCount {
			s.setAttemptCount(out, attempt)
		}
		alb := lb
		if lb.HasHash && policy.AvoidPreviousHosts {
			// previous_hosts: move the retry to another ring position (see route.RetryPolicy).
			alb.Hash = mix64(lb.Hash + uint64(attempt))
		}
		if rst != nil {
			rst.total.Inc()
		}
		*res = attemptResult{}
		s.head.Watcher = rc // the last attempt's own context, if it had one, is over
		res.resp = h.attempt(rc, s, up, mu, out, body, alb, prep.perTry, trackSent, res)
		onResp = res.resp != nil && policy.RetryOnResponse(res.resp.Status, res.resp.Header)
	}
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
func beforeRetry(ctx context.Context, policy *route.RetryPolicy, attempt int, res *attemptResult, cst *clusterStats, rst *routeStats) {
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

// noCluster answers a request whose route's cluster is not known (cluster_not_found). Out of
// forward's common path.
//
//go:noinline
func (h *Handler) noCluster(s *Stream) {
	h.st.noCluster.Inc()
	s.localReply(s.Route.ClusterNotFoundStatus, FlagNoClusterFound, "cluster_not_found", "", -1)
}

// failed answers a request whose attempts got no response (failReply) and counts it in the
// route's statistics.
//
//go:noinline
func (h *Handler) failed(s *Stream, ctx context.Context, res *attemptResult, cst *clusterStats, rst *routeStats) {
	h.failReply(s, ctx, *res, cst)
	if rst != nil {
		if s.Info.Flags&FlagUpstreamRequestTimeout != 0 {
			rst.timeout.Inc()
		}
		rst.code(s.Info.Status)
	}
}

// forwardPrep is what forward prepares before it makes the request's attempts: the upgrade
// (lower-cased Upgrade type, "" for none), the route timeout, retry policy and per-try timeout
// with the request's controls applied, the number of retries the request may have, and the
// load balancer's hash; and the route's statistics (nil without a stat_prefix).
type forwardPrep struct {
	rst        *routeStats
	upgrade    string
	timeout    time.Duration
	policy     *route.RetryPolicy
	perTry     time.Duration
	maxRetries int
	lb         balance.Context
}

// forwardPrepare prepares the request for its attempts (forwardPrep) with every feature a route
// or request may ask for: an upgrade, the router's x-envoy-* control headers, grpc-timeout, a
// path or host rewrite, the header operations and a hash policy; forward does the same for a
// plain request itself. It reports false when it answered the request.
//
//go:noinline
func (h *Handler) forwardPrepare(s *Stream, p *forwardPrep) bool {
	rt := s.Route
	hdr := &s.req.Header
	var upgrade, upgradeValue string
	if hdr.Index("Upgrade", 0) >= 0 {
		upgrade = upgradeType(s) // "" without an Upgrade field
	}
	if upgrade != "" {
		if !h.upgradeAllowed(rt, upgrade) {
			s.localReply(http.StatusForbidden, 0, "upgrade_failed", "", -1)
			return false
		}
		upgradeValue = s.Header("Upgrade")
	}

	timeout, policy := rt.Timeout, rt.Retry
	// The x-envoy-* control headers are looked up (and consumed) only when the request has a
	// field of that namespace at all; most have none.
	ctl := !s.noEnvoyFields && hasEnvoyField(hdr)
	if ctl {
		timeout, policy = routerControls(s, timeout)
	}
	if rt.HasGrpcTimeoutHeaderMax && s.grpc {
		timeout = grpcTimeout(s, rt, timeout)
	}
	perTry, maxRetries := retryLimits(s, policy)
	if ctl {
		perTry = perTryControl(s, perTry)
	}
	dropHopByHop(hdr)
	if upgrade != "" {
		hdr.Set("Connection", "Upgrade")
		hdr.Set("Upgrade", upgradeValue)
	}
	if rt.RewritesPath() {
		if p, changed := rt.RewritePath(s.path); changed && !h.rewritePath(s, p) {
			return false
		}
	}
	switch {
	case s.Target != nil && s.Target.HostRewrite != "":
		s.authority = s.Target.HostRewrite
	case rt.HostRewrite != "":
		s.authority = rt.HostRewrite
	}
	if !rt.NoRequestOps(s.Target) {
		rt.ApplyRequestHeaders(hdr, s, &s.rinfo, s.Target)
	}
	if timeout > 0 && !h.suppressEnvoyHdrs {
		setExpectedTimeout(hdr, timeout, perTry)
	}
	if rt.HasHashPolicy() {
		p.lb.Hash, p.lb.HasHash, s.setCookie = rt.Hash(s, &s.rinfo)
	}
	p.upgrade, p.timeout, p.policy, p.perTry, p.maxRetries = upgrade, timeout, policy, perTry, maxRetries
	return true
}

// retryLimits returns policy's per-try timeout and the retries s may have (none when the
// policy is nil or the request cannot be retried).
func retryLimits(s *Stream, policy *route.RetryPolicy) (perTry time.Duration, maxRetries int) {
	if policy == nil {
		return 0, 0
	}
	if policy.RequestRetriable(s) {
		maxRetries = policy.NumRetries
	}
	return policy.PerTryTimeout, maxRetries
}

// dropHopByHop readies the request's header for the upstream. The outbound request reuses the
// downstream request's header map, which the proxy owns: its hop-by-hop fields go (those its
// Connection field nominated went as it arrived, sanitizeConnection), and a 100-continue
// expectation: the downstream server already answered it (when the body was first read), as
// Envoy does without proxy_100_continue, and the upstream must not wait for a second one.
func dropHopByHop(hdr *httpmsg.Header) {
	removeRequestHopByHop(hdr)
	if v, _ := hdr.Value("Expect"); httpmsg.EqualFold(v, "100-continue") {
		hdr.Del("Expect")
	}
}

// roundTripHTTP runs an attempt on an Upstream that takes net/http's request (not a
// messageUpstream), its response converted once here (upstream.FromHTTP).
//
//go:noinline
func roundTripHTTP(up Upstream, req *http.Request, lb balance.Context) (*upstream.Response, error) {
	hr, err := up.RoundTrip(req, lb)
	if err != nil {
		return nil, err
	}
	return upstream.FromHTTP(hr), nil
}

// upstreamTraits learns what forward needs of an Upstream that is not an *upstream.Cluster: its
// services (istioServicer), set as s's, and whether it takes the request's head as httpmsg
// (returned).
//
//go:noinline
func upstreamTraits(s *Stream, up Upstream) messageUpstream {
	if sv, ok := up.(istioServicer); ok {
		s.services = sv.IstioServices()
	}
	mu, _ := up.(messageUpstream)
	return mu
}

// attemptFailed classifies an attempt's failure err into res (route.FailureKind and response
// flag); actx is the attempt's context, ctx the request's.
//
//go:noinline
func (h *Handler) attemptFailed(ctx, actx context.Context, s *Stream, err error, res *attemptResult) {
	res.err = err
	cause := causeOf(actx)
	var ue *upstream.Error
	switch {
	case errors.Is(cause, errPerTryTimeout) && ctx.Err() == nil:
		res.fail, res.flag = route.FailPerTryTimeout, FlagUpstreamRequestTimeout
		h.clusterStats(s.Cluster).perTry.Inc()
	case errors.As(err, &ue):
		switch ue.Flag {
		case upstream.FlagConnectFailure:
			res.fail, res.flag = route.FailConnect, FlagUpstreamConnectFailure
		case upstream.FlagNoHealthyUpstream:
			res.fail, res.flag = route.FailNoHealthy, FlagNoHealthyUpstream
		case upstream.FlagOverflow:
			res.fail, res.flag = route.FailOverflow, FlagUpstreamOverflow
		case upstream.FlagUpstreamReset:
			res.fail, res.flag = route.FailReset, FlagUpstreamRemoteReset
		default:
			res.fail, res.flag = route.FailReset, FlagUpstreamConnTerminated
		}
		if strings.Contains(err.Error(), "REFUSED_STREAM") {
			res.fail = route.FailRefusedStream
		}
	default:
		res.fail, res.flag = route.FailReset, FlagUpstreamConnTerminated
		if strings.Contains(err.Error(), "REFUSED_STREAM") {
			res.fail = route.FailRefusedStream
		}
	}
	if res.fail == route.FailReset && res.sent != nil && !res.sent.Load() {
		res.fail = route.FailResetBeforeRequest
	}
}
