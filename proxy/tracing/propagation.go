package tracing

import (
	"strings"
)

// Propagation headers, in net/http's canonical form.
const (
	headerTraceparent = "Traceparent"
	headerTracestate  = "Tracestate"
	headerB3          = "B3"
	headerB3TraceID   = "X-B3-Traceid"
	headerB3SpanID    = "X-B3-Spanid"
	headerB3ParentID  = "X-B3-Parentspanid"
	headerB3Sampled   = "X-B3-Sampled"
	headerB3Flags     = "X-B3-Flags"
)

// maxTracestate bounds the tracestate carried over from a request: the W3C recommends that a
// vendor propagate at least 512 characters; a longer one is dropped rather than cut.
const maxTracestate = 512

// SpanContext is the trace context a request carries in from its caller.
type SpanContext struct {
	// TraceID is the trace the caller's span belongs to.
	TraceID TraceID
	// SpanID is the caller's span (the parent of the span the proxy starts).
	SpanID SpanID
	// ParentID is the caller's own parent (B3's x-b3-parentspanid), zero when unknown.
	ParentID SpanID
	// Sampled is the caller's sampling decision; it is only meaningful when SampledSet.
	Sampled, SampledSet bool
	// TraceState is the W3C tracestate that travels with the context.
	TraceState string
}

// ParseTraceparent parses a W3C traceparent value (version-traceid-parentid-flags, 55
// characters) as Envoy's OpenTelemetry tracer does: hex in either case, version ff and all-zero
// ids are invalid. ok is false for anything malformed: the caller then starts a new trace.
func ParseTraceparent(v string) (sc SpanContext, ok bool) {
	if len(v) != 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return sc, false
	}
	var ver, flags [1]byte
	if !unhex(ver[:], v[0:2]) || ver[0] == 0xff || !unhex(flags[:], v[53:55]) {
		return sc, false
	}
	if !unhex(sc.TraceID[:], v[3:35]) || !unhex(sc.SpanID[:], v[36:52]) {
		return sc, false
	}
	if sc.TraceID.IsZero() || sc.SpanID.IsZero() {
		return SpanContext{}, false
	}
	sc.Sampled, sc.SampledSet = flags[0]&1 == 1, true
	return sc, true
}

// FormatTraceparent renders a version 00 traceparent.
func FormatTraceparent(t TraceID, s SpanID, sampled bool) string {
	var b [55]byte
	b[0], b[1], b[2] = '0', '0', '-'
	hexTo(b[3:35], t[:])
	b[35] = '-'
	hexTo(b[36:52], s[:])
	b[52], b[53], b[54] = '-', '0', '0'
	if sampled {
		b[54] = '1'
	}
	return string(b[:])
}

const hexDigits = "0123456789abcdef"

func hexTo(dst, src []byte) {
	for i, c := range src {
		dst[2*i], dst[2*i+1] = hexDigits[c>>4], hexDigits[c&0xf]
	}
}

// ExtractW3C reads traceparent and tracestate from a request. ok is false without a valid
// traceparent; tracestate without one is discarded, as the W3C processing model says.
func ExtractW3C(h Headers) (SpanContext, bool) {
	tp := h.Values(headerTraceparent)
	if len(tp) == 0 {
		return SpanContext{}, false
	}
	sc, ok := ParseTraceparent(strings.TrimSpace(tp[0]))
	if !ok {
		return SpanContext{}, false
	}
	if ts := h.Values(headerTracestate); len(ts) > 0 {
		v := ts[0]
		if len(ts) > 1 {
			v = strings.Join(ts, ",")
		}
		if len(v) <= maxTracestate {
			sc.TraceState = v
		}
	}
	return sc, true
}

// InjectW3C writes the context of span s (trace t, sampled) to an outgoing request.
func InjectW3C(h Headers, t TraceID, s SpanID, sampled bool, tracestate string) {
	h.Set(headerTraceparent, FormatTraceparent(t, s, sampled))
	if tracestate != "" {
		h.Set(headerTracestate, tracestate)
	} else {
		h.Del(headerTracestate)
	}
}

// b3Sampling reads a B3 sampling state: "1" and "d" (debug) sample, "0" does not.
func b3Sampling(c byte) (sampled, ok bool) {
	switch c {
	case '1', 'd':
		return true, true
	case '0':
		return false, true
	}
	return false, false
}

// ParseB3Single parses the B3 single header, {traceid}-{spanid}[-{sampling}[-{parentspanid}]]
// or a lone {sampling}, as Envoy's Zipkin tracer does. hasCtx is false for a lone sampling
// state (valid, but no parent). ok is false for anything malformed.
func ParseB3Single(v string) (sc SpanContext, hasCtx, ok bool) {
	if len(v) == 1 {
		s, valid := b3Sampling(v[0])
		if !valid {
			return sc, false, false
		}
		sc.Sampled, sc.SampledSet = s, true
		return sc, false, true
	}
	rest := v
	tid, rest, _ := strings.Cut(rest, "-")
	var good bool
	if sc.TraceID, good = parseTraceID(tid, true); !good || sc.TraceID.IsZero() {
		return SpanContext{}, false, false
	}
	sid, rest, more := strings.Cut(rest, "-")
	if sc.SpanID, good = parseSpanID(sid); !good || sc.SpanID.IsZero() {
		return SpanContext{}, false, false
	}
	if !more {
		return sc, true, true
	}
	st, rest, more := strings.Cut(rest, "-")
	if len(st) != 1 {
		return SpanContext{}, false, false
	}
	if sc.Sampled, good = b3Sampling(st[0]); !good {
		return SpanContext{}, false, false
	}
	sc.SampledSet = true
	if !more {
		return sc, true, true
	}
	if sc.ParentID, good = parseSpanID(rest); !good {
		return SpanContext{}, false, false
	}
	return sc, true, true
}

// ParseB3Multi parses B3's multiple headers. Trace id (16 or 32 hex) and span id (16 hex) must
// both be present and valid for a context (hasCtx); x-b3-parentspanid is optional but must be
// valid when present. x-b3-sampled "1" or "true" samples, any other value does not (Envoy's
// reading); x-b3-flags "1" (debug) samples as the B3 specification says. The sampling state
// stands even without ids. ok is false for malformed ids.
func ParseB3Multi(traceID, spanID, parentID, sampled, flags string) (sc SpanContext, hasCtx, ok bool) {
	if sampled != "" {
		sc.Sampled, sc.SampledSet = sampled == "1" || sampled == "true", true
	}
	if flags == "1" {
		sc.Sampled, sc.SampledSet = true, true
	}
	if traceID == "" || spanID == "" {
		return sc, false, traceID == "" && spanID == "" && parentID == ""
	}
	var good bool
	if sc.TraceID, good = parseTraceID(traceID, true); !good || sc.TraceID.IsZero() {
		return sc, false, false
	}
	if sc.SpanID, good = parseSpanID(spanID); !good || sc.SpanID.IsZero() {
		return sc, false, false
	}
	if parentID != "" {
		if sc.ParentID, good = parseSpanID(parentID); !good {
			return sc, false, false
		}
	}
	return sc, true, true
}

// ExtractB3 reads a request's B3 context as Envoy's Zipkin tracer does: the single b3 header
// when present, else the multiple headers. hasCtx reports a parent; sc.SampledSet a sampling
// state (which a request may carry without a parent). A malformed header yields neither a
// parent nor its sampling state: the caller starts a new trace with its own decision.
func ExtractB3(h Headers) (sc SpanContext, hasCtx bool) {
	if v := h.Values(headerB3); len(v) > 0 {
		sc, hasCtx, ok := ParseB3Single(strings.TrimSpace(v[0]))
		if !ok {
			return SpanContext{}, false
		}
		return sc, hasCtx
	}
	sc, hasCtx, ok := ParseB3Multi(first(h, headerB3TraceID), first(h, headerB3SpanID),
		first(h, headerB3ParentID), first(h, headerB3Sampled), first(h, headerB3Flags))
	if !ok {
		return SpanContext{}, false
	}
	return sc, hasCtx
}

// InjectB3 writes B3's multiple headers, as Envoy's Zipkin tracer does (it reads the single
// header but writes the multiple ones).
func InjectB3(h Headers, t TraceID, s, parent SpanID, sampled bool) {
	h.Set(headerB3TraceID, t.B3String())
	h.Set(headerB3SpanID, s.String())
	if parent.IsZero() {
		h.Del(headerB3ParentID)
	} else {
		h.Set(headerB3ParentID, parent.String())
	}
	if sampled {
		h.Set(headerB3Sampled, "1")
	} else {
		h.Set(headerB3Sampled, "0")
	}
}

// first returns the first value of a header, "" if absent.
func first(h Headers, k string) string {
	if v := h.Values(k); len(v) > 0 {
		return strings.TrimSpace(v[0])
	}
	return ""
}

// Headers is a request's headers as the tracer reads and edits them: net/http's http.Header
// satisfies it, and so does the connection manager's view of its stream, whichever codec holds
// the request. Names are case-insensitive; the tracer passes them in canonical form.
type Headers interface {
	// Values returns every value of the header name (a view: not modified).
	Values(name string) []string
	// Set makes value the only value of name.
	Set(name, value string)
	// Del removes name.
	Del(name string)
}
