package matcher

import (
	"fmt"
	"regexp"
	"regexp/syntax"

	"github.com/strait-mesh/strait/proxy/xdsfield"
	matcherv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/matcher/v3"
)

// Options are the choices a user of the package makes. The zero value compiles regular
// expressions without limits, refuses ignore_case with safe_regex and folds ASCII only, as
// Envoy does.
type Options struct {
	// MaxProgramSize bounds a compiled regular expression, in Go regexp program instructions,
	// when the RegexMatcher sets no google_re2.max_program_size. 0: no bound.
	MaxProgramSize int
	// ProgramSize converts a google_re2.max_program_size the config sets into the bound, in Go
	// instructions (0 then admits no regex). nil: google_re2 is accepted but neither checked
	// nor applied.
	ProgramSize func(maxProgramSize uint32) int
	// MaxRegexLen bounds the length of a regex field, in bytes. 0: no bound.
	MaxRegexLen int

	// IgnoreCaseRegex accepts ignore_case together with safe_regex, where it has no effect.
	// Envoy refuses the pair.
	IgnoreCaseRegex bool
	// FoldUnicode makes ignore_case compare strings.ToLower of both sides (Unicode folding;
	// matching then allocates when the input has upper-case letters) instead of folding ASCII
	// letters only, as Envoy does.
	FoldUnicode bool

	// EmptyExactMatchesAny makes a HeaderMatcher's deprecated exact_match "" match any value,
	// as Envoy's HeaderUtility does; otherwise it matches only an empty value.
	EmptyExactMatchesAny bool
	// RangeTrimSpace lets a range_match parse a value with surrounding ASCII whitespace, as
	// Envoy's absl::SimpleAtoi does; otherwise such a value is not a number.
	RangeTrimSpace bool
}

// Regex compiles m for Envoy's safe_regex semantics: the whole input must match. field names m
// in errors.
func Regex(field string, m *matcherv3.RegexMatcher, o Options) (*regexp.Regexp, error) {
	return compileRegexMatcher(field, m, o, true)
}

// SearchRegex compiles m to match anywhere in the input, as regex_rewrite's pattern does.
func SearchRegex(field string, m *matcherv3.RegexMatcher, o Options) (*regexp.Regexp, error) {
	return compileRegexMatcher(field, m, o, false)
}

func compileRegexMatcher(field string, m *matcherv3.RegexMatcher, o Options, whole bool) (*regexp.Regexp, error) {
	if m == nil {
		return nil, fmt.Errorf("%s: missing regex matcher", field)
	}
	if err := xdsfield.Check(m, field, "regex", "google_re2"); err != nil {
		return nil, err
	}
	limit := noLimit
	if o.MaxProgramSize > 0 {
		limit = o.MaxProgramSize
	}
	if g := m.GetGoogleRe2(); g != nil && o.ProgramSize != nil {
		if err := xdsfield.Check(g, field+".google_re2", "max_program_size"); err != nil {
			return nil, err
		}
		if n := g.GetMaxProgramSize(); n != nil {
			limit = max(o.ProgramSize(n.GetValue()), 0)
		}
	}
	return compileRegex(field+".regex", m.GetRegex(), o.MaxRegexLen, limit, whole)
}

// noLimit is compileRegex's limit for "no bound on the program size".
const noLimit = -1

// compileRegex compiles pattern, anchored to the whole input when whole is set. maxLen bounds
// the pattern's length (0: none), limit the program's size in Go instructions (noLimit: none).
func compileRegex(field, pattern string, maxLen, limit int, whole bool) (*regexp.Regexp, error) {
	if maxLen > 0 && len(pattern) > maxLen {
		return nil, fmt.Errorf("%s: regex longer than %d bytes", field, maxLen)
	}
	src := pattern
	if whole {
		src = "^(?:" + pattern + ")$"
	}
	if limit != noLimit {
		re, err := syntax.Parse(src, syntax.Perl)
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
	}
	re, err := regexp.Compile(src)
	if err != nil {
		return nil, fmt.Errorf("%s: parsing regex %q: %w", field, pattern, err)
	}
	return re, nil
}
