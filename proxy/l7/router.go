package l7

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/strait-mesh/strait/internal/vocab"
	"github.com/strait-mesh/strait/proxy/balance"
	"github.com/strait-mesh/strait/proxy/httpmsg"
	"github.com/strait-mesh/strait/proxy/route"
	"github.com/strait-mesh/strait/proxy/upstream"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
)

var (
	errRouteTimeout  = errors.New("route timeout")
	errPerTryTimeout = errors.New("per-try timeout")
	errIdleTimeout   = errors.New("stream idle timeout")
	errMaxDuration   = errors.New("max stream duration reached")
)

// router is the last pipeline stage (envoy.filters.http.router): direct responses, redirects,
// and forwarding to the chosen cluster.
func (h *Handler) router(s *Stream) {
	if rt := s.Route; rt != nil && rt.Action == route.ActionForward {
		h.forward(s) // the common case
		return
	}
	h.routeLocally(s)
}

// routeLocally is router for a request without a route or with a direct response or redirect
// route. Out of router's common path.
//
//go:noinline
func (h *Handler) routeLocally(s *Stream) {
	rt := s.Route
	if rt == nil {
		h.st.noRoute.Inc()
		s.localReply(http.StatusNotFound, FlagNoRouteFound, "route_not_found", "", -1)
		return
	}
	switch rt.Action {
	case route.ActionDirect:
		h.st.rqDirect.Inc()
		hdr := s.w.Header()
		rt.ApplyResponseHeaders(hdr, s, &s.rinfo, nil)
		s.applyCommonResponseHeaders(hdr)
		if len(rt.Direct.Body) > 0 && hdr.Get("Content-Type") == "" {
			hdr.Set("Content-Type", "text/plain")
		}
		hdr.Set("Content-Length", strconv.Itoa(len(rt.Direct.Body)))
		s.Info.Details = "direct_response"
		s.writeHeader(rt.Direct.Status)
		if s.method != http.MethodHead && len(rt.Direct.Body) > 0 {
			n, _ := s.w.Write(rt.Direct.Body)
			s.Info.BytesSent += int64(n)
		}
		return
	case route.ActionRedirect:
		h.st.rqRedirect.Inc()
		hdr := s.w.Header()
		rt.ApplyResponseHeaders(hdr, s, &s.rinfo, nil)
		s.applyCommonResponseHeaders(hdr)
		hdr.Set("Location", rt.Redirect.Location(s))
		hdr.Set("Content-Length", "0")
		s.Info.Details = "direct_response"
		s.writeHeader(rt.Redirect.Code)
		return
	}
	h.forward(s)
}

// applyCommonResponseHeaders adds the connection manager's own response headers.
func (s *Stream) applyCommonResponseHeaders(hdr *httpmsg.Header) {
	h := s.h
	switch h.serverTransform {
	case hcmv3.HttpConnectionManager_OVERWRITE:
		hdr.SetName(nameServer, h.serverName)
	case hcmv3.HttpConnectionManager_APPEND_IF_ABSENT:
		if v, _ := hdr.Value("Server"); len(v) == 0 {
			hdr.Set("Server", h.serverName)
		}
	}
	// The request id goes back with always_set_request_id_in_response, and to a request
	// that asked for a trace with x-envoy-force-trace (which the edge removes from untrusted
	// requests), as Envoy does.
	setID := s.Info.RequestID != "" && (h.alwaysSetID || s.req.Header.Has("X-Envoy-Force-Trace"))
	if setID || s.Route != nil && s.Route.VirtualHost.IncludeAttemptCountInResponse || s.setCookie != "" || s.cors != nil || s.trace != nil {
		s.moreResponseHeaders(hdr, setID)
	}
}

// moreResponseHeaders adds the connection manager's response headers that a response has
// only with the features that ask for them: the request id (setID), the attempt count, a
// cookie of the hash policy, CORS and tracing. Out of applyCommonResponseHeaders' common path.
//
//go:noinline
func (s *Stream) moreResponseHeaders(hdr *httpmsg.Header, setID bool) {
	if setID {
		hdr.Set("X-Request-Id", s.Info.RequestID)
	}
	if s.Route != nil && s.Route.VirtualHost.IncludeAttemptCountInResponse && s.Info.Attempts > 0 {
		hdr.Set("X-Envoy-Attempt-Count", strconv.Itoa(s.Info.Attempts))
	}
	if s.setCookie != "" {
		hdr.Add("Set-Cookie", s.setCookie)
	}
	if s.cors != nil {
		s.applyCORS(hdr)
	}
	if s.trace != nil {
		s.traceResponseHeaders() // hdr is the stream's response header
	}
}

// upgradeType returns the lower-cased Upgrade protocol of an HTTP/1.1 upgrade request, or "".
func upgradeType(s *Stream) string {
	if !s.HTTP1() || !connectionHas(&s.req.Header, "upgrade") {
		return ""
	}
	typ := strings.ToLower(s.Header("Upgrade"))
	if typ == "h2c" {
		// Like Envoy, ignore an h2c upgrade offer and answer in HTTP/1.1; the hop-by-hop
		// removal drops Upgrade, and the Connection handling at entry HTTP2-Settings.
		return ""
	}
	return typ
}

func (h *Handler) upgradeAllowed(rt *route.Route, typ string) bool {
	if a, set := rt.UpgradeAllowed(typ); set {
		return a
	}
	return h.upgrades[typ]
}

// consumedRetryHeaders are the retry control headers the router consumes.
var consumedRetryHeaders = []string{"X-Envoy-Retry-On", "X-Envoy-Retry-Grpc-On", "X-Envoy-Max-Retries",
	"X-Envoy-Retriable-Status-Codes", "X-Envoy-Retriable-Header-Names", "X-Envoy-Hedge-On-Per-Try-Timeout"}

// hasEnvoyField reports whether hdr has a field in the x-envoy- namespace.
func hasEnvoyField(hdr *httpmsg.Header) bool {
	if !hdr.MayHaveEnvoyNames() {
		return false
	}
	for i := 0; i < hdr.Len(); i++ {
		if k, _ := hdr.Field(i); httpmsg.IsEnvoyName(k) {
			return true
		}
	}
	return false
}

// envoyHeaderMs reads an x-envoy-* millisecond header from an internal request. The header is
// removed whenever present, even empty or invalid, as Envoy's router does; only a decimal
// number below 2^32 from an internal request counts.
func envoyHeaderMs(s *Stream, name string) (time.Duration, bool) {
	hdr := &s.req.Header
	v, ok := hdr.Value(name)
	if !ok {
		return 0, false
	}
	ms, valid := parseMs(v)
	hdr.Del(name)
	if !valid || s.external {
		return 0, false
	}
	return time.Duration(ms) * time.Millisecond, true
}

// parseMs parses a decimal number of milliseconds below 2^32 (strconv.ParseUint(v, 10, 32)
// without the string copy).
func parseMs(v []byte) (uint64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	n := uint64(0)
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		// Leading zeros are accepted, as strconv.ParseUint and Envoy's SimpleAtoi do; the
		// value is refused once it passes 2^32-1 (n stays far from overflowing).
		if n = n*10 + uint64(c-'0'); n > 1<<32-1 {
			return 0, false
		}
	}
	return n, true
}

// effectiveRetry applies x-envoy-retry-on, x-envoy-retry-grpc-on, x-envoy-max-retries and
// x-envoy-retriable-status-codes from internal requests on top of the route's policy. The
// connection manager has already removed them from other requests (edge.go); the check here
// keeps the router safe on its own. x-envoy-max-retries is capped by headerRetryCap.
func effectiveRetry(s *Stream) *route.RetryPolicy {
	p := s.Route.Retry
	on := s.Header("X-Envoy-Retry-On")
	gon := s.Header("X-Envoy-Retry-Grpc-On")
	max := s.Header("X-Envoy-Max-Retries")
	codes := s.Header("X-Envoy-Retriable-Status-Codes")
	if on == "" && gon == "" && max == "" && codes == "" || s.external {
		return p
	}
	np := &route.RetryPolicy{NumRetries: 1, BackoffBase: 25 * time.Millisecond, BackoffMax: 250 * time.Millisecond}
	routeRetries := 0
	if p != nil {
		*np = *p
		routeRetries = p.NumRetries
	}
	for _, v := range []string{on, gon} {
		if v != "" {
			if extra, err := vocab.ParseRetryOn(v); err == nil {
				np.On |= extra
			}
		}
	}
	if n, err := strconv.Atoi(max); err == nil && n >= 0 {
		np.NumRetries = min(n, headerRetryCap(routeRetries))
	}
	if extra := retriableStatusCodes(codes); len(extra) > 0 {
		np.StatusCodes = append(append([]int(nil), np.StatusCodes...), extra...)
	}
	return np
}

type attemptResult struct {
	resp     *upstream.Response
	fail     route.FailureKind
	flag     ResponseFlags
	err      error
	cancel   context.CancelCauseFunc // the attempt's own context's (attemptContext); nil: none
	perTry   *time.Timer
	perTryRC *reqCancel // the attempt's reqCancel that perTry cancels
	retried  bool
	sent     *atomic.Bool // with trackSent: the request's headers went upstream
}

// forward sends the request to the chosen cluster with retries, then streams the response.
//
// Its code is laid out for the common request (see docs/performance.md, "A request's code
// footprint"): what most requests skip sits behind a call to a function of its own, so that the
// compiler predicts the branch to it unlikely and moves it out of the common path's lines, and
// the first attempt is made straight, the retry loop being retries' (most requests make one).
func (h *Handler) forward(s *Stream) {
	rt := s.Route
	hdr := &s.req.Header
	if s.Cluster == "" {
		h.noCluster(s)
		return
	}
	up := h.cluster(s) // ondemand.go: demanded first when unknown and on-demand is on
	if up == nil {
		h.noCluster(s)
		return
	}
	// The cluster's kinds, found once per request: a compiled cluster (*upstream.Cluster, every
	// cluster of the proxy) without an interface assertion, other Upstreams (tests' stand-ins)
	// through upstreamTraits.
	var mu messageUpstream
	if c, ok := up.(*upstream.Cluster); ok {
		s.services, mu = c.IstioServices(), c
	} else {
		mu = upstreamTraits(s, up)
	}
	cst := h.streamClusterStats(s)
	var prep forwardPrep
	if rt.StatPrefix != "" {
		prep.rst = h.routeStats(rt)
	}

	// Rare parts of the request's way are functions of their own (outlined, see
	// routerControls): forward's common path stays short, in instructions the processor
	// fetches per request. A plain route (route.Route.Plain) with a request that has no
	// router control headers and no upgrade needs none of forwardPrepare's features.
	if !rt.Plain() || !s.noEnvoyFields || hdr.Index("Upgrade", 0) >= 0 {
		if !h.forwardPrepare(s, &prep) {
			return
		}
	} else {
		// forwardPrepare's steps that apply, in its order.
		prep.timeout, prep.policy = rt.Timeout, rt.Retry
		prep.perTry, prep.maxRetries = retryLimits(s, prep.policy)
		dropHopByHop(hdr)
		if prep.timeout > 0 && !h.suppressEnvoyHdrs {
			setExpectedTimeout(hdr, prep.timeout, prep.perTry)
		}
	}
	s.retrying = prep.maxRetries > 0
	// reset-before-request needs to know whether a reset attempt's request went upstream.
	trackSent := prep.maxRetries > 0 && prep.policy.TracksRequestSent()

	// The stream's reqCancel is the request's context from here (cancel.go).
	rc := s.cancelScope()
	// One deferred call ends what the request started: with one defer the compiler open-codes
	// it (five conditional defers took the runtime's deferreturn path, which unwinds the stack:
	// ~2.5k instructions per request).
	var done forwardDone
	done.s, done.rc = s, rc
	defer done.run()
	// Envoy's route timeout runs from the end of the downstream request (its last body byte) to
	// the end of the response: the timer (done.rtimer) starts at once for bodiless requests and
	// from the body reader at EOF otherwise. It, the context values of a cluster that is not a
	// messageUpstream and the trace's headers are forwardExtras' (one call, out of the way).
	if mu == nil || s.trace != nil || prep.timeout > 0 {
		h.forwardExtras(s, rc, mu == nil, prep.timeout, &done)
	}
	// The request body exists before the timers that interrupt its prefetch wait.
	var body *replayBody
	if s.hasBody() {
		body = s.replayBody(s.body, prep.maxRetries > 0 || len(rt.Mirrors) > 0, done.rtimer)
		body.countGRPC = h.countsGRPCMessages(s) // telemetry.go
		s.reqBody = body
		done.body = body
		rc.attachBody(body) // the timers below interrupt its prefetch wait
		if _, native := s.downW.(*h1Down); !native {
			s.enableFullDuplex()
		}
	}
	maxDur := rt.MaxStreamDuration
	if maxDur == 0 {
		maxDur = h.maxStreamDuration
	}
	if maxDur > 0 {
		done.maxDur = rc.maxDurTimer(maxDur)
	}
	idleD := h.streamIdle
	if rt.IdleTimeout > 0 {
		idleD = rt.IdleTimeout
	}
	// One monotonic reading (sinceBase) per phase: the timers' start here, the prefetch's end,
	// the response's arrival.
	now := sinceBase()
	idle := s.idleTimerAt(idleD, rc.idleFunc(), now)
	done.idle = idle

	if body != nil {
		if t := body.prefetch(s.w, s.req.ContentLength, idle); t != 0 {
			now = t
		} else {
			now = sinceBase()
		}
	}
	var out *http.Request
	if mu != nil {
		// The cluster reads the request's head from the stream: no header map or URL, and no
		// context values for the original destination and the host report.
		// Report is always the Stream's: a head without one has the cluster look a report up
		// in the request's context on every request.
		// s.head is still zero (release clears a Stream's streamReq): only the fields this sets are stored.
		// out stays nil: each attempt's request is set from the stream (attemptRequest).
		// Watcher is the attempt's reqCancel (the h1.Watcher the HTTP/1.1 pools watch, offered
		// under upstream.WatcherKey): rc unless an attempt has a context of its own
		// (attemptContext sets it then, retries sets rc back).
		s.head.Header, s.head.Path, s.head.OriginalDst, s.head.Report, s.head.Watcher = &s.req.Header, s.path, s.originalDst(), &s.hostReport, rc
		s.headSet = true
	} else {
		out = s.upstreamRequest()
	}

	// Prepared once; now the first attempt, and retries only when the policy retries on its
	// outcome (retries: tryAgain decides after each attempt).
	start := now // the upstream exchange starts (UpstreamServiceTime)
	var res attemptResult
	s.Info.Attempts = 1
	if rt.VirtualHost.IncludeAttemptCount {
		s.setAttemptCount(out, 1)
	}
	if prep.rst != nil {
		prep.rst.total.Inc()
	}
	res.resp = h.attempt(rc, s, up, mu, out, body, prep.lb, prep.perTry, trackSent, &res)
	// The common case needs no decision: no retry to make, or a first attempt's response the
	// policy does not retry on (no retry was made, so nothing is exhausted either).
	if prep.maxRetries > 0 && (res.resp == nil || prep.policy.RetryOnResponse(res.resp.Status, res.resp.Header)) {
		h.retries(s, rc, up, mu, out, &prep, &res)
	}
	done.attempt = res.cancel // nil: the attempt had no context of its own
	// Shadow traffic does not depend on the primary's outcome.
	h.mirror(s, body)
	if res.resp == nil {
		h.failed(s, rc, &res, cst, prep.rst)
		return
	}
	if prep.rst != nil {
		prep.rst.code(res.resp.Status)
	}
	s.Info.UpstreamServiceTime = time.Duration(sinceBase() - start)
	if res.resp.Status == http.StatusSwitchingProtocols && prep.upgrade != "" {
		h.tunnel(s, res.resp)
		return
	}
	h.respond(s, rc, res.resp, cst, idle)
}

// originalDst returns the original destination of the request's connection (iptables
// interception), or the zero AddrPort.
func (s *Stream) originalDst() netip.AddrPort {
	if s.Info.Conn != nil && s.Info.Conn.OriginalDst.IsValid() {
		return s.Info.Conn.OriginalDst
	}
	return netip.AddrPort{}
}

// forwardDone is what forward stops when it returns, in this order: the last attempt's
// context, the stream idle timer, the max stream duration timer, the route timer, the request
// body, and the request's reqCancel. Unset parts are skipped.
type forwardDone struct {
	attempt context.CancelCauseFunc
	idle    *idleTimer
	maxDur  *time.Timer
	rtimer  *routeTimer
	body    *replayBody
	s       *Stream
	rc      *reqCancel
}

func (d *forwardDone) run() {
	if d.attempt != nil {
		d.attempt(nil)
	}
	// The timers call the Stream's reqCancel: one that may still fire keeps it from being
	// reused for the next request, and so does it keep the timer itself.
	idleOK := d.idle.stop()
	late := !idleOK
	if d.maxDur != nil && !stopTimer(d.maxDur) {
		late = true
	}
	rtOK := d.rtimer == nil || d.rtimer.stop()
	late = late || !rtOK
	// The body: a late timer may have found it through the reqCancel (expire), and a reader
	// that end could not stop may still touch the timers.
	bodyOK := true
	s := d.s
	if d.body != nil {
		// A timer that fires late may still interrupt it through the reqCancel (expire),
		// which endRequest below detaches: that only ends a prefetch wait, over by now.
		detached := d.body.end()
		if !detached {
			s.bodyHeld = true // an attempt's reader still reads the downstream body
		}
		bodyOK = detached && !late
	}
	if !bodyOK || !idleOK || !rtOK {
		s.dropTimers(bodyOK, idleOK, rtOK)
	}
	if d.rc != nil {
		s.endRequest(d.rc, late)
	}
}

// stopTimer is t.Stop out of line: forwardDone.run's max stream duration timer, which most
// requests do not have.
//
//go:noinline
func stopTimer(t *time.Timer) bool { return t.Stop() }

// dropTimers keeps the Stream from reusing for its next request what a late timer or reader
// may still touch (forwardDone.run): the body's objects unless bodyOK, the idle timer unless
// bodyOK and idleOK, the route timer unless bodyOK and rtOK. Out of run's common path.
//
//go:noinline
func (s *Stream) dropTimers(bodyOK, idleOK, rtOK bool) {
	if !bodyOK {
		s.rbody = nil
	}
	if !bodyOK || !idleOK {
		s.idleT = nil
	}
	if !bodyOK || !rtOK {
		s.rtimer = nil
	}
}

// tryAgain is the router's one retry decision, made after each attempt (retries; forward
// skips it for a first attempt's response the policy does not retry on): the outcome must be one
// policy retries (a response it retries on, or a failure other than a circuit-breaker overflow or
// no healthy upstream), a retry must be left and the request still wanted, its body must be
// replayable, and the cluster's max_retries circuit breaker (or retry budget) must admit one more
// retry, as in Envoy (upstream_rq_retry_overflow otherwise). When it says again, the caller holds
// a slot of the budget until the retry's attempt has returned (Upstream.ReleaseRetry). Otherwise
// exhausted tells that retries were made and the final outcome is still a failure or a response
// policy retries on (the URX flag).
// onResp is whether the policy retries on res's response (false without one), decided once by
// the caller (the response's fields are looked up): for the retry and for the exhausted
// retries (URX).
func tryAgain(ctx context.Context, policy *route.RetryPolicy, attempt, maxRetries int, res *attemptResult, onResp bool,
	body *replayBody, up Upstream) (again, exhausted bool) {
	retriable := false
	if attempt <= maxRetries && ctx.Err() == nil {
		if res.resp != nil {
			retriable = onResp
		} else {
			retriable = res.fail != route.FailOverflow && res.fail != route.FailNoHealthy && policy.RetryOnFailure(res.fail)
		}
	}
	// A body that already went upstream and was too large to keep cannot be sent again.
	if retriable && (body == nil || body.canReplay()) && up.AcquireRetry() {
		return true, false
	}
	return false, attempt > 1 && (res.resp == nil || onResp)
}

// attempt makes one upstream try into res, which is zero (forward's own, or cleared by
// retries): it returns the response, or nil with the classified failure in res; the caller
// sets res.resp (a store into its own frame, with no write barrier). mu is up as a
// messageUpstream (nil: up takes net/http's request only, roundTripHTTP). With trackSent it
// finds out whether the request's headers went upstream, so that a reset before that is told
// apart (route.FailResetBeforeRequest).
func (h *Handler) attempt(ctx *reqCancel, s *Stream, up Upstream, mu messageUpstream, out *http.Request,
	body *replayBody, lb balance.Context, perTry time.Duration, trackSent bool, res *attemptResult) *upstream.Response {
	actx := ctx
	if perTry > 0 || trackSent || !(body == nil && !s.retrying || body != nil && body.inMemory()) {
		actx = s.attemptContext(perTry, trackSent, res)
	}
	req := s.attemptRequest(out, actx)
	if body != nil {
		req.Body = body.attempt()
	}
	var resp *upstream.Response
	var err error
	if mu != nil && s.headSet {
		// The head's Watcher is actx, req's context (forward or attemptContext set it): given
		// in the head, the HTTP/1.1 pools need no context lookup.
		resp, err = mu.RoundTripMessage(req, &s.head, lb)
		s.outFree = err == nil && req == s.outReq && s.head.Released
	} else {
		resp, err = roundTripHTTP(up, req, lb)
	}
	if res.perTry != nil {
		res.stopPerTry()
	}
	if err != nil {
		h.attemptFailed(ctx, actx, s, err, res)
		return nil
	}
	return resp
}

// stopPerTry stops the attempt's per-try timer. Out of attempt's common path (no per-try
// timeout).
//
//go:noinline
func (res *attemptResult) stopPerTry() {
	if !res.perTry.Stop() {
		res.perTryRC.noReuse() // the timer fired: its cancel may come after a reuse
	}
}

// attemptRequest returns out with the context actx for one attempt: the Stream's kept request
// when the cluster released it after the last attempt (upstream.MessageHead.Released) and it
// carries actx already, else a copy (http.Request.WithContext), kept as the next candidate. A
// nil out is the request outboundRequest makes (the message path's). (actx is concrete: its
// comparison with the request's context needs no runtime call.)
func (s *Stream) attemptRequest(out *http.Request, actx *reqCancel) *http.Request {
	r := s.outReq
	reuse := r != nil && s.outFree && s.headSet && r.Context() == context.Context(actx)
	if reuse && out == nil {
		// Only the fields outboundRequest sets, and Body (attempt), are ever set on it.
		s.setOutbound(r)
		r.Body = nil
	} else {
		r = s.otherAttemptRequest(out, actx, reuse)
	}
	s.outFree = false
	return r
}

// otherAttemptRequest is attemptRequest but for a reused request of the message path (the
// common case): the kept request (reuse) set from out, or a new copy of out with actx, kept
// as the next candidate. Out of attemptRequest's common path.
//
//go:noinline
func (s *Stream) otherAttemptRequest(out *http.Request, actx *reqCancel, reuse bool) *http.Request {
	if reuse {
		r := s.outReq
		r.Method, r.Proto, r.ProtoMajor, r.ProtoMinor = out.Method, out.Proto, out.ProtoMajor, out.ProtoMinor
		r.ContentLength, r.Host, r.Trailer, r.Body = out.ContentLength, out.Host, out.Trailer, nil
		return r
	}
	if out == nil {
		out = s.outboundRequest()
	}
	r := out.WithContext(actx)
	s.outReq = r
	return r
}

// attemptContext gives an attempt a context of its own to stop it when it is abandoned, the
// Stream's attempt reqCancel (a child of the request's, cancel.go): an attempt with a per-try
// timeout, or whose body can block on the downstream; so does one that traces its request's
// headers (trackSent), which that context carries. Without, nothing is left to stop but its
// response body, which the caller closes. Out of attempt's common path (see routerControls).
//
//go:noinline
func (s *Stream) attemptContext(perTry time.Duration, trackSent bool, res *attemptResult) *reqCancel {
	arc := s.attemptScope()
	res.cancel = arc.cancelFunc()
	s.head.Watcher = arc // the HTTP/1.1 pools watch the attempt's own (see attempt)
	if perTry > 0 {
		res.perTry, res.perTryRC = time.AfterFunc(perTry, arc.perTryFunc()), arc
	}
	if trackSent {
		sent := new(atomic.Bool)
		res.sent = sent
		wrote := func() { sent.Store(true) }
		arc.setValues(httptrace.WithClientTrace(context.Background(),
			&httptrace.ClientTrace{WroteHeaders: wrote}))
		s.head.WroteHeaders = wrote // the HTTP/1.1 pools take it from the head
	}
	return arc
}

// mix64 is the splitmix64 finalizer.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// messageUpstream is an Upstream that takes the request's head as httpmsg and returns the
// response's the same way (upstream.Cluster): its HTTP/1.1 pools write the stream's own header
// fields and hand back their codec's, with no net/http map between.
type messageUpstream interface {
	RoundTripMessage(req *http.Request, head *upstream.MessageHead, lb balance.Context) (*upstream.Response, error)
}

// upstreamRequest builds the request that goes upstream from the stream's (after the router's
// edits): net/http's type, for the upstreams that take only that (mirrors, tests' stand-ins).
func (s *Stream) upstreamRequest() *http.Request {
	u, err := url.ParseRequestURI(s.path)
	if err != nil {
		u = &url.URL{Path: "/"} // not reached: SetPath and normalize validate the path
	}
	out := s.outboundRequest()
	out.URL, out.Header = u, httpHeader(&s.req.Header)
	if s.peer.IsValid() {
		out.RemoteAddr = s.peer.String()
	}
	return out
}

// outboundRequest is upstreamRequest without the URL, header map and RemoteAddr, which a
// messageUpstream reads from s.head (or has no use for).
func (s *Stream) outboundRequest() *http.Request {
	out := new(http.Request)
	s.setOutbound(out)
	return out
}

// setOutbound sets the fields of r that outboundRequest sets.
func (s *Stream) setOutbound(r *http.Request) {
	p := &outboundProtos[s.req.Proto&3]
	r.Method, r.Proto, r.ProtoMajor, r.ProtoMinor = s.method, p.proto, p.major, p.minor
	r.ContentLength, r.Host, r.Trailer = s.req.ContentLength, s.authority, s.reqTrailer
}

// outboundProtos are net/http's Proto, ProtoMajor and ProtoMinor of a request, by
// httpmsg.Proto (a table: no branches in setOutbound's lines); HTTP/1.1 for any other value.
var outboundProtos = [4]struct {
	proto        string
	major, minor int
}{
	httpmsg.HTTP11: {"HTTP/1.1", 1, 1},
	httpmsg.HTTP10: {"HTTP/1.0", 1, 0},
	httpmsg.HTTP2:  {"HTTP/2.0", 2, 0},
	3:              {"HTTP/1.1", 1, 1},
}
