package tracing

import (
	"encoding/hex"
	"math/rand/v2"
)

// TraceID is a 128-bit trace identifier. A 64-bit (Zipkin) trace id has its high half zero.
type TraceID [16]byte

// SpanID is a 64-bit span identifier.
type SpanID [8]byte

// IsZero reports whether the id is all zeros (invalid in W3C and B3).
func (t TraceID) IsZero() bool { return t == TraceID{} }

// IsZero reports whether the id is all zeros.
func (s SpanID) IsZero() bool { return s == SpanID{} }

// High64 reports whether the high half of the trace id is set (a 128-bit id).
func (t TraceID) High64() bool { return [8]byte(t[:8]) != [8]byte{} }

// String renders the id as 32 lower-case hex characters.
func (t TraceID) String() string { return hex.EncodeToString(t[:]) }

// B3String renders the id as B3 does: 16 hex characters for a 64-bit id, 32 otherwise.
func (t TraceID) B3String() string {
	if !t.High64() {
		return hex.EncodeToString(t[8:])
	}
	return hex.EncodeToString(t[:])
}

// String renders the id as 16 lower-case hex characters.
func (s SpanID) String() string { return hex.EncodeToString(s[:]) }

// newSpanID returns a random non-zero span id.
func newSpanID() SpanID {
	for {
		var s SpanID
		putUint64(s[:], rand.Uint64())
		if !s.IsZero() {
			return s
		}
	}
}

// newTraceID returns a random non-zero trace id; with bits64 only its low half is set.
func newTraceID(bits64 bool) TraceID {
	for {
		var t TraceID
		if !bits64 {
			putUint64(t[:8], rand.Uint64())
		}
		putUint64(t[8:], rand.Uint64())
		if !t.IsZero() {
			return t
		}
	}
}

func putUint64(b []byte, v uint64) {
	for i := 7; i >= 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
}

// unhex decodes exactly len(dst)*2 hex characters (either case) of s into dst.
func unhex(dst []byte, s string) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	for i := range dst {
		hi, ok1 := hexVal(s[2*i])
		lo, ok2 := hexVal(s[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func hexVal(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// parseSpanID parses 16 hex characters.
func parseSpanID(s string) (SpanID, bool) {
	var id SpanID
	return id, unhex(id[:], s)
}

// parseTraceID parses 32 hex characters, or 16 (a 64-bit id, high half zero) when allow64.
func parseTraceID(s string, allow64 bool) (TraceID, bool) {
	var id TraceID
	switch {
	case len(s) == 32:
		return id, unhex(id[:], s)
	case len(s) == 16 && allow64:
		return id, unhex(id[8:], s)
	}
	return id, false
}
