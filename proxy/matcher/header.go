package matcher

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/strait-mesh/strait/proxy/xdsfield"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
)

type headerKind uint8

const (
	headerString  headerKind = iota // a string matcher on the value
	headerPresent                   // present_match (or no specifier)
	headerRange                     // range_match
	headerAny                       // exact_match "" with Options.EmptyExactMatchesAny
)

// Header is a compiled envoy.config.route.v3.HeaderMatcher with the semantics of Envoy's
// HeaderUtility. Finding the header's value is the user's: Match takes it, repeated headers
// joined with "," as Envoy does.
type Header struct {
	name         string
	kind         headerKind
	sm           String
	present      bool
	start, end   int64
	invert       bool
	missingEmpty bool
	trimRange    bool
}

// CompileHeader compiles h. field names h in errors.
func CompileHeader(field string, h *routev3.HeaderMatcher, o Options) (Header, error) {
	if h == nil {
		return Header{}, fmt.Errorf("%s: missing header matcher", field)
	}
	if err := xdsfield.Check(h, field, "name", "invert_match", "treat_missing_header_as_empty",
		"exact_match", "safe_regex_match", "range_match", "present_match", "prefix_match",
		"suffix_match", "contains_match", "string_match"); err != nil {
		return Header{}, err
	}
	if h.GetName() == "" {
		return Header{}, fmt.Errorf("%s.name: empty header name", field)
	}
	hm := Header{name: h.GetName(), invert: h.GetInvertMatch(), missingEmpty: h.GetTreatMissingHeaderAsEmpty(), trimRange: o.RangeTrimSpace}
	switch s := h.GetHeaderMatchSpecifier().(type) {
	case *routev3.HeaderMatcher_ExactMatch:
		if s.ExactMatch == "" && o.EmptyExactMatchesAny {
			hm.kind = headerAny
		} else {
			hm.sm = String{kind: kindExact, s: s.ExactMatch}
		}
	case *routev3.HeaderMatcher_PrefixMatch:
		hm.sm = String{kind: kindPrefix, s: s.PrefixMatch}
	case *routev3.HeaderMatcher_SuffixMatch:
		hm.sm = String{kind: kindSuffix, s: s.SuffixMatch}
	case *routev3.HeaderMatcher_ContainsMatch:
		hm.sm = String{kind: kindContains, s: s.ContainsMatch}
	case *routev3.HeaderMatcher_SafeRegexMatch:
		re, err := Regex(field+".safe_regex_match", s.SafeRegexMatch, o)
		if err != nil {
			return Header{}, err
		}
		hm.sm = String{kind: kindRegex, re: re}
	case *routev3.HeaderMatcher_StringMatch:
		sm, err := CompileString(field+".string_match", s.StringMatch, o)
		if err != nil {
			return Header{}, err
		}
		hm.sm = sm
	case *routev3.HeaderMatcher_PresentMatch:
		hm.kind, hm.present = headerPresent, s.PresentMatch
	case *routev3.HeaderMatcher_RangeMatch:
		hm.kind, hm.start, hm.end = headerRange, s.RangeMatch.GetStart(), s.RangeMatch.GetEnd()
	case nil:
		// Envoy: no specifier means "the header is present".
		hm.kind, hm.present = headerPresent, true
	}
	return hm, nil
}

// Name returns the header name as configured.
func (hm *Header) Name() string { return hm.name }

// Match evaluates the matcher on the header's value v; present reports whether the header is
// there at all. A missing header matches only a present_match whose expectation (after
// invert_match) is absence, unless treat_missing_header_as_empty makes it an empty value. It
// does not allocate (regular expressions aside).
func (hm *Header) Match(v string, present bool) bool {
	if !present {
		if !hm.missingEmpty {
			return hm.kind == headerPresent && hm.present == hm.invert
		}
		v = ""
	}
	var m bool
	switch hm.kind {
	case headerPresent:
		m = hm.present
	case headerAny:
		m = true
	case headerRange:
		if hm.trimRange {
			v = strings.Trim(v, " \t\n\v\f\r")
		}
		n, err := strconv.ParseInt(v, 10, 64)
		m = err == nil && n >= hm.start && n < hm.end
	default:
		m = hm.sm.Match(v)
	}
	return m != hm.invert
}
