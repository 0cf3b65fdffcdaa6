package authz

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"

	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/strait-mesh/strait/proxy/xdsfield"
)

// MaxRegexProgramSize bounds a compiled regular expression, in Go regexp program instructions,
// when the RegexMatcher does not set google_re2.max_program_size. Istio's bootstrap sets Envoy's
// runtime key re2.max_program_size.error_level to 32768 RE2 units, and Istio's own generated
// header regexes need far more than Envoy's default of 100; Go programs run about twice as long
// as RE2's for the same pattern, hence 65536. Go's matcher runs in linear time, so the bound
// limits memory and per-request work, not backtracking.
const MaxRegexProgramSize = 65536

// maxRegexLen bounds the source of a regular expression.
const maxRegexLen = 64 << 10

// compileRegex compiles an RE2 pattern for Envoy's safe_regex semantics: the whole input must
// match. limit is the largest allowed program, in Go instructions.
func compileRegex(field, pattern string, limit int) (*regexp.Regexp, error) {
	if len(pattern) > maxRegexLen {
		return nil, fmt.Errorf("%s: regex longer than %d bytes", field, maxRegexLen)
	}
	anchored := "^(?:" + pattern + ")$"
	re, err := syntax.Parse(anchored, syntax.Perl)
	if err != nil {
		return nil, fmt.Errorf("%s: parsing regex %q: %w", field, pattern, err)
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		return nil, fmt.Errorf("%s: compiling regex %q: %w", field, pattern, err)
	}
	if len(prog.Inst) > limit {
		return nil, fmt.Errorf("%s: regex %q: program size %d exceeds the limit %d", field, pattern, len(prog.Inst), limit)
	}
	return regexp.Compile(anchored)
}

// compileRegexMatcher compiles an envoy.type.matcher.v3.RegexMatcher.
func compileRegexMatcher(field string, m *matcherv3.RegexMatcher) (*regexp.Regexp, error) {
	if m == nil {
		return nil, fmt.Errorf("%s: missing regex matcher", field)
	}
	if err := xdsfield.Check(m, field, "regex", "google_re2"); err != nil {
		return nil, err
	}
	limit := MaxRegexProgramSize
	if g := m.GetGoogleRe2(); g != nil {
		if err := xdsfield.Check(g, field+".google_re2", "max_program_size"); err != nil {
			return nil, err
		}
		if n := g.GetMaxProgramSize(); n != nil {
			// The deprecated per-regex limit, in RE2 units: about half a Go program.
			limit = 2 * int(min(n.GetValue(), MaxRegexProgramSize))
		}
	}
	return compileRegex(field+".regex", m.GetRegex(), limit)
}

type strKind uint8

const (
	strExact strKind = iota
	strPrefix
	strSuffix
	strContains
	strRegex
)

// stringMatcher is a compiled envoy.type.matcher.v3.StringMatcher. The zero value matches "".
type stringMatcher struct {
	kind       strKind
	ignoreCase bool
	s          string // lower-cased when ignoreCase
	re         *regexp.Regexp
}

// compileStringMatcher compiles m. Envoy refuses ignore_case with safe_regex (it would have no
// effect) and an empty prefix, suffix or contains (protoc-gen-validate min_len 1, checked by
// Compile's validation pass).
func compileStringMatcher(field string, m *matcherv3.StringMatcher) (stringMatcher, error) {
	if m == nil {
		return stringMatcher{}, fmt.Errorf("%s: missing string matcher", field)
	}
	if err := xdsfield.Check(m, field, "exact", "prefix", "suffix", "contains", "safe_regex", "ignore_case"); err != nil {
		return stringMatcher{}, err
	}
	sm := stringMatcher{ignoreCase: m.GetIgnoreCase()}
	switch p := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		sm.kind, sm.s = strExact, p.Exact
	case *matcherv3.StringMatcher_Prefix:
		sm.kind, sm.s = strPrefix, p.Prefix
	case *matcherv3.StringMatcher_Suffix:
		sm.kind, sm.s = strSuffix, p.Suffix
	case *matcherv3.StringMatcher_Contains:
		sm.kind, sm.s = strContains, p.Contains
	case *matcherv3.StringMatcher_SafeRegex:
		if sm.ignoreCase {
			return stringMatcher{}, fmt.Errorf("%s.ignore_case: has no effect with safe_regex (Envoy rejects it)", field)
		}
		re, err := compileRegexMatcher(field+".safe_regex", p.SafeRegex)
		if err != nil {
			return stringMatcher{}, err
		}
		sm.kind, sm.re = strRegex, re
	default:
		return stringMatcher{}, fmt.Errorf("%s: no match_pattern set", field)
	}
	if sm.ignoreCase {
		sm.s = asciiLower(sm.s)
	}
	return sm, nil
}

// match reports whether v matches. It does not allocate (regular expressions aside).
func (m *stringMatcher) match(v string) bool {
	switch m.kind {
	case strExact:
		if m.ignoreCase {
			return asciiEqualFoldLower(v, m.s)
		}
		return v == m.s
	case strPrefix:
		if len(v) < len(m.s) {
			return false
		}
		if m.ignoreCase {
			return asciiEqualFoldLower(v[:len(m.s)], m.s)
		}
		return v[:len(m.s)] == m.s
	case strSuffix:
		if len(v) < len(m.s) {
			return false
		}
		if m.ignoreCase {
			return asciiEqualFoldLower(v[len(v)-len(m.s):], m.s)
		}
		return v[len(v)-len(m.s):] == m.s
	case strContains:
		if !m.ignoreCase {
			return strings.Contains(v, m.s)
		}
		for i := 0; i+len(m.s) <= len(v); i++ {
			if asciiEqualFoldLower(v[i:i+len(m.s)], m.s) {
				return true
			}
		}
		return false
	case strRegex:
		return m.re.MatchString(v)
	}
	return false
}

// asciiLower lower-cases ASCII letters only, as Envoy's ignore_case does (no Unicode folding).
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// asciiEqualFoldLower reports whether s equals lower (already ASCII lower case) ignoring ASCII
// case: "K" does not equal the Kelvin sign.
func asciiEqualFoldLower(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
