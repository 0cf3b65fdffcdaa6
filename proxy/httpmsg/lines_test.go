package httpmsg

import (
	"bytes"
	"strings"
	"testing"
)

// section builds a field section from lines (each "name:value" with the OWS given) and the
// spans of its fields, as a strict parser would give them: a prefix (a request line) first.
func section(prefix string, lines []string) ([]byte, []FieldSpan) {
	b := []byte(prefix)
	var spans []FieldSpan
	for _, l := range lines {
		c := strings.IndexByte(l, ':')
		s := FieldSpan{NameOff: int32(len(b)), NameEnd: int32(len(b) + c)}
		v := l[c+1:]
		lead := len(v) - len(strings.TrimLeft(v, " \t"))
		val := strings.Trim(v, " \t")
		s.ValueOff = int32(len(b) + c + 1 + lead)
		s.ValueEnd = s.ValueOff + int32(len(val))
		b = append(b, l...)
		b = append(b, "\r\n"...)
		spans = append(spans, s)
	}
	return append(b, "\r\n"...), spans
}

// wire returns h's fields as the HTTP/1.1 writer would copy them: the lines of fields marked
// valid, runs of adjacent ones at once, and whether every field is marked valid.
func wire(h *Header) (string, bool) {
	var w []byte
	all := true
	for i := 0; i < h.Len(); i++ {
		off, nameEnd, end, ok := h.Line(i)
		if !ok {
			all = false
			continue
		}
		name, value := h.Field(i)
		if !bytes.Equal(h.Raw(off, nameEnd), name) || !bytes.Equal(h.Raw(off, end), []byte(string(name)+": "+string(value)+"\r\n")) {
			return "bad line " + string(h.Raw(off, end)), false
		}
		w = append(w, h.Raw(off, end)...)
	}
	return string(w), all
}

// TestAddValidLines checks that AddValidLines leaves a Header as AddValid of each field
// would: the same fields, valid marks, lines, lookups and x-envoy- note.
func TestAddValidLines(t *testing.T) {
	cases := [][]string{
		nil,
		{"Host: a"},
		{"Host: a", "User-Agent: Go-http-client/1.1", "Content-Length: 1024", "Accept-Encoding: gzip"},
		{"a:b", "c: d", "e:  f ", "g: h\t", "i:\tj", "k:", "l: ", "m: n"},
		{"X-Request-Id: 1", "x-envoy-upstream-rq-timeout-ms: 10", "X-B3-Sampled: 1"},
		{"X-Envoy-Expected-Rq-Timeout-Ms:5"},
		{"x-envoy-: short", "xx: y"},
		{"Date: Mon, 07 Dec 2026 13:10:58 GMT", "Content-Type: text/plain; charset=utf-8"},
	}
	for _, lines := range cases {
		for _, prefix := range []string{"", "GET / HTTP/1.1\r\n"} {
			b, spans := section(prefix, lines)
			for _, pre := range [][2]string{{}, {"Via", "1.1 strait"}} {
				var got, want Header
				if pre[0] != "" {
					got.Add(pre[0], pre[1])
					want.Add(pre[0], pre[1])
				}
				got.AddValidLines(b, spans)
				for _, s := range spans {
					want.AddValid(b[s.NameOff:s.NameEnd], b[s.ValueOff:s.ValueEnd])
				}
				if !got.Equal(&want) || got.MayHaveEnvoyNames() != want.MayHaveEnvoyNames() {
					t.Fatalf("%q: got %v (envoy %v), want %v (envoy %v)", lines, HTTPHeader(&got),
						got.MayHaveEnvoyNames(), HTTPHeader(&want), want.MayHaveEnvoyNames())
				}
				gw, gok := wire(&got)
				ww, wok := wire(&want)
				if gw != ww || gok != wok || !gok {
					t.Fatalf("%q: lines %q (%v), want %q (%v)", lines, gw, gok, ww, wok)
				}
				for i := 0; i < got.Len(); i++ {
					name, _ := got.Field(i)
					for _, k := range []string{string(name), strings.ToUpper(string(name)), strings.ToLower(string(name))} {
						if gi, wi := got.Index(k, 0), want.Index(k, 0); gi != wi {
							t.Fatalf("%q: Index(%q) = %d, want %d", lines, k, gi, wi)
						}
					}
				}
			}
		}
	}
}

// TestAddValidLinesAdjacent checks that fields added from one section of canonical lines lie
// end to end (see Line), so that a writer copies them at once, and that nothing allocates once
// the storage has grown.
func TestAddValidLinesAdjacent(t *testing.T) {
	b, spans := section("POST / HTTP/1.1\r\n", []string{"A: 1", "Bb: 22", "Ccc: 333"})
	var h Header
	h.AddValidLines(b, spans)
	for i := 1; i < h.Len(); i++ {
		_, _, end, _ := h.Line(i - 1)
		if off, _, _, _ := h.Line(i); off != end {
			t.Fatalf("field %d at %d, the one before ends at %d", i, off, end)
		}
	}
	if n := testing.AllocsPerRun(100, func() { h.Reset(); h.AddValidLines(b, spans) }); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

// FuzzAddValidLines checks AddValidLines against AddValid on sections of arbitrary valid
// fields, OWS included.
func FuzzAddValidLines(f *testing.F) {
	f.Add("Host: a\nUser-Agent: x\nx-envoy-a: 1", "GET / HTTP/1.1\r\n")
	f.Add("a:b\nc:  d \nX-Envoy-Foo:\t1\t", "")
	f.Fuzz(func(t *testing.T, text, prefix string) {
		var lines []string
		for _, l := range strings.Split(text, "\n") {
			c := strings.IndexByte(l, ':')
			if c <= 0 || !ValidName([]byte(l[:c])) || !ValidValue([]byte(l[c+1:])) {
				continue
			}
			lines = append(lines, l)
		}
		b, spans := section(prefix, lines)
		var got, want Header
		got.AddValidLines(b, spans)
		for _, s := range spans {
			want.AddValid(b[s.NameOff:s.NameEnd], b[s.ValueOff:s.ValueEnd])
		}
		gw, gok := wire(&got)
		ww, wok := wire(&want)
		if !got.Equal(&want) || got.MayHaveEnvoyNames() != want.MayHaveEnvoyNames() || gw != ww || gok != wok {
			t.Fatalf("%q: got %q, want %q", lines, gw, ww)
		}
	})
}
