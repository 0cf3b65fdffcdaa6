package matcher

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
)

func mustHeader(t testing.TB, js string, o Options) Header {
	t.Helper()
	var h routev3.HeaderMatcher
	if err := protojson.Unmarshal([]byte(js), &h); err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	m, err := CompileHeader("h", &h, o)
	if err != nil {
		t.Fatalf("CompileHeader(%s): %v", js, err)
	}
	return m
}

// value is a header value, or a missing header when absent.
type value struct {
	v       string
	present bool
}

var missing = value{}

func has(v string) value { return value{v, true} }

func TestHeaderMatch(t *testing.T) {
	envoy := Options{EmptyExactMatchesAny: true, RangeTrimSpace: true}
	cases := []struct {
		name, js string
		o        Options
		yes, no  []value
	}{
		{"string exact", `{"name":"x-user","stringMatch":{"exact":"jason"}}`, Options{}, []value{has("jason")}, []value{has("Jason"), missing}},
		{"string exact ignore_case", `{"name":"x-user","stringMatch":{"exact":"jason","ignoreCase":true}}`, Options{}, []value{has("JASON")}, []value{has("jasonx")}},
		{"string regex", `{"name":"x-v","stringMatch":{"safeRegex":{"regex":"v[12]"}}}`, Options{}, []value{has("v2")}, []value{has("v3"), has("v12")}},
		{"deprecated exact", `{"name":"x-v","exactMatch":"a,b"}`, Options{}, []value{has("a,b")}, []value{has("a"), missing}},
		{"deprecated prefix", `{"name":"x-v","prefixMatch":"ab"}`, Options{}, []value{has("abc")}, []value{has("cab")}},
		{"deprecated suffix", `{"name":"x-v","suffixMatch":"yz"}`, Options{}, []value{has("xyz")}, []value{has("yzx")}},
		{"deprecated contains", `{"name":"x-v","containsMatch":"mid"}`, Options{}, []value{has("amidb")}, []value{has("mi-d")}},
		{"deprecated safe_regex", `{"name":"x-v","safeRegexMatch":{"regex":"c.*8"}}`, Options{}, []value{has("curl/8")}, []value{has("curl/7"), has("xcurl/8")}},
		{"invert", `{"name":"x-v","stringMatch":{"exact":"no"},"invertMatch":true}`, Options{}, []value{has("yes")}, []value{has("no"), missing}}, // missing + invert: no match (Envoy)
		{"missing as empty", `{"name":"x-v","stringMatch":{"exact":""},"treatMissingHeaderAsEmpty":true}`, Options{}, []value{missing, has("")}, []value{has("a")}},
		{"missing as empty inverted", `{"name":"x-v","stringMatch":{"exact":"a"},"treatMissingHeaderAsEmpty":true,"invertMatch":true}`, Options{}, []value{missing}, []value{has("a")}},
		{"present", `{"name":"x-v","presentMatch":true}`, Options{}, []value{has(""), has("1")}, []value{missing}},
		{"absent", `{"name":"x-v","presentMatch":false}`, Options{}, []value{missing}, []value{has("1")}},
		{"present inverted", `{"name":"x-v","presentMatch":true,"invertMatch":true}`, Options{}, []value{missing}, []value{has("1")}},
		{"no specifier is present", `{"name":"x-v"}`, Options{}, []value{has("")}, []value{missing}},
		{"range", `{"name":"x-n","rangeMatch":{"start":-10,"end":10}}`, Options{}, []value{has("-10"), has("9"), has("+3")}, []value{has("10"), has("x"), has(" 5"), missing}},
		{"range trimmed", `{"name":"x-n","rangeMatch":{"start":-10,"end":10}}`, envoy, []value{has(" 5\t"), has("9")}, []value{has("10"), has("5 x")}},
		{"exact empty is empty", `{"name":"x-e","exactMatch":""}`, Options{}, []value{has("")}, []value{has("a"), missing}},
		{"exact empty is any", `{"name":"x-e","exactMatch":""}`, envoy, []value{has(""), has("a")}, []value{missing}},
		{"exact empty is any, inverted", `{"name":"x-e","exactMatch":"","invertMatch":true}`, envoy, nil, []value{has("a"), missing}},
		{"string exact empty", `{"name":"x-e","stringMatch":{"exact":""}}`, envoy, []value{has("")}, []value{has("a")}},
	}
	for _, c := range cases {
		h := mustHeader(t, c.js, c.o)
		for _, v := range c.yes {
			if !h.Match(v.v, v.present) {
				t.Errorf("%s: %+v does not match", c.name, v)
			}
		}
		for _, v := range c.no {
			if h.Match(v.v, v.present) {
				t.Errorf("%s: %+v matches", c.name, v)
			}
		}
	}
}

func TestHeaderName(t *testing.T) {
	h := mustHeader(t, `{"name":"X-User","presentMatch":true}`, Options{})
	if n := h.Name(); n != "X-User" {
		t.Errorf("Name() = %q, want the name as configured", n)
	}
}

func TestHeaderErrors(t *testing.T) {
	cases := []struct {
		name string
		h    *routev3.HeaderMatcher
		want string
	}{
		{"nil", nil, "h: missing header matcher"},
		{"no name", &routev3.HeaderMatcher{}, "h.name: empty header name"},
		{"string", &routev3.HeaderMatcher{Name: "a", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{}}, "h.string_match: missing string matcher"},
		{"regex", &routev3.HeaderMatcher{Name: "a", HeaderMatchSpecifier: &routev3.HeaderMatcher_SafeRegexMatch{}}, "h.safe_regex_match: missing regex matcher"},
	}
	for _, c := range cases {
		_, err := CompileHeader("h", c.h, Options{})
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q...", c.name, err, c.want)
		}
	}
}

func BenchmarkHeaderMatch(b *testing.B) {
	h := mustHeader(b, `{"name":":authority","stringMatch":{"suffix":".DEFAULT.svc.cluster.local","ignoreCase":true}}`, Options{})
	b.ReportAllocs()
	for b.Loop() {
		h.Match("books.default.svc.cluster.local", true)
	}
}
