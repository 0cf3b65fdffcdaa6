package l7

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/strait-mesh/strait/proxy/http1"
	"github.com/strait-mesh/strait/proxy/httpmsg"
	"github.com/strait-mesh/strait/proxy/route"
	"github.com/strait-mesh/strait/proxy/upstream"
)

// The upstream's answer, or its absence, on its way downstream: the router's response side.

// failReply answers a request that got no upstream response.
func (h *Handler) failReply(s *Stream, ctx context.Context, res attemptResult, cst *clusterStats) {
	if v, ok := http1.IsViolation(s.reqBody.downstreamErr()); ok {
		// The request body broke HTTP/1.1 framing after its head went upstream (a client that
		// sent the bad chunk later): Envoy's codec error, not an upstream failure.
		s.localReply(v.Status, FlagDownstreamProtocolError, v.Details, "", -1)
		return
	}
	switch cause := causeOf(ctx); {
	case errors.Is(cause, errRouteTimeout):
		h.st.rqTimeout.Inc()
		if s.timeoutAlt {
			s.localReply(http.StatusNoContent, FlagUpstreamRequestTimeout, "upstream_response_timeout", "", -1)
			return
		}
		s.localReply(http.StatusGatewayTimeout, FlagUpstreamRequestTimeout, "upstream_response_timeout", "upstream request timeout", -1)
		return
	case errors.Is(cause, errIdleTimeout):
		s.localReply(http.StatusRequestTimeout, FlagStreamIdleTimeout, "stream_idle_timeout", "stream timeout", -1)
		return
	case errors.Is(cause, errMaxDuration):
		s.localReply(http.StatusRequestTimeout, FlagMaxDurationReached, "max_duration_timeout", "downstream duration timeout", -1)
		return
	case s.ctx.Err() != nil:
		s.Info.Flags |= FlagDownstreamConnTerminated
		s.Info.Details = "downstream_remote_disconnect"
		return
	}
	switch res.fail {
	case route.FailPerTryTimeout:
		h.st.rqTimeout.Inc()
		s.localReply(http.StatusGatewayTimeout, res.flag, "upstream_per_try_timeout", "upstream request timeout", -1)
	case route.FailNoHealthy:
		s.localReply(http.StatusServiceUnavailable, res.flag, "no_healthy_upstream", "no healthy upstream", -1)
	case route.FailOverflow:
		s.localReply(http.StatusServiceUnavailable, res.flag, "upstream_reset_before_response_started{overflow}",
			"upstream connect error or disconnect/reset before headers. reset reason: overflow", -1)
	case route.FailConnect:
		s.Info.TransportFailureReason = transportFailure(res.err)
		s.localReply(http.StatusServiceUnavailable, res.flag, "upstream_reset_before_response_started{connection_failure}",
			"upstream connect error or disconnect/reset before headers. reset reason: connection failure", -1)
	default:
		s.localReply(http.StatusServiceUnavailable, res.flag, "upstream_reset_before_response_started{connection_termination}",
			"upstream connect error or disconnect/reset before headers. reset reason: connection termination", -1)
	}
}

// respond streams the upstream response downstream: headers, body (flushed as it arrives when
// the length is unknown, as for gRPC and server-sent events) and trailers. rc is the request's
// reqCancel, its context.
func (h *Handler) respond(s *Stream, rc *reqCancel, resp *upstream.Response, cst *clusterStats, idle *idleTimer) {
	// A body of known length that fits is copied through the Stream's own buffer, any other
	// through a pooled one (copyBufPool).
	buf := s.copyBuf[:]
	var bp *[]byte
	if uint64(resp.ContentLength) > copyBufSmall { // unknown (-1) too
		bp = pooledCopyBuf()
		buf = *bp
	}
	cst.code(resp.Status)
	s.Info.Details = "via_upstream"
	hdr := s.w.Header()
	copyResponseHeader(hdr, resp.Header)
	if !s.Route.NoResponseOps(s.Target) {
		s.Route.ApplyResponseHeaders(hdr, s, &s.rinfo, s.Target)
	}
	s.applyCommonResponseHeaders(hdr)
	if !h.suppressEnvoyHdrs {
		hdr.SetName(nameUpstreamSvcTime, strconv.FormatInt(s.Info.UpstreamServiceTime.Milliseconds(), 10))
	}
	if gs, ok := resp.Header.Value("Grpc-Status"); ok {
		s.setGRPCStatus(gs)
	}
	if cl, _ := resp.Header.Value("Content-Length"); resp.ContentLength >= 0 && len(resp.TrailerNames) == 0 && len(cl) == 0 &&
		s.method != http.MethodHead && resp.Status >= 200 && resp.Status != 204 && resp.Status != 304 {
		setContentLength(hdr, resp.ContentLength)
	}
	if len(resp.TrailerNames) > 0 {
		announceTrailers(hdr, resp.TrailerNames)
	}
	s.writeHeader(resp.Status)

	flush := resp.ContentLength < 0 || s.grpc
	if flush && s.Info.GRPCStatus == "" {
		// Send headers at once (a stream may stay quiet for long). Not for a gRPC
		// trailers-only response, which must stay a single HEADERS frame with END_STREAM.
		s.flushHead()
	}
	countGRPC := h.countsGRPCMessages(s)
	whole := true // the body was copied to its end: its trailers follow
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			idle.touch()
			w, werr := s.w.Write(buf[:n])
			s.Info.BytesSent += int64(w)
			if (werr != nil || countGRPC || flush) && !s.afterWrite(buf[:w], werr, countGRPC, flush) {
				whole = false
				break
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			s.bodyBroken(rc)
			whole = false
			break
		}
	}
	if t := resp.Trailer; whole && t != nil && t.Len() > 0 {
		s.copyTrailers(t)
	}
	// The exchange is over. Cancel first: closing an HTTP/2 response body otherwise waits for
	// the request body writer, which may still block on an open downstream body (a gRPC
	// server may end the stream while the client is still sending). No deferred call (a
	// closure of its own per request): respond has this one exit, and should a bug panic
	// before it, forward's deferred end cancels the exchange all the same (endRequest).
	rc.cancel(nil)
	resp.Body.Close()
	if bp != nil {
		copyBufPool.Put(bp)
	}
}

// pooledCopyBuf returns a buffer from copyBufPool, for a response body that does not fit the
// Stream's own (respond). Out of respond's common path.
//
//go:noinline
func pooledCopyBuf() *[]byte { return copyBufPool.Get().(*[]byte) }

// flushHead sends the response head at once, for a response whose body is flushed as it
// arrives (respond). Out of respond's common path (a response of known length, not gRPC).
//
//go:noinline
func (s *Stream) flushHead() { _ = s.w.Flush() }

// afterWrite is respond's rarer work after writing p downstream, whose write returned werr:
// counting the gRPC messages (countGRPC), the write's failure, and flushing (flush). False:
// the downstream went away (FlagDownstreamConnTerminated) and the copy ends. Out of respond's
// common path (a response of known length, not gRPC, written).
//
//go:noinline
func (s *Stream) afterWrite(p []byte, werr error, countGRPC, flush bool) bool {
	if countGRPC {
		s.respGRPC.Feed(p)
	}
	if werr != nil {
		s.Info.Flags |= FlagDownstreamConnTerminated
		return false
	}
	if flush {
		if ferr := s.w.Flush(); ferr != nil {
			s.Info.Flags |= FlagDownstreamConnTerminated
			return false
		}
	}
	return true
}

// bodyBroken records why the upstream response body ended early and has the downstream
// stream reset, so that the client does not mistake a truncated body for a complete one.
// Out of respond's common path (see routerControls).
//
//go:noinline
func (s *Stream) bodyBroken(ctx context.Context) {
	switch cause := causeOf(ctx); {
	case errors.Is(cause, errRouteTimeout):
		s.Info.Flags |= FlagUpstreamRequestTimeout
	case errors.Is(cause, errIdleTimeout):
		s.Info.Flags |= FlagStreamIdleTimeout
	case errors.Is(cause, errMaxDuration):
		s.Info.Flags |= FlagMaxDurationReached
	case s.ctx.Err() != nil:
		s.Info.Flags |= FlagDownstreamConnTerminated
	default:
		s.Info.Flags |= FlagUpstreamRemoteReset
	}
	s.abort = true
}

// copyTrailers sends the upstream response's trailers t downstream.
//
//go:noinline
func (s *Stream) copyTrailers(t *httpmsg.Header) {
	trl := s.w.Trailer()
	for i := 0; i < t.Len(); i++ {
		trl.AddField(t, i)
	}
	if gs, ok := t.Value("Grpc-Status"); ok {
		s.setGRPCStatus(gs)
	}
}

// setGRPCStatus records the response's grpc-status value gs. Out of respond's common path
// (a response that is not gRPC).
//
//go:noinline
func (s *Stream) setGRPCStatus(gs []byte) { s.Info.GRPCStatus = string(gs) }

// setContentLength sets the downstream response's Content-Length to n, for an upstream
// response of known length that came without the field. Out of respond's common path.
//
//go:noinline
func setContentLength(hdr *httpmsg.Header, n int64) {
	hdr.Set("Content-Length", strconv.FormatInt(n, 10))
}

// announceTrailers names the upstream response's trailers in the downstream response's
// Trailer field, up front, so that HTTP/1.1 uses chunked encoding and HTTP/2 keeps the stream
// open for the trailing HEADERS frame. Out of respond's common path.
//
//go:noinline
func announceTrailers(hdr *httpmsg.Header, names []string) {
	for _, k := range names {
		hdr.Add("Trailer", k)
	}
}

// copyResponseHeader appends the upstream response's fields src to the downstream response
// header dst, then removes from dst the hop-by-hop fields (removeResponseHopByHop) and Trailer, which
// the codec writes itself. In the common case, an empty dst and a src without Connection and
// TE, the fixed names are left out as the fields are copied.
func copyResponseHeader(dst, src *httpmsg.Header) {
	// The names of responseHopByHop, Te and Trailer, each a lookup that mostly ends at the
	// Header's name-length bit test: one copy of it in a loop (hasHopByHopOrTrailer) is less
	// code on the request's path than one per name.
	if dst.Len() == 0 && src.Index("Te", 0) < 0 && !hasHopByHopOrTrailer(src) {
		dst.CopyFrom(src) // all of it at once: the same as adding each field (AddField)
		return
	}
	copyResponseHeaderFields(dst, src)
}

// copyResponseHeaderFields is copyResponseHeader for a dst with fields or a src with a field
// it leaves out. Out of copyResponseHeader's common path (see routerControls).
//
//go:noinline
func copyResponseHeaderFields(dst, src *httpmsg.Header) {
	n := src.Len()
	if dst.Len() > 0 || src.Index("Connection", 0) >= 0 || src.Index("Te", 0) >= 0 {
		for i := 0; i < n; i++ {
			dst.AddField(src, i)
		}
		removeResponseHopByHop(dst)
		dst.Del("Trailer")
		return
	}
	if dst.Len() == 0 && !hasHopByHopOrTrailer(src) {
		dst.CopyFrom(src) // all of it at once: the same as adding each field (AddField)
		return
	}
	for i := 0; i < n; i++ {
		if k, _ := src.Field(i); !isHopByHopOrTrailer(k) {
			dst.AddField(src, i) // a field the upstream codec checked is not checked again
		}
	}
}

// hasHopByHopOrTrailer reports whether h has a field isHopByHopOrTrailer names (most lookups
// end at the Header's name-length bit test).
func hasHopByHopOrTrailer(h *httpmsg.Header) bool {
	for _, n := range responseHopByHop {
		if h.Index(n, 0) >= 0 {
			return true
		}
	}
	return h.Index("Trailer", 0) >= 0
}

// isHopByHopOrTrailer reports whether name is one of responseHopByHop or Trailer (ASCII
// case-insensitive); the length rules out most names.
func isHopByHopOrTrailer(name []byte) bool {
	switch len(name) {
	case len("Upgrade"): // and Trailer
		return httpmsg.EqualFold(name, "Upgrade") || httpmsg.EqualFold(name, "Trailer")
	case len("Connection"), len("Proxy-Connection"), len("Transfer-Encoding"): // and Keep-Alive
		return oneOf(name, responseHopByHop)
	}
	return false
}
