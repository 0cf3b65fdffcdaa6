package tracing

import (
	"math/rand/v2"
)

// Reason is why a request is traced, as Envoy records it in the x-request-id UUID.
type Reason uint8

// Trace reasons. The UUID request id extension packs them into the UUID's version nibble
// (index 14): '4' none, '9' sampled, 'a' forced by the service (x-envoy-force-trace), 'b'
// forced by the client (x-client-trace-id).
const (
	NoTrace Reason = iota
	Sampled
	ServiceForced
	ClientForced
)

// Traced reports whether the reason traces the request.
func (r Reason) Traced() bool { return r != NoTrace }

// nibble returns the UUID version character that encodes r.
func (r Reason) nibble() byte {
	switch r {
	case Sampled:
		return '9'
	case ServiceForced:
		return 'a'
	case ClientForced:
		return 'b'
	}
	return '4'
}

// uuidLen is the length of a textual UUID.
const uuidLen = 36

// reasonOf reads the trace reason packed in a UUID request id.
func reasonOf(id string) Reason {
	if len(id) != uuidLen {
		return NoTrace
	}
	switch id[14] {
	case '9':
		return Sampled
	case 'a':
		return ServiceForced
	case 'b':
		return ClientForced
	}
	return NoTrace
}

// withReason returns id with r packed into it (id must be a UUID).
func withReason(id string, r Reason) string {
	b := []byte(id)
	b[14] = r.nibble()
	return string(b)
}

// ratio is a sampling fraction in parts per ten thousand, as Envoy converts a Percent.
type ratio uint32

const ratioDenominator = 10000

// pass reports whether a value (a stable or random integer) falls within the fraction.
func (r ratio) pass(v uint64) bool { return v%ratioDenominator < uint64(r) }

// percent converts a Percent value (0-100, unset means def) to parts per ten thousand,
// rounded like Envoy's PROTOBUF_PERCENT_TO_ROUNDED_INTEGER_OR_DEFAULT.
func percent(v float64, set bool, def ratio) ratio {
	if !set {
		return def
	}
	return ratio(v*100 + 0.5)
}

// requestIDInteger is the UUID extension's stable integer for a request id: its first eight
// hex characters. ok is false when they are not hex.
func requestIDInteger(id string) (uint64, bool) {
	if len(id) < 8 {
		return 0, false
	}
	var v uint64
	for i := 0; i < 8; i++ {
		d, ok := hexVal(id[i])
		if !ok {
			return 0, false
		}
		v = v<<4 | uint64(d)
	}
	return v, true
}

// Sample makes Envoy's tracing decision for a request (ConnectionManagerUtility's
// mutateTracingRequestHeader) and returns its reason. A reason already packed in x-request-id
// stands; otherwise x-client-trace-id (within client_sampling), then x-envoy-force-trace (only
// from internal requests: the connection manager has removed it from the others), then
// random_sampling (on the request id's stable integer with use_request_id_for_trace_sampling,
// else a random number) decide; overall_sampling may then veto. With pack_trace_reason a changed
// reason is written back into the x-request-id UUID (which then travels upstream). The parent's
// sampled flag, which the tracer applies later, can still override the outcome.
func (t *Tracer) Sample(h Headers, internal bool) Reason {
	var id string
	if v := h.Values("X-Request-Id"); len(v) > 0 {
		id = v[0]
	}
	cur := NoTrace
	if t.packReason {
		cur = reasonOf(id)
	}
	final := cur
	if cur == NoTrace {
		switch {
		case len(h.Values("X-Client-Trace-Id")) > 0 && t.client.pass(rand.Uint64()):
			final = ClientForced
		case internal && len(h.Values("X-Envoy-Force-Trace")) > 0:
			final = ServiceForced
		default:
			v, ok := uint64(0), false
			if t.useRequestID {
				v, ok = requestIDInteger(id)
			}
			if !ok {
				v = rand.Uint64()
			}
			if t.random.pass(v) {
				final = Sampled
			}
		}
	}
	if final != NoTrace && !t.overall.pass(rand.Uint64()) {
		final = NoTrace
	}
	if final != cur && t.packReason && len(id) == uuidLen {
		h.Set("X-Request-Id", withReason(id, final))
	}
	t.st.reason(final)
	return final
}
