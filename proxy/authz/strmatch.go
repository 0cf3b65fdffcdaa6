package authz

import "github.com/strait-mesh/strait/proxy/matcher"

// MaxRegexProgramSize bounds a compiled regular expression, in Go regexp program instructions,
// when the RegexMatcher does not set google_re2.max_program_size. Istio's bootstrap sets Envoy's
// runtime key re2.max_program_size.error_level to 32768 RE2 units, and Istio's own generated
// header regexes need far more than Envoy's default of 100; Go programs run about twice as long
// as RE2's for the same pattern, hence 65536. Go's matcher runs in linear time, so the bound
// limits memory and per-request work, not backtracking.
const MaxRegexProgramSize = 65536

// matchOptions are RBAC's choices for string, regex and header matchers, Envoy's: the deprecated
// per-regex google_re2.max_program_size is in RE2 units (about half a Go program) and capped at
// MaxRegexProgramSize; ignore_case with safe_regex is refused; a deprecated exact_match ""
// matches any value, and range_match trims whitespace around the number (absl::SimpleAtoi).
var matchOptions = matcher.Options{
	MaxProgramSize: MaxRegexProgramSize,
	ProgramSize:    func(n uint32) int { return 2 * int(min(n, MaxRegexProgramSize)) },
	MaxRegexLen:    64 << 10,

	EmptyExactMatchesAny: true,
	RangeTrimSpace:       true,
}
