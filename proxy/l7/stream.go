package l7

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
	"unsafe"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strait-mesh/strait/proxy/clock"
	"github.com/strait-mesh/strait/proxy/httpmsg"
	"github.com/strait-mesh/strait/proxy/httppath"
	"github.com/strait-mesh/strait/proxy/route"
	"github.com/strait-mesh/strait/proxy/telemetry"
	"github.com/strait-mesh/strait/proxy/upstream"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
)

// Stream is one request travelling through the filter pipeline. Filters read the request and
// route, and either answer (a local reply) or call the next stage.
type Stream struct {
	// streamReq is what belongs to the request: release zeroes it at once (one bulk clear,
	// not a store per field), and serve fills it for the next request.
	streamReq
	// What the Stream keeps from one request to the next (release). rc is the router's
	// cancellation of the upstream exchange (cancel.go), arc the attempts' (attemptScope).
	rc  *reqCancel
	arc *reqCancel
	// The router's request body and timers, kept from one request to the next when nothing
	// can still reach them (forwardDone.run): see Stream.replayBody, idleTimer, routeTimer.
	rbody  *replayBody
	idleT  *idleTimer
	rtimer *routeTimer
	// sctx is the request's context as serve made it (s.ctx, or s.ctx's ancestor), kept for
	// the next request unless ctxOut says that code outside may hold it (see release).
	sctx *streamCtx
	// outReq is the last attempt's request on the message path, reused for the next attempt
	// or request when outFree (its cluster released it): see attemptRequest.
	outReq  *http.Request
	outFree bool
	// idSlab is where newRequestID cuts request ids from.
	idSlab []byte
	// se is the stream stage's state (timeouts_stream.go), kept for the next request when no
	// late body reader may still reach it.
	se *streamEnd
	// kept: the Stream belongs to an HTTP/1.1 connection, which serves its requests with it one
	// after the other (h1Conn.stream), and release leaves it there instead of in streamPool.
	kept bool
	// copyBuf is respond's buffer for a response body of known length that fits (a larger or
	// unknown one takes copyBufPool's): no pool round trip per request, and small enough for
	// an idle keep-alive connection to hold with its Stream.
	copyBuf [copyBufSmall]byte
}

// copyBufSmall is the size of a Stream's own response body buffer (Stream.copyBuf).
const copyBufSmall = 2 << 10

// streamReq is a Stream's state for one request (Stream, release).
type streamReq struct {
	// streamStart is the request as the codec adapter handed it, copied whole (serve): req
	// and the downstream writer are reached only through Stream's methods (request.go)
	// outside the codec adapters; body is the request body as filters left it, ctx the
	// request's context once serve has made it (the codec's before); method, authority and
	// path are the request's pseudo-header fields as strings (filters and routing read them
	// often), peer the downstream peer as the codec reports it, reqTrailer net/http's request
	// trailer map, filled as the body ends and forwarded with the upstream request (net/http
	// adapter only); plink, baseNoDL and heldOut are as serve and finish use them.
	streamStart
	// w is the downstream response writer (the codec's own, downW, unless a filter wrapped it).
	w      downstream
	scheme string
	// head is the upstream request's head as upstream.Cluster.RoundTripMessage takes it, when
	// the cluster does (headSet): the request's own header fields and path, no net/http map.
	head    upstream.MessageHead
	headSet bool
	// Info is the request's record (flags, status, cluster...).
	Info RequestInfo
	// Table and Route are the route table and matched route (Route nil: no route).
	Table *route.Table
	Route *route.Route
	// Cluster and Target are the chosen upstream cluster for forwarding routes.
	Cluster string
	Target  *route.Target

	h        *Handler
	rinfo    route.RequestInfo
	grpc     bool
	external bool // not internal (edge.go): x-envoy-* control headers are ignored
	// noEnvoyFields: the request header has no x-envoy-* field but the ones decorateRequest
	// added itself (x-envoy-internal, x-envoy-external-address: no router control headers),
	// and no edit since (SetHeader, AddHeader, reqHeader, applyRequestOps clear it); the
	// router then skips its control headers. False: unknown.
	noEnvoyFields bool
	wroteHeader   bool
	abort         bool
	closeReply    bool // the local reply closes an HTTP/1.x connection after it (protocolReject)
	corsOrigin    string
	cors          *route.CORS
	setCookie     string
	retrying      bool
	reqBody       *replayBody // the request body as the router reads it, nil if none
	timeoutAlt    bool
	metadata      map[string]*structpb.Struct // dynamic metadata by filter namespace; nil until set
	hostReport    upstream.HostReport         // the upstream host, reported by the cluster (access logs, tracing)
	services      []telemetry.Service         // the cluster's services from istiod's metadata (telemetry.go)
	trace         *streamTrace                // the request's spans when tracing is on (tracing.go)
	downW         downstream                  // the codec's own writer (w may wrap it)
	respGRPC      telemetry.GRPCFrames        // gRPC messages of the response body sent downstream (telemetry.go)
	hooks         []responseHook              // filters' response-head hooks (request.go)
	hookBuf       [4]responseHook
	// baseCtx is the context serve gave the stream; plink (streamStart) is the connection
	// that cancels it directly while s.ctx is still baseCtx (nil: none).
	baseCtx context.Context
	// ctxOut: code outside may hold the request's context (Stream.Context; see release).
	ctxOut bool
	// bodyHeld: code outside the connection manager got the request body (Stream.Body), or
	// an attempt's reader may still read it (replayBody.end failed); heldOut (streamStart),
	// when set, is where finish reports it to the codec, which then does not reuse the
	// body's objects.
	bodyHeld bool
}

// streamCtx is a stream's context: the codec's context with the Stream as the value of
// infoKey, as context.WithValue would make it, but the Stream's own, reused from one request
// to the next when no code outside got it (Stream.Context) and no registration with it may
// still run (endRequest).
type streamCtx struct {
	context.Context // the codec's: Deadline, Done and Err are its
	s               *Stream
}

// Value implements context.Context.
func (c *streamCtx) Value(key any) any {
	if _, ok := key.(infoKey); ok {
		return c.s
	}
	return c.Context.Value(key)
}

// DynamicMetadata returns the dynamic metadata namespace ns (e.g. "envoy.filters.http.jwt_authn")
// set by an earlier filter of this request, or nil.
func (s *Stream) DynamicMetadata(ns string) *structpb.Struct { return s.metadata[ns] }

// SetDynamicMetadata merges v's fields into the namespace ns, as Envoy's setDynamicMetadata.
func (s *Stream) SetDynamicMetadata(ns string, v *structpb.Struct) {
	cur := s.metadata[ns]
	if cur == nil {
		if s.metadata == nil {
			s.metadata = make(map[string]*structpb.Struct, 1)
		}
		s.metadata[ns] = v
		return
	}
	if cur.Fields == nil {
		cur.Fields = make(map[string]*structpb.Value, len(v.GetFields()))
	}
	for k, f := range v.GetFields() {
		cur.Fields[k] = f
	}
}

// StreamHandler is one stage of the HTTP filter pipeline.
type StreamHandler func(s *Stream)

// Filter wraps the next stage; the pipeline is a chain of Filters ending in the router.
type Filter func(next StreamHandler) StreamHandler

var streamPool = sync.Pool{New: func() any { return new(Stream) }}

// writeHeader sends the response status once, counting it.
func (s *Stream) writeHeader(code int) {
	if s.wroteHeader {
		return
	}
	s.wroteHeader = true
	s.Info.Status = code
	if len(s.hooks) > 0 && code >= 200 {
		s.runHooks(code)
	}
	s.w.WriteHeader(code)
}

// streamStart is what a codec adapter hands the connection manager for one request; the
// Stream keeps a copy (streamReq).
type streamStart struct {
	d          downstream
	req        *httpmsg.Request
	body       io.ReadCloser
	ctx        context.Context
	cs         *connState // nil: a request without a connection of ours (tests)
	peer       netip.AddrPort
	method     string
	authority  string
	path       string
	tls        bool // the request came over TLS (besides the connection's own record)
	reqTrailer http.Header
	plink      peerLink // the connection, when it cancels its current request directly (ctx is its own)
	baseNoDL   bool     // ctx has no deadline (known to the codec adapter: no need to ask per request)
	// heldOut, when set, receives Stream.bodyHeld when the request ends.
	heldOut *bool
}

// getStream returns a Stream from streamPool, for one request (release returns it).
func getStream() *Stream { return streamPool.Get().(*Stream) }

// serve runs one request through the connection manager on s (a released Stream, or a new
// one): admission, the connection manager's header handling, routing and the filter pipeline.
func (h *Handler) serve(s *Stream, st *streamStart) {
	// A released Stream is already reduced to what it keeps (release), a new one is zero.
	s.streamStart = *st  // one bulk copy: a single write-barrier check, not one per field
	start := clock.Now() // the monotonic clock only (proxy/clock)
	// Counted started before finish can count it ended: downstream_rq_active is their
	// difference (stats.go).
	if st.req.Proto == httpmsg.HTTP2 {
		h.st.rqHTTP2.Inc()
	} else {
		h.st.rqHTTP1.Inc()
	}
	defer h.finish(s)

	if s.cs == nil {
		s.newConnState()
	}
	cs := s.cs
	ct, _ := st.req.Header.Value("Content-Type")
	s.grpc = route.IsGRPCContentType(ct) // route.IsGRPC without the interface assertion
	proto := st.req.Proto.String()
	scheme := "http"
	if cs.info.TLS || st.tls {
		scheme = "https"
	}
	sc := s.sctx
	if sc == nil {
		sc = s.newStreamCtx()
	}
	// The request's pointers, read first and then stored together after the calls and
	// branches above: one write-barrier check for most of them (the compiler ends a run of
	// such stores at a nil check or at three stores without a pointer in a row, hence the
	// order). The rest of rinfo is still zero (release).
	// The route table too (read before admission: a rejected request's reply uses none).
	tbl := h.routeTable()
	d, ctx, local := st.d, st.ctx, cs.info.OriginalDst
	method, authority, path := st.method, st.authority, st.path
	sc.Context = ctx
	s.rinfo.Local, s.ctx, s.baseCtx, s.Table = local, sc, sc, tbl
	s.w, s.downW, s.h = d, d, h
	s.Info.Start, s.Info.Conn = start, &cs.info
	s.Info.Method, s.Info.Authority, s.Info.Path = method, authority, path
	s.Info.Protocol, s.scheme, s.rinfo.Protocol = proto, scheme, proto

	if h.opts.Overload != nil && h.shedOverload(s) {
		return
	}
	if !h.admit(s) {
		return
	}
	h.decorateRequest(s, cs)

	if tbl != nil && s.external && len(tbl.InternalOnlyHeaders()) > 0 {
		s.dropInternalOnly()
	}
	s.Route = h.match(s) // ondemand.go
	if s.Route != nil {
		s.Info.RouteName = s.Route.Name
		if s.Route.Action == route.ActionForward {
			s.Cluster, s.Target = s.Route.PickCluster(s)
			s.Info.Cluster = s.Cluster
		}
	}
	if h.tracer != nil {
		h.startTrace(s)
	}
	h.pipeline(s)
}

// newStreamCtx gives a new Stream its streamCtx, kept across its requests, whose Stream is s
// for its whole life (release does not clear it). Out of serve's common path (a pooled Stream
// has one).
//
//go:noinline
func (s *Stream) newStreamCtx() *streamCtx {
	s.sctx = &streamCtx{s: s}
	return s.sctx
}

// newConnState gives a request without a connection of ours (tests) an empty connState. Out
// of serve's common path.
//
//go:noinline
func (s *Stream) newConnState() { s.cs = &connState{} }

// dropInternalOnly removes the route table's internal_only_headers from an external request.
//
//go:noinline
func (s *Stream) dropInternalOnly() {
	for _, k := range s.Table.InternalOnlyHeaders() {
		s.req.Header.Del(k)
	}
}

// admit enforces the protocol limits; it answers and returns false for a rejected request.
// A request none of the limits can reject (the common case) goes straight to normalize;
// admitChecks has the checks themselves.
func (h *Handler) admit(s *Stream) bool {
	hdr := &s.req.Header
	n := hdr.Len()
	size := len(s.authority) + len(s.path) + len(s.method) + hdr.Size() + 4*n
	if s.req.Proto == httpmsg.HTTP10 && !h.acceptHTTP10 || h.underscores != corev3.HttpProtocolOptions_ALLOW ||
		n > h.maxHeaders || size > h.maxHeaderBytes || s.method == http.MethodConnect || hdr.Index("Connection", 0) >= 0 {
		if !h.admitChecks(s, n, size) {
			return false
		}
	}
	return h.normalize(s)
}

// admitChecks is admit for a request one of the limits may reject, with n and size its
// header's field count and size (before underscored names are removed). Out of admit's
// common path.
//
//go:noinline
func (h *Handler) admitChecks(s *Stream, n, size int) bool {
	if s.req.Proto == httpmsg.HTTP10 && !h.acceptHTTP10 {
		s.protocolReject(http.StatusUpgradeRequired, "http1.0_not_allowed")
		return false
	}
	hdr := &s.req.Header
	if h.underscores != corev3.HttpProtocolOptions_ALLOW {
		for i := 0; i < hdr.Len(); i++ {
			if k, _ := hdr.Field(i); bytes.IndexByte(k, '_') < 0 {
				continue
			}
			if h.underscores == corev3.HttpProtocolOptions_REJECT_REQUEST {
				s.protocolReject(http.StatusBadRequest, "unexpected_underscore")
				return false
			}
			hdr.DelAt(i)
			i--
		}
	}
	if n > h.maxHeaders || size > h.maxHeaderBytes {
		h.st.rqHeadersTooLarge.Inc()
		s.protocolReject(http.StatusRequestHeaderFieldsTooLarge, "header_overflow")
		return false
	}
	if s.method == http.MethodConnect {
		s.localReply(http.StatusForbidden, 0, "connect_not_supported", "", -1)
		return false
	}
	if hdr.Index("Connection", 0) >= 0 && !connectionEntry(s) { // without the field: nothing to apply
		s.protocolReject(http.StatusBadRequest, "http1.connection_header_rejected")
		return false
	}
	return true
}

// protocolReject answers, with 4xx and the DPE flag, a request that Envoy's HTTP/1 codec
// refuses itself (a codec error: HTTP/1.0 not allowed, a header name with an underscore under
// REJECT_REQUEST, too many or too large headers, a rejected Connection field). Over HTTP/1.x
// the connection then closes after the reply, as Envoy's does (its
// stream_error_on_invalid_http_message is false by default for HTTP/1); over HTTP/2 only the
// stream ends. Out of the request path (a refused request).
//
//go:noinline
func (s *Stream) protocolReject(status int, details string) {
	s.closeReply = s.req.Proto != httpmsg.HTTP2
	s.localReply(status, FlagDownstreamProtocolError, details, "", -1)
}

// normalize applies the connection manager's path normalization (httppath has the rules) to
// the path, never the query, and refuses what Envoy refuses with 400: %00, a fragment-only or
// relative path that cannot be canonicalized, escaped slashes under REJECT_REQUEST, and a method
// with lower-case letters (Istio's documented normalization: "get" is not GET to a policy, so it
// is not forwarded). The fragment, which a client must not send, is removed. False means the
// request was answered.
func (h *Handler) normalize(s *Stream) bool {
	if !httppath.UpperMethod(s.method) {
		s.localReply(http.StatusBadRequest, FlagDownstreamProtocolError, "invalid_method", "", -1)
		return false
	}
	uri := s.path
	if uri == "*" && s.method == http.MethodOptions {
		return true
	}
	uri, err := httppath.NormalizeURI(uri, h.pathOptions)
	if err == nil && uri != s.path {
		err = s.setNormalizedPath(uri)
	}
	if err != nil {
		s.localReply(http.StatusBadRequest, FlagDownstreamProtocolError, "path_normalization_failed", "", -1)
		return false
	}
	return true
}

// setNormalizedPath is SetPath for a path normalize changed: out of normalize's common path
// (a request's path is mostly normal already).
//
//go:noinline
func (s *Stream) setNormalizedPath(uri string) error { return s.SetPath(uri) }

// stripAuthority applies strip_trailing_host_dot and strip_any_host_port /
// strip_matching_host_port to the request's authority. Out of decorateRequest's common path
// (see routerControls).
//
//go:noinline
func (h *Handler) stripAuthority(s *Stream, cs *connState) {
	if h.stripTrailingDot {
		host, port, hasPort := strings.Cut(s.authority, ":")
		if strings.HasSuffix(host, ".") {
			s.authority = strings.TrimSuffix(host, ".")
			if hasPort {
				s.authority += ":" + port
			}
		}
	}
	if h.stripAnyPort {
		s.authority = route.StripPort(s.authority)
	} else if h.stripMatchingPort && cs.info.OriginalDst.IsValid() {
		if p := strings.TrimPrefix(s.authority, route.StripPort(s.authority)); p == ":"+itoa(int(cs.info.OriginalDst.Port())) {
			s.authority = route.StripPort(s.authority)
		}
	}
}

// decorateRequest applies Envoy's connection-manager header handling: host port stripping,
// x-forwarded-for / -proto, internal/external classification, x-envoy-* sanitizing,
// x-request-id and x-forwarded-client-cert.
func (h *Handler) decorateRequest(s *Stream, cs *connState) {
	hdr := &s.req.Header
	if h.stripTrailingDot || h.stripAnyPort || h.stripMatchingPort {
		h.stripAuthority(s, cs)
	}

	peer := cs.info.Source
	if !peer.IsValid() {
		peer = s.peer
	}
	// Envoy's order: the trusted client address is found before x-forwarded-for is appended to
	// (edge.go has the rules), then the request is classified as internal, edge or neither.
	client := h.trustedClient(peer, hdr)
	if h.useRemoteAddress && !h.skipXFFAppend && cs.info.Source.IsValid() {
		appendXFF(hdr, cs.addrText(cs.info.Source))
	}
	remote := client.addr
	if !remote.IsValid() {
		remote = peer // no usable XFF: the peer is logged, but the request is not internal
	}
	s.Info.Remote = remote
	s.rinfo.Remote = remote
	// Without internal_address_config's cidr_ranges no address is internal: no lookup.
	internal := client.checkable && client.addr.IsValid() && len(h.internalCIDRs) > 0 && h.isInternal(client.addr.Addr())
	edge := h.useRemoteAddress && !internal
	s.external = !internal

	// One call of cleanEntryHeaders with the request's kind (at the edge all x-envoy-* go),
	// then what internal and edge requests get.
	kind := entryUntrusted
	if internal {
		kind = entryInternal
	} else if edge {
		kind = entryEdge
	}
	s.noEnvoyFields = !cleanEntryHeaders(hdr, kind, h.xffTrustedHops)
	if internal {
		hdr.AddName(nameEnvoyInternal, "true")
	} else if edge && remote.IsValid() {
		hdr.Set("X-Envoy-External-Address", cs.addrText(remote))
	}
	// x-forwarded-proto: set if missing (appended without Set's second lookup), else as
	// forwardedProtoPresent says. Both branches call: the compiler then lays out the first,
	// the common one, in line.
	if i := hdr.Index("X-Forwarded-Proto", 0); i < 0 {
		hdr.AddName(nameForwardedProto, s.scheme)
	} else {
		h.forwardedProtoPresent(s, hdr)
	}

	// x-request-id: kept from internal and intermediate hops, replaced at the edge unless
	// preserve_external_request_id; generated when absent or empty. Like Envoy, a present id
	// is kept whatever its form (the codecs have checked it is a field value).
	idv, hasID := hdr.Value("X-Request-Id")
	var id string
	if h.generateRequestID && (len(idv) == 0 || edge && !h.preserveExternalID) {
		id = s.newRequestID()
		if !hasID { // the common case first: the compiler lays it out in line
			hdr.AddName(nameRequestID, id)
		} else {
			hdr.SetName(nameRequestID, id)
		}
	} else {
		id = s.slabString(idv)
	}
	s.Info.RequestID = id
	h.forwardClientCert(s, cs)
}

// forwardedProtoPresent handles a request that came with x-forwarded-proto: overwritten at the
// edge unless a trusted hop set it; a present empty value is kept otherwise, as in Envoy. Out
// of decorateRequest's common path (a request without the field).
//
//go:noinline
func (h *Handler) forwardedProtoPresent(s *Stream, hdr *httpmsg.Header) {
	if h.useRemoteAddress && h.xffTrustedHops == 0 {
		hdr.SetName(nameForwardedProto, s.scheme)
	}
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	if n == 0 {
		return "0"
	}
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

// appendXFF appends addr to the request's x-forwarded-for list as Envoy does (appendToList).
func appendXFF(h *httpmsg.Header, addr string) { appendToList(h, xffHName, addr) }

// appendToList makes the fields named name one: their non-empty values joined with "," (as
// Envoy's codec coalesces a repeated field, skipping empty values) and then ",v" (v alone
// when there was none), as Envoy appends to x-forwarded-for and x-forwarded-client-cert.
func appendToList(h *httpmsg.Header, n httpmsg.Name, v string) {
	if i := h.Index(n.String(), 0); i >= 0 {
		joinList(h, n, i, v)
	} else {
		h.AddName(n, v)
	}
}

// joinList is appendToList for a header that has the field, the first at i: out of the line
// of appendToList's common case (a request without the field), and its buffer out of the
// callers' frames.
//
//go:noinline
func joinList(h *httpmsg.Header, n httpmsg.Name, i int, v string) {
	name := n.String()
	var sb [512]byte
	b := sb[:0]
	for ; i >= 0; i = h.Index(name, i+1) {
		if _, f := h.Field(i); len(f) > 0 {
			b = append(append(b, f...), ',')
		}
	}
	h.SetBytes(name, append(b, v...))
}

// uuidLen is the length of a UUID's text.
const uuidLen = 36

// idSlabIDs is how many request ids share one allocation (newRequestID).
const idSlabIDs = 32

// newRequestID returns a new random UUID for x-request-id, cut from the Stream's slab.
func (s *Stream) newRequestID() string {
	b := s.slab(uuidLen)
	putUUID((*[uuidLen]byte)(b))
	return unsafe.String(&b[0], uuidLen)
}

// slabString returns a copy of b as a string, cut from the Stream's slab when short (a request
// id the request came with).
func (s *Stream) slabString(b []byte) string {
	if len(b) == 0 || len(b) > 2*uuidLen {
		return string(b)
	}
	c := s.slab(len(b))
	copy(c, b)
	return unsafe.String(&c[0], len(c))
}

// slab returns n bytes cut from the Stream's slab, idSlabIDs request ids to an allocation: a
// slab's bytes are written once, before the string that covers them is made, and never again
// (a full slab is left to the strings that use it, and a new one is made), so the strings
// stay immutable.
func (s *Stream) slab(n int) []byte {
	if cap(s.idSlab)-len(s.idSlab) < n {
		s.newSlab()
	}
	m := len(s.idSlab)
	s.idSlab = s.idSlab[:m+n]
	return s.idSlab[m : m+n : m+n]
}

// newSlab gives the Stream a new slab (slab), once per idSlabIDs request ids: out of the line
// of slab's inlined copies.
//
//go:noinline
func (s *Stream) newSlab() { s.idSlab = make([]byte, 0, uuidLen*idSlabIDs) }

// putUUID writes a random (version 4) UUID's text to out.
func putUUID(out *[uuidLen]byte) { putUUIDFrom(out, rand.Uint64(), rand.Uint64()) }

// putUUIDFrom writes the version 4 UUID whose bytes are a's, then c's, little end first
// (random bits), with the version and variant bits set, to out as lower-case hex, eight digits
// at a time (hex8).
func putUUIDFrom(out *[uuidLen]byte, a, c uint64) {
	a = a&^(0xf0<<48) | 0x40<<48 // byte 6: version 4
	c = c&^0xc0 | 0x80           // byte 8: variant 10
	le := binary.LittleEndian
	le.PutUint64(out[0:8], hex8(uint32(a)))
	out[8] = '-'
	le.PutUint32(out[9:13], uint32(hex8(uint32(a>>32)&0xffff)))
	out[13] = '-'
	le.PutUint32(out[14:18], uint32(hex8(uint32(a>>48))))
	out[18] = '-'
	le.PutUint32(out[19:23], uint32(hex8(uint32(c)&0xffff)))
	out[23] = '-'
	le.PutUint64(out[24:32], hex8(uint32(c>>16)))
	le.PutUint32(out[32:36], uint32(hex8(uint32(c>>48))))
}

// hex8 returns the lower-case hex digits of x's four bytes, lowest byte first and each byte's
// high digit first, as the bytes of a little-endian word.
func hex8(x uint32) uint64 {
	v := uint64(x)
	v = (v | v<<16) & 0x0000ffff0000ffff
	v = (v | v<<8) & 0x00ff00ff00ff00ff // byte i in the low byte of 16-bit lane i
	n := v>>4&0x000f000f000f000f | (v&0x000f000f000f000f)<<8
	// A digit of 10 or more ('a'...) is 39 past '0' + digit; n+6 carries into bit 4 for those.
	letters := (n + 0x0606060606060606) >> 4 & 0x0101010101010101
	return n + 0x3030303030303030 + letters*39
}

// forwardClientCert implements forward_client_cert_details and set_current_client_cert_details.
func (h *Handler) forwardClientCert(s *Stream, cs *connState) {
	hdr := &s.req.Header
	mtls := len(cs.info.PeerCertificates) > 0
	switch h.fcc {
	case hcmv3.HttpConnectionManager_SANITIZE:
		hdr.Del(xfccName)
		return
	case hcmv3.HttpConnectionManager_ALWAYS_FORWARD_ONLY:
		return
	case hcmv3.HttpConnectionManager_FORWARD_ONLY:
		if !mtls {
			hdr.Del(xfccName)
		}
		return
	}
	if !mtls {
		hdr.Del(xfccName)
		return
	}
	cur := h.xfccElement(cs)
	if h.fcc == hcmv3.HttpConnectionManager_APPEND_FORWARD {
		appendToList(hdr, xfccHName, cur) // after the values the request came with
		return
	}
	hdr.Set(xfccName, cur)
}

// xfccName is the x-forwarded-client-cert field's name.
const xfccName = "X-Forwarded-Client-Cert"

// xfccCache is a connection's x-forwarded-client-cert element as handler h renders it.
type xfccCache struct {
	h *Handler
	v string
}

// xfccElement returns the proxy's x-forwarded-client-cert element for the connection's peer
// certificate (By, Hash, and the details h is set to add), made once per connection and
// handler: the certificates are the connection's.
func (h *Handler) xfccElement(cs *connState) string {
	if c := cs.xfcc.Load(); c != nil && c.h == h {
		return c.v
	}
	leaf := cs.info.PeerCertificates[0]
	var b strings.Builder
	if lc := cs.info.LocalCertificate; lc != nil && len(lc.URIs) > 0 {
		b.WriteString("By=")
		b.WriteString(lc.URIs[0].String())
		b.WriteByte(';')
	}
	sum := sha256.Sum256(leaf.Raw)
	b.WriteString("Hash=")
	b.WriteString(hex.EncodeToString(sum[:]))
	if d := h.fccDetails; d != nil {
		if d.GetSubject().GetValue() {
			b.WriteString(";Subject=\"")
			b.WriteString(strings.ReplaceAll(leaf.Subject.String(), "\"", "\\\""))
			b.WriteByte('"')
		}
		if d.GetUri() {
			for _, u := range leaf.URIs {
				b.WriteString(";URI=")
				b.WriteString(u.String())
			}
		}
		if d.GetDns() {
			for _, n := range leaf.DNSNames {
				b.WriteString(";DNS=")
				b.WriteString(n)
			}
		}
	}
	v := b.String()
	cs.xfcc.Store(&xfccCache{h: h, v: v})
	return v
}

// finish records the end of a request and returns the Stream to the pool.
func (h *Handler) finish(s *Stream) {
	s.Info.Duration = time.Since(s.Info.Start)
	h.st.rqTime.observe(s.Info.Duration)
	h.st.status(s.Info.Status)
	if s.Info.Flags != 0 {
		h.st.flags(s.Info.Flags)
	}
	if h.accessLog != nil {
		h.logAccess(s) // sets Info.UpstreamHost first
	}
	if h.opts.Telemetry != nil {
		h.recordTelemetry(s)
	}
	if s.trace != nil {
		h.finishTrace(s)
	}
	if h.opts.OnComplete != nil {
		h.opts.OnComplete(&s.Info)
	}
	if s.heldOut != nil {
		*s.heldOut = s.bodyHeld
	}
	abort := s.abort
	s.release()
	if abort {
		// Abort the downstream stream (HTTP/2 RST_STREAM, HTTP/1 connection close).
		panic(http.ErrAbortHandler)
	}
}

// release zeroes the request's state (streamReq) and returns s to the pool, or leaves it to
// its connection (kept); what the Stream keeps from one request to the next (the reqCancels,
// body, timers and context: cancel.go, body.go) stays with it. A kept Stream's context keeps
// its parent too, the connection's context, which serve sets again for the next request.
// Small enough to be inlined into finish.
func (s *Stream) release() {
	if s.ctxOut {
		s.sctx = nil // code outside may hold it: left to it
	}
	s.streamReq = streamReq{}
	if !s.kept {
		s.toPool()
	}
}

// toPool returns a Stream no connection keeps to streamPool, its context without the
// request's parent (see release). Out of release, for HTTP/1.1 connections' Streams (kept)
// until their connection ends.
//
//go:noinline
func (s *Stream) toPool() {
	if s.sctx != nil {
		s.sctx.Context = nil
	}
	streamPool.Put(s)
}
