package matcher

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/strait-mesh/strait/proxy/xdsfield"
	matcherv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/matcher/v3"
)

type kind uint8

const (
	kindExact kind = iota
	kindPrefix
	kindSuffix
	kindContains
	kindRegex
	// kindLower+k: ignore_case with Options.FoldUnicode; s, lower-cased, matches the lower-cased
	// input as kind k.
	kindLower
)

// String is a compiled envoy.type.matcher.v3.StringMatcher. The zero value matches only "".
type String struct {
	kind kind
	fold bool // ignore_case, ASCII folding: s is in lower case
	s    string
	re   *regexp.Regexp
}

// CompileString compiles m. field names m in errors. An empty prefix, suffix or contains is
// accepted (Envoy's protoc-gen-validate rules refuse it; users that want that run Validate).
func CompileString(field string, m *matcherv3.StringMatcher, o Options) (String, error) {
	if m == nil {
		return String{}, fmt.Errorf("%s: missing string matcher", field)
	}
	if err := xdsfield.Check(m, field, "exact", "prefix", "suffix", "contains", "safe_regex", "ignore_case"); err != nil {
		return String{}, err
	}
	var sm String
	switch p := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		sm.kind, sm.s = kindExact, p.Exact
	case *matcherv3.StringMatcher_Prefix:
		sm.kind, sm.s = kindPrefix, p.Prefix
	case *matcherv3.StringMatcher_Suffix:
		sm.kind, sm.s = kindSuffix, p.Suffix
	case *matcherv3.StringMatcher_Contains:
		sm.kind, sm.s = kindContains, p.Contains
	case *matcherv3.StringMatcher_SafeRegex:
		if m.GetIgnoreCase() && !o.IgnoreCaseRegex {
			return String{}, fmt.Errorf("%s.ignore_case: has no effect with safe_regex (Envoy rejects it)", field)
		}
		re, err := Regex(field+".safe_regex", p.SafeRegex, o)
		if err != nil {
			return String{}, err
		}
		// ignore_case, where accepted, has no effect on a regex.
		return String{kind: kindRegex, re: re}, nil
	default:
		return String{}, fmt.Errorf("%s: no match_pattern set", field)
	}
	switch {
	case !m.GetIgnoreCase():
	case o.FoldUnicode:
		sm.kind, sm.s = kindLower+sm.kind, strings.ToLower(sm.s)
	default:
		sm.fold, sm.s = true, LowerASCII(sm.s)
	}
	return sm, nil
}

// Match reports whether v matches. It does not allocate (regular expressions aside, and
// Options.FoldUnicode).
func (m *String) Match(v string) bool {
	switch m.kind {
	case kindExact:
		if m.fold {
			return equalFoldLower(v, m.s)
		}
		return v == m.s
	case kindPrefix:
		if len(v) < len(m.s) {
			return false
		}
		if m.fold {
			return equalFoldLower(v[:len(m.s)], m.s)
		}
		return v[:len(m.s)] == m.s
	case kindSuffix:
		if len(v) < len(m.s) {
			return false
		}
		if m.fold {
			return equalFoldLower(v[len(v)-len(m.s):], m.s)
		}
		return v[len(v)-len(m.s):] == m.s
	case kindContains:
		if !m.fold {
			return strings.Contains(v, m.s)
		}
		for i := 0; i+len(m.s) <= len(v); i++ {
			if equalFoldLower(v[i:i+len(m.s)], m.s) {
				return true
			}
		}
		return false
	case kindRegex:
		return m.re.MatchString(v)
	}
	if m.kind >= kindLower {
		return m.matchLower(v)
	}
	return false
}

// matchLower matches strings.ToLower(v) for kindLower, apart so that Match stays lean.
//
//go:noinline
func (m *String) matchLower(v string) bool {
	cs := String{kind: m.kind - kindLower, s: m.s}
	return cs.Match(strings.ToLower(v))
}

// Exact returns the value of an exact matcher, lower-cased as compiled when it ignores case,
// and whether m is one.
func (m *String) Exact() (string, bool) {
	return m.s, m.kind == kindExact || m.kind == kindLower+kindExact
}
