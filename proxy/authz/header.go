package authz

import (
	"fmt"
	"strconv"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/strait-mesh/strait/proxy/xdsfield"
)

// hdrSource says where a header matcher reads its value from.
type hdrSource uint8

const (
	hdrRegular   hdrSource = iota // Request.Header(name)
	hdrMethod                     // :method
	hdrPath                       // :path
	hdrAuthority                  // :authority, and "host", which Envoy's header map folds into it
	hdrScheme                     // :scheme
)

type hdrKind uint8

const (
	hdrString  hdrKind = iota // a string matcher on the value
	hdrPresent                // present_match (or no specifier)
	hdrRange                  // range_match
	hdrAny                    // exact_match "": Envoy's legacy "any value"
)

// headerMatcher is a compiled envoy.config.route.v3.HeaderMatcher with the semantics of Envoy's
// HeaderUtility: repeated headers are joined with ","; a missing header matches only a
// present_match whose expectation (after invert_match) is absence, unless
// treat_missing_header_as_empty makes it an empty value.
type headerMatcher struct {
	name         string // lower case
	src          hdrSource
	kind         hdrKind
	sm           stringMatcher
	present      bool
	start, end   int64
	invert       bool
	missingEmpty bool
}

func compileHeaderMatcher(field string, h *routev3.HeaderMatcher) (*headerMatcher, error) {
	if h == nil {
		return nil, fmt.Errorf("%s: missing header matcher", field)
	}
	if err := xdsfield.Check(h, field, "name", "invert_match", "treat_missing_header_as_empty",
		"exact_match", "safe_regex_match", "range_match", "present_match", "prefix_match",
		"suffix_match", "contains_match", "string_match"); err != nil {
		return nil, err
	}
	name := asciiLower(h.GetName())
	if name == "" {
		return nil, fmt.Errorf("%s.name: empty header name", field)
	}
	hm := &headerMatcher{name: name, invert: h.GetInvertMatch(), missingEmpty: h.GetTreatMissingHeaderAsEmpty()}
	switch name {
	case ":method":
		hm.src = hdrMethod
	case ":path":
		hm.src = hdrPath
	case ":authority", "host":
		hm.src = hdrAuthority
	case ":scheme":
		hm.src = hdrScheme
	}
	switch s := h.GetHeaderMatchSpecifier().(type) {
	case *routev3.HeaderMatcher_ExactMatch:
		if s.ExactMatch == "" {
			hm.kind = hdrAny
		} else {
			hm.sm = stringMatcher{kind: strExact, s: s.ExactMatch}
		}
	case *routev3.HeaderMatcher_PrefixMatch:
		hm.sm = stringMatcher{kind: strPrefix, s: s.PrefixMatch}
	case *routev3.HeaderMatcher_SuffixMatch:
		hm.sm = stringMatcher{kind: strSuffix, s: s.SuffixMatch}
	case *routev3.HeaderMatcher_ContainsMatch:
		hm.sm = stringMatcher{kind: strContains, s: s.ContainsMatch}
	case *routev3.HeaderMatcher_SafeRegexMatch:
		re, err := compileRegexMatcher(field+".safe_regex_match", s.SafeRegexMatch)
		if err != nil {
			return nil, err
		}
		hm.sm = stringMatcher{kind: strRegex, re: re}
	case *routev3.HeaderMatcher_StringMatch:
		sm, err := compileStringMatcher(field+".string_match", s.StringMatch)
		if err != nil {
			return nil, err
		}
		hm.sm = sm
	case *routev3.HeaderMatcher_PresentMatch:
		hm.kind, hm.present = hdrPresent, s.PresentMatch
	case *routev3.HeaderMatcher_RangeMatch:
		hm.kind, hm.start, hm.end = hdrRange, s.RangeMatch.GetStart(), s.RangeMatch.GetEnd()
	case nil:
		// Envoy: no specifier means "the header is present".
		hm.kind, hm.present = hdrPresent, true
	}
	return hm, nil
}

// value returns the header's value and whether it is present. r is nil on the network filter,
// which Envoy evaluates against an empty header map. Only a repeated header allocates.
func (hm *headerMatcher) value(r Request) (string, bool) {
	if r == nil {
		return "", false
	}
	var v string
	switch hm.src {
	case hdrMethod:
		v = r.Method()
	case hdrPath:
		v = r.Path()
	case hdrAuthority:
		v = r.Host()
	case hdrScheme:
		v = r.Scheme()
	default:
		vs := r.Header(hm.name)
		switch len(vs) {
		case 0:
			return "", false
		case 1:
			return vs[0], true
		}
		return strings.Join(vs, ","), true
	}
	return v, v != ""
}

func (hm *headerMatcher) match(r Request) bool {
	v, ok := hm.value(r)
	if !ok && !hm.missingEmpty {
		return hm.kind == hdrPresent && hm.present == hm.invert
	}
	var m bool
	switch hm.kind {
	case hdrPresent:
		m = hm.present
	case hdrAny:
		m = true
	case hdrRange:
		// absl::SimpleAtoi: optional surrounding ASCII whitespace and sign.
		n, err := strconv.ParseInt(strings.Trim(v, " \t\n\v\f\r"), 10, 64)
		m = err == nil && n >= hm.start && n < hm.end
	default:
		m = hm.sm.match(v)
	}
	return m != hm.invert
}
