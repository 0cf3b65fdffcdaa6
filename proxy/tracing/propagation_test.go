package tracing

import (
	"net/http"
	"testing"
)

const (
	tid  = "4bf92f3577b34da6a3ce929d0e0e4736"
	sid  = "00f067aa0ba902b7"
	sid2 = "e457b5a2e4d86bd1"
)

func TestParseTraceparent(t *testing.T) {
	for _, c := range []struct {
		in      string
		ok      bool
		sampled bool
	}{
		{"00-" + tid + "-" + sid + "-01", true, true},
		{"00-" + tid + "-" + sid + "-00", true, false},
		{"00-" + tid + "-" + sid + "-03", true, true},                           // other flag bits
		{"00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01", true, true}, // upper case, as Envoy
		{"01-" + tid + "-" + sid + "-01", true, true},                           // a later version of the same size
		{"ff-" + tid + "-" + sid + "-01", false, false},                         // version ff is invalid
		{"00-00000000000000000000000000000000-" + sid + "-01", false, false},
		{"00-" + tid + "-0000000000000000-01", false, false},
		{"00-" + tid + "-" + sid + "-0", false, false},
		{"00-" + tid + "-" + sid + "-01-extra", false, false},
		{"00_" + tid + "-" + sid + "-01", false, false},
		{"00-" + tid[:31] + "g-" + sid + "-01", false, false},
		{"", false, false},
	} {
		sc, ok := ParseTraceparent(c.in)
		if ok != c.ok || ok && sc.Sampled != c.sampled {
			t.Errorf("%q: ok %v sampled %v, want %v %v", c.in, ok, sc.Sampled, c.ok, c.sampled)
		}
		if ok && (sc.TraceID.String() != tid || sc.SpanID.String() != sid) {
			t.Errorf("%q: ids %s %s", c.in, sc.TraceID, sc.SpanID)
		}
	}
}

func TestTraceparentRoundTrip(t *testing.T) {
	id, _ := parseTraceID(tid, false)
	s, _ := parseSpanID(sid)
	v := FormatTraceparent(id, s, true)
	if v != "00-"+tid+"-"+sid+"-01" {
		t.Fatalf("got %q", v)
	}
	h := http.Header{}
	InjectW3C(h, id, s, false, "")
	if h.Get("traceparent") != "00-"+tid+"-"+sid+"-00" || len(h["Tracestate"]) != 0 {
		t.Fatalf("got %v", h)
	}
}

func TestExtractW3CTracestate(t *testing.T) {
	h := http.Header{"Traceparent": {"00-" + tid + "-" + sid + "-01"}, "Tracestate": {"a=1", "b=2"}}
	sc, ok := ExtractW3C(h)
	if !ok || sc.TraceState != "a=1,b=2" {
		t.Fatalf("got %+v %v", sc, ok)
	}
	// tracestate without a (valid) traceparent is discarded.
	if _, ok := ExtractW3C(http.Header{"Tracestate": {"a=1"}}); ok {
		t.Fatal("tracestate alone gave a context")
	}
}

func TestParseB3Single(t *testing.T) {
	for _, c := range []struct {
		in                 string
		ok, hasCtx         bool
		sampled, sampleSet bool
		parent             string
	}{
		{tid + "-" + sid, true, true, false, false, ""},
		{tid + "-" + sid + "-1", true, true, true, true, ""},
		{tid + "-" + sid + "-0", true, true, false, true, ""},
		{tid + "-" + sid + "-d", true, true, true, true, ""},
		{tid + "-" + sid + "-1-" + sid2, true, true, true, true, sid2},
		{tid[16:] + "-" + sid + "-1", true, true, true, true, ""}, // 64-bit trace id
		{"1", true, false, true, true, ""},
		{"0", true, false, false, true, ""},
		{"d", true, false, true, true, ""},
		{"x", false, false, false, false, ""},
		{"", false, false, false, false, ""},
		{tid + "-" + sid + "-2", false, false, false, false, ""},
		{tid + "-" + sid + "-1-", false, false, false, false, ""},
		{tid + "-" + sid + "-", false, false, false, false, ""},
		{tid + "-" + sid[:15], false, false, false, false, ""},
		{"0000000000000000-" + sid, false, false, false, false, ""},
		{tid + "-0000000000000000", false, false, false, false, ""},
		{tid + "-" + sid + "-1-" + sid2 + "0", false, false, false, false, ""},
	} {
		sc, hasCtx, ok := ParseB3Single(c.in)
		if ok != c.ok || hasCtx != c.hasCtx || sc.Sampled != c.sampled || sc.SampledSet != c.sampleSet {
			t.Errorf("%q: ok %v ctx %v sampled %v/%v", c.in, ok, hasCtx, sc.Sampled, sc.SampledSet)
			continue
		}
		if c.parent != "" && sc.ParentID.String() != c.parent {
			t.Errorf("%q: parent %s", c.in, sc.ParentID)
		}
	}
}

func TestParseB3Multi(t *testing.T) {
	for _, c := range []struct {
		tr, sp, parent, sampled, flags string
		ok, hasCtx, s, set             bool
	}{
		{tid, sid, "", "1", "", true, true, true, true},
		{tid, sid, sid2, "0", "", true, true, false, true},
		{tid, sid, "", "true", "", true, true, true, true},
		{tid, sid, "", "", "1", true, true, true, true}, // debug
		{tid, sid, "", "", "", true, true, false, false},
		{"", "", "", "1", "", true, false, true, true}, // sampling state alone
		{"", "", "", "", "", true, false, false, false},
		{tid, "", "", "1", "", false, false, true, true},
		{tid, sid, "zz", "1", "", false, false, true, true},
		{"xyz", sid, "", "", "", false, false, false, false},
		{"00000000000000000000000000000000", sid, "", "", "", false, false, false, false},
	} {
		sc, hasCtx, ok := ParseB3Multi(c.tr, c.sp, c.parent, c.sampled, c.flags)
		if ok != c.ok || hasCtx != c.hasCtx || ok && (sc.Sampled != c.s || sc.SampledSet != c.set) {
			t.Errorf("%+v: ok %v ctx %v sampled %v/%v", c, ok, hasCtx, sc.Sampled, sc.SampledSet)
		}
	}
}

func TestExtractB3PrefersSingle(t *testing.T) {
	h := http.Header{}
	h.Set("b3", tid+"-"+sid2+"-1")
	h.Set("X-B3-TraceId", tid)
	h.Set("X-B3-SpanId", sid)
	sc, ok := ExtractB3(h)
	if !ok || sc.SpanID.String() != sid2 {
		t.Fatalf("got %+v %v", sc, ok)
	}
	// A malformed b3 gives nothing, even with valid multiple headers beside it (Envoy reads
	// the single header only when it is present).
	h.Set("b3", "garbage")
	if sc, ok := ExtractB3(h); ok || sc.SampledSet {
		t.Fatalf("malformed: %+v %v", sc, ok)
	}
}

func TestInjectB3(t *testing.T) {
	id, _ := parseTraceID(tid[16:], true)
	s, _ := parseSpanID(sid)
	h := http.Header{"X-B3-Parentspanid": {"stale"}}
	InjectB3(h, id, s, SpanID{}, true)
	if h.Get("x-b3-traceid") != tid[16:] || h.Get("x-b3-spanid") != sid || h.Get("x-b3-sampled") != "1" || h.Get("x-b3-parentspanid") != "" {
		t.Fatalf("got %v", h)
	}
}
