package matcher

import (
	"errors"
	"strings"
	"testing"

	"github.com/strait-mesh/strait/proxy/xdsfield"
	matcherv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/matcher/v3"
)

// patterns set a StringMatcher's match_pattern by kind.
var patterns = map[string]func(m *matcherv3.StringMatcher, v string){
	"exact": func(m *matcherv3.StringMatcher, v string) { m.MatchPattern = &matcherv3.StringMatcher_Exact{Exact: v} },
	"prefix": func(m *matcherv3.StringMatcher, v string) {
		m.MatchPattern = &matcherv3.StringMatcher_Prefix{Prefix: v}
	},
	"suffix": func(m *matcherv3.StringMatcher, v string) {
		m.MatchPattern = &matcherv3.StringMatcher_Suffix{Suffix: v}
	},
	"contains": func(m *matcherv3.StringMatcher, v string) {
		m.MatchPattern = &matcherv3.StringMatcher_Contains{Contains: v}
	},
	"regex": func(m *matcherv3.StringMatcher, v string) {
		m.MatchPattern = &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: v}}
	},
}

// sm builds a StringMatcher of kind (a key of patterns). Any bytes go: no JSON on the way.
func sm(kind, v string, ignoreCase bool) *matcherv3.StringMatcher {
	m := &matcherv3.StringMatcher{IgnoreCase: ignoreCase}
	patterns[kind](m, v)
	return m
}

func mustString(t testing.TB, m *matcherv3.StringMatcher, o Options) String {
	t.Helper()
	s, err := CompileString("m", m, o)
	if err != nil {
		t.Fatalf("CompileString: %v", err)
	}
	return s
}

func TestStringMatch(t *testing.T) {
	cases := []struct {
		m    *matcherv3.StringMatcher
		o    Options
		yes  []string
		no   []string
		name string
	}{
		{name: "exact", m: sm("exact", "jason", false), yes: []string{"jason"}, no: []string{"Jason", "jasonx", ""}},
		{name: "exact ignore_case", m: sm("exact", "jason", true), yes: []string{"JASON", "jAsOn"}, no: []string{"jasonx"}},
		{name: "exact empty", m: sm("exact", "", false), yes: []string{""}, no: []string{"a"}},
		{name: "prefix", m: sm("prefix", "ab", false), yes: []string{"ab", "abc"}, no: []string{"cab", "a", "Ab"}},
		{name: "prefix ignore_case", m: sm("prefix", "BOOKS.", true), yes: []string{"books.default"}, no: []string{"book"}},
		{name: "suffix", m: sm("suffix", "/sa/x", false), yes: []string{"spiffe://td/ns/n/sa/x"}, no: []string{"/sa/xy", "x"}},
		{name: "suffix ignore_case", m: sm("suffix", "yz", true), yes: []string{"xYZ"}, no: []string{"yzx"}},
		{name: "contains", m: sm("contains", "/ns/n/", false), yes: []string{"spiffe://td/ns/n/sa/x"}, no: []string{"spiffe://td/ns/m/sa/x"}},
		{name: "contains ignore_case", m: sm("contains", "mid", true), yes: []string{"aMIDb", "MID"}, no: []string{"mi-d", "mi"}},
		{name: "empty contains", m: sm("contains", "", false), yes: []string{"", "x"}},
		{name: "regex is anchored", m: sm("regex", "v[12]", false), yes: []string{"v1", "v2"}, no: []string{"v3", "v12", "xv1"}},
		{name: "regex alternation is anchored", m: sm("regex", "a|b", false), yes: []string{"a", "b"}, no: []string{"ab", "xb"}},
		{name: "regex ignore_case accepted, no effect", m: sm("regex", "a", true), o: Options{IgnoreCaseRegex: true}, yes: []string{"a"}, no: []string{"A"}},
		// Envoy folds ASCII only: the Kelvin sign is not "k".
		{name: "ignore_case is ASCII only", m: sm("exact", "k", true), yes: []string{"K"}, no: []string{"\u212a"}},
		{name: "ignore_case ASCII pattern", m: sm("exact", "\u212a", true), yes: []string{"\u212a"}, no: []string{"k", "K"}},
		// FoldUnicode lower-cases with strings.ToLower on both sides.
		{name: "FoldUnicode", m: sm("exact", "k", true), o: Options{FoldUnicode: true}, yes: []string{"K", "\u212a"}},
		{name: "FoldUnicode pattern", m: sm("prefix", "\u212aA", true), o: Options{FoldUnicode: true}, yes: []string{"ka-x", "KA"}, no: []string{"k"}},
		{name: "FoldUnicode case-sensitive", m: sm("exact", "k", false), o: Options{FoldUnicode: true}, yes: []string{"k"}, no: []string{"K"}},
	}
	for _, c := range cases {
		m := mustString(t, c.m, c.o)
		for _, v := range c.yes {
			if !m.Match(v) {
				t.Errorf("%s: %q does not match", c.name, v)
			}
		}
		for _, v := range c.no {
			if m.Match(v) {
				t.Errorf("%s: %q matches", c.name, v)
			}
		}
	}
	var zero String
	if !zero.Match("") || zero.Match("a") {
		t.Error("the zero String must match only the empty string")
	}
}

func TestStringExact(t *testing.T) {
	m := mustString(t, sm("exact", "A.Example.com", true), Options{})
	if v, ok := m.Exact(); !ok || v != "a.example.com" {
		t.Errorf("Exact() = %q, %v", v, ok)
	}
	m = mustString(t, sm("prefix", "a", false), Options{})
	if _, ok := m.Exact(); ok {
		t.Error("a prefix matcher is not exact")
	}
}

func TestStringErrors(t *testing.T) {
	withUnknown := sm("exact", "a", false)
	withUnknown.ProtoReflect().SetUnknown([]byte{0xb8, 0x3e, 0x01})
	cases := []struct {
		name string
		m    *matcherv3.StringMatcher
		o    Options
		want string // the start of the error
	}{
		{"nil", nil, Options{}, "m: missing string matcher"},
		{"no pattern", &matcherv3.StringMatcher{}, Options{}, "m: no match_pattern set"},
		{"unknown field", withUnknown, Options{}, "m.<unknown field>: not supported"},
		{"ignore_case regex", sm("regex", "a", true), Options{}, "m.ignore_case: has no effect with safe_regex"},
		{"bad regex", sm("regex", "(", false), Options{}, `m.safe_regex.regex: parsing regex "("`},
		{"bad regex, limited", sm("regex", "(", false), Options{MaxProgramSize: 100}, `m.safe_regex.regex: parsing regex "("`},
		{"nil regex", &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{}}, Options{}, "m.safe_regex: missing regex matcher"},
	}
	for _, c := range cases {
		_, err := CompileString("m", c.m, c.o)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q...", c.name, err, c.want)
		}
	}
	var ue *xdsfield.UnsupportedError
	if _, err := CompileString("m", withUnknown, Options{}); !errors.As(err, &ue) {
		t.Errorf("unknown field: %T, want *xdsfield.UnsupportedError", err)
	}
}

// TestMatchDoesNotAllocate: string and header matching run per request.
func TestMatchDoesNotAllocate(t *testing.T) {
	var ms []String
	for _, kind := range []string{"exact", "prefix", "suffix", "contains"} {
		for _, ic := range []bool{false, true} {
			ms = append(ms, mustString(t, sm(kind, "Books", ic), Options{}))
		}
	}
	h := mustHeader(t, `{"name":"x-n","rangeMatch":{"start":1,"end":10}}`, Options{RangeTrimSpace: true})
	if n := testing.AllocsPerRun(100, func() {
		for i := range ms {
			ms[i].Match("the BOOKS shelf")
		}
		h.Match(" 5 ", true)
	}); n != 0 {
		t.Errorf("%v allocations per run, want 0", n)
	}
}

// refMatch is the reference a string matcher of kind is checked against.
func refMatch(kind, pattern, value string) bool {
	switch kind {
	case "exact":
		return value == pattern
	case "prefix":
		return strings.HasPrefix(value, pattern)
	case "suffix":
		return strings.HasSuffix(value, pattern)
	case "contains":
		return strings.Contains(value, pattern)
	}
	panic("unknown kind " + kind)
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// FuzzString checks the allocation-free case-insensitive matchers against a reference written
// with strings.ToLower: ASCII folding (Envoy's) by default, Unicode with FoldUnicode.
func FuzzString(f *testing.F) {
	f.Add("abc", "xxABCxx")
	f.Add("", "")
	f.Add("ß", "SS")
	f.Add("K", "\u212a") // Kelvin sign folds to k, but not in ASCII
	f.Add("\u0130", "i\u0307")
	f.Fuzz(func(t *testing.T, pattern, value string) {
		for _, kind := range []string{"exact", "prefix", "suffix", "contains"} {
			m := mustString(t, sm(kind, pattern, false), Options{})
			if got, want := m.Match(value), refMatch(kind, pattern, value); got != want {
				t.Fatalf("%s %q in %q: got %v want %v", kind, pattern, value, got, want)
			}
			// Case-insensitive matching must agree with ASCII lower-casing (Envoy folds ASCII only).
			mi := mustString(t, sm(kind, pattern, true), Options{})
			if got, want := mi.Match(value), refMatch(kind, asciiLower(pattern), asciiLower(value)); got != want {
				t.Fatalf("ignore_case %s %q in %q: got %v want %v", kind, pattern, value, got, want)
			}
			mu := mustString(t, sm(kind, pattern, true), Options{FoldUnicode: true})
			if got, want := mu.Match(value), refMatch(kind, strings.ToLower(pattern), strings.ToLower(value)); got != want {
				t.Fatalf("FoldUnicode %s %q in %q: got %v want %v", kind, pattern, value, got, want)
			}
		}
		if LowerASCII(value) != asciiLower(value) {
			t.Fatalf("LowerASCII(%q) = %q", value, LowerASCII(value))
		}
		if got, want := EqualFoldASCII(pattern, value), asciiLower(pattern) == asciiLower(value); got != want {
			t.Fatalf("EqualFoldASCII(%q, %q) = %v", pattern, value, got)
		}
	})
}

func BenchmarkStringMatch(b *testing.B) {
	for _, c := range []struct {
		name string
		m    *matcherv3.StringMatcher
	}{
		{"exact", sm("exact", "spiffe://cluster.local/ns/default/sa/client-099", false)},
		{"prefix-ignore-case", sm("prefix", "SPIFFE://cluster.local/ns/team-099/", true)},
		{"contains-ignore-case", sm("contains", "/NS/DEFAULT/", true)},
	} {
		b.Run(c.name, func(b *testing.B) {
			m := mustString(b, c.m, Options{})
			b.ReportAllocs()
			for b.Loop() {
				m.Match("spiffe://cluster.local/ns/default/sa/client-099")
			}
		})
	}
}
