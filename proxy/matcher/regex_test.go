package matcher

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/proxy/xdsfield"
	matcherv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/matcher/v3"
)

func re2(regex string, maxProgramSize *uint32) *matcherv3.RegexMatcher {
	m := &matcherv3.RegexMatcher{Regex: regex}
	if maxProgramSize != nil {
		m.EngineType = &matcherv3.RegexMatcher_GoogleRe2{GoogleRe2: &matcherv3.RegexMatcher_GoogleRE2{MaxProgramSize: wrapperspb.UInt32(*maxProgramSize)}}
	}
	return m
}

func ptr(n uint32) *uint32 { return &n }

func TestRegexAnchoring(t *testing.T) {
	whole, err := Regex("r", re2("/r/([a-z]+)", nil), Options{})
	if err != nil {
		t.Fatal(err)
	}
	search, err := SearchRegex("r", re2("/r/([a-z]+)", nil), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if whole.MatchString("/r/abc/x") || !whole.MatchString("/r/abc") {
		t.Error("Regex must match the whole input")
	}
	if !search.MatchString("/x/r/abc/x") {
		t.Error("SearchRegex must match anywhere")
	}
}

func TestRegexLimits(t *testing.T) {
	big := strings.Repeat("(a|b|c)", 200)
	scaled := Options{MaxProgramSize: 65536, ProgramSize: func(n uint32) int { return 2 * int(n) }}
	cases := []struct {
		name  string
		m     *matcherv3.RegexMatcher
		o     Options
		field string // "" when it compiles
		want  string
	}{
		{"no limit", re2(big, nil), Options{}, "", ""},
		{"default limit", re2(big, nil), Options{MaxProgramSize: 200}, "r.regex", "program size"},
		{"configured limit", re2(big, ptr(100000)), Options{MaxProgramSize: 200, ProgramSize: func(n uint32) int { return int(n) }}, "", ""},
		{"configured limit too small", re2("a{1000}b{1000}", ptr(100)), scaled, "r.regex", "exceeds the limit 200"},
		{"configured limit fits", re2("a{10}", ptr(100)), scaled, "", ""},
		{"configured zero admits nothing", re2("a", ptr(0)), scaled, "r.regex", "exceeds the limit 0"},
		{"google_re2 ignored without ProgramSize", re2(big, ptr(1)), Options{}, "", ""},
		{"too long", re2(strings.Repeat("a", 11), nil), Options{MaxRegexLen: 10}, "r.regex", "regex longer than 10 bytes"},
		{"long enough", re2(strings.Repeat("a", 10), nil), Options{MaxRegexLen: 10}, "", ""},
		{"bad", re2("(", nil), Options{}, "r.regex", `parsing regex "("`},
		{"nil", nil, Options{}, "r", "missing regex matcher"},
	}
	for _, c := range cases {
		_, err := Regex("r", c.m, c.o)
		switch {
		case c.field == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.field != "" && (err == nil || !strings.HasPrefix(err.Error(), c.field+": ") || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: got %v, want %s: ...%s...", c.name, err, c.field, c.want)
		}
	}
}

func TestRegexUnsupportedFields(t *testing.T) {
	m := re2("a", ptr(100))
	m.GetGoogleRe2().ProtoReflect().SetUnknown([]byte{0xb8, 0x3e, 0x01})
	var ue *xdsfield.UnsupportedError
	if _, err := Regex("r", m, Options{ProgramSize: func(n uint32) int { return int(n) }}); !errors.As(err, &ue) || ue.Field != "r.google_re2.<unknown field>" {
		t.Errorf("got %v, want an unsupported r.google_re2.<unknown field>", err)
	}
	m = re2("a", nil)
	m.ProtoReflect().SetUnknown([]byte{0xb8, 0x3e, 0x01})
	if _, err := Regex("r", m, Options{}); !errors.As(err, &ue) || ue.Field != "r.<unknown field>" {
		t.Errorf("got %v, want an unsupported r.<unknown field>", err)
	}
}
