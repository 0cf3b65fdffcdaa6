package tracing

import "testing"

// FuzzParseTraceparent checks that any traceparent parses without panicking and that a parsed
// one renders back to the same ids.
func FuzzParseTraceparent(f *testing.F) {
	f.Add("00-" + tid + "-" + sid + "-01")
	f.Add("ff-" + tid + "-" + sid + "-01")
	f.Add("00--" + sid + "-01")
	f.Fuzz(func(t *testing.T, v string) {
		sc, ok := ParseTraceparent(v)
		if !ok {
			return
		}
		if sc.TraceID.IsZero() || sc.SpanID.IsZero() {
			t.Fatalf("%q: zero id accepted", v)
		}
		if _, ok := ParseTraceparent(FormatTraceparent(sc.TraceID, sc.SpanID, sc.Sampled)); !ok {
			t.Fatalf("%q: rendering does not parse", v)
		}
	})
}

// FuzzParseB3 checks the B3 single and multiple header parsers on any input.
func FuzzParseB3(f *testing.F) {
	f.Add(tid + "-" + sid + "-1-" + sid2)
	f.Add("d")
	f.Add(tid[16:] + "-" + sid)
	f.Add("-" + sid + "--")
	f.Fuzz(func(t *testing.T, v string) {
		sc, hasCtx, ok := ParseB3Single(v)
		if ok && hasCtx && (sc.TraceID.IsZero() || sc.SpanID.IsZero()) {
			t.Fatalf("%q: zero id accepted", v)
		}
		n := len(v) / 2
		_, _, _ = ParseB3Multi(v[:n], v[n:], v, v, v)
	})
}
