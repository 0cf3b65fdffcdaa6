package route

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"

	"github.com/strait-mesh/strait/proxy/matcher"
	"github.com/strait-mesh/strait/proxy/xdsfield"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
	typev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/v3"
)

type pathKind uint8

const (
	pathPrefix pathKind = iota
	pathExact
	pathRegex
	pathSeparated
)

// routeMatch is a compiled routev3.RouteMatch.
type routeMatch struct {
	kind          pathKind
	s             string
	re            *regexp.Regexp
	caseSensitive bool
	headers       []headerMatcher
	query         []queryMatcher
	grpc          bool
	fraction      uint32 // parts per million; 1e6 means always
	// more: grpc, headers, query or a fraction below Million is set (compileMatch): the
	// path alone does not decide the match (matchMore).
	more bool
}

// Fraction is a probability in parts per million.
type Fraction uint32

// Million is the Fraction that always samples.
const Million Fraction = 1_000_000

// Sample reports true with the fraction's probability.
func (f Fraction) Sample() bool {
	if f >= Million {
		return true
	}
	if f == 0 {
		return false
	}
	return rand.Uint32N(uint32(Million)) < uint32(f)
}

func fractionOf(p *typev3.FractionalPercent) Fraction {
	if p == nil {
		return 0
	}
	n := uint64(p.GetNumerator())
	switch p.GetDenominator() {
	case typev3.FractionalPercent_HUNDRED:
		n *= 10_000
	case typev3.FractionalPercent_TEN_THOUSAND:
		n *= 100
	}
	if n > uint64(Million) {
		n = uint64(Million)
	}
	return Fraction(n)
}

// runtimeFraction compiles a RuntimeFractionalPercent. strait-proxy has no runtime layer, so the
// runtime_key never overrides the default, as in an Envoy with no runtime entry for that key.
func runtimeFraction(field string, p *corev3.RuntimeFractionalPercent) (Fraction, error) {
	if err := xdsfield.Check(p, field, "default_value", "runtime_key"); err != nil {
		return 0, err
	}
	if err := xdsfield.Check(p.GetDefaultValue(), field+".default_value", "numerator", "denominator"); err != nil {
		return 0, err
	}
	return fractionOf(p.GetDefaultValue()), nil
}

func compileMatch(field string, m *routev3.RouteMatch) (routeMatch, error) {
	if m == nil {
		return routeMatch{}, fmt.Errorf("%s: missing", field)
	}
	if err := xdsfield.Check(m, field, "prefix", "path", "safe_regex", "path_separated_prefix",
		"case_sensitive", "runtime_fraction", "headers", "query_parameters", "grpc"); err != nil {
		return routeMatch{}, err
	}
	rm := routeMatch{caseSensitive: true, fraction: uint32(Million)}
	if cs := m.GetCaseSensitive(); cs != nil {
		rm.caseSensitive = cs.GetValue()
	}
	switch p := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		rm.kind, rm.s = pathPrefix, p.Prefix
	case *routev3.RouteMatch_Path:
		rm.kind, rm.s = pathExact, p.Path
	case *routev3.RouteMatch_PathSeparatedPrefix:
		if strings.ContainsAny(p.PathSeparatedPrefix, "?#") || strings.HasSuffix(p.PathSeparatedPrefix, "/") {
			return routeMatch{}, fmt.Errorf("%s.path_separated_prefix: %q must not end in / or contain ? or #", field, p.PathSeparatedPrefix)
		}
		rm.kind, rm.s = pathSeparated, p.PathSeparatedPrefix
	case *routev3.RouteMatch_SafeRegex:
		re, err := matcher.Regex(field+".safe_regex", p.SafeRegex, matchOptions)
		if err != nil {
			return routeMatch{}, err
		}
		rm.kind, rm.re = pathRegex, re
	default:
		return routeMatch{}, fmt.Errorf("%s: no path_specifier set", field)
	}
	var err error
	if rm.headers, err = compileHeaderMatchers(field+".headers", m.GetHeaders()); err != nil {
		return routeMatch{}, err
	}
	if rm.query, err = compileQueryMatchers(field+".query_parameters", m.GetQueryParameters()); err != nil {
		return routeMatch{}, err
	}
	if g := m.GetGrpc(); g != nil {
		if err := xdsfield.Check(g, field+".grpc"); err != nil {
			return routeMatch{}, err
		}
		rm.grpc = true
	}
	if rf := m.GetRuntimeFraction(); rf != nil {
		f, err := runtimeFraction(field+".runtime_fraction", rf)
		if err != nil {
			return routeMatch{}, err
		}
		rm.fraction = uint32(f)
	}
	rm.more = rm.grpc || len(rm.headers) > 0 || len(rm.query) > 0 || rm.fraction < uint32(Million)
	return rm, nil
}

// IsGRPC reports whether r carries a gRPC content type.
func IsGRPC(r Request) bool {
	if v, ok := r.(headerBytes); ok {
		ct, _ := v.HeaderBytes("Content-Type")
		return IsGRPCContentType(ct)
	}
	return strings.HasPrefix(firstValue(r, "Content-Type"), grpcContentType)
}

const grpcContentType = "application/grpc"

// IsGRPCContentType reports whether the Content-Type value ct is gRPC's (IsGRPC), for a
// caller that has the value at hand.
func IsGRPCContentType(ct []byte) bool {
	return len(ct) >= len(grpcContentType) && string(ct[:len(grpcContentType)]) == grpcContentType
}

func hasPrefix(s, p string, cs bool) bool {
	if len(s) < len(p) {
		return false
	}
	if cs {
		return s[:len(p)] == p
	}
	return matcher.EqualFoldASCII(s[:len(p)], p)
}

func stripQuery(path string) (string, string) {
	// A byte loop: strings.IndexAny looks for each of the two bytes in turn (~350
	// instructions for a short path).
	i := 0
	for i < len(path) && path[i] != '?' && path[i] != '#' {
		i++
	}
	if i < len(path) {
		q := ""
		if path[i] == '?' {
			q = path[i+1:]
			if j := strings.IndexByte(q, '#'); j >= 0 {
				q = q[:j]
			}
		}
		return path[:i], q
	}
	return path, ""
}

func (m *routeMatch) match(r Request, path string) bool {
	// The prefix is matched on the whole path: for it the query is split off only for the
	// query matchers.
	var q string
	switch m.kind {
	case pathPrefix:
		if !hasPrefix(path, m.s, m.caseSensitive) {
			return false
		}
		if len(m.query) > 0 {
			_, q = stripQuery(path)
		}
	case pathExact:
		var p string
		p, q = stripQuery(path)
		if len(p) != len(m.s) || !hasPrefix(p, m.s, m.caseSensitive) {
			return false
		}
	case pathSeparated:
		var p string
		p, q = stripQuery(path)
		if !hasPrefix(p, m.s, m.caseSensitive) || len(p) > len(m.s) && p[len(m.s)] != '/' {
			return false
		}
	case pathRegex:
		var p string
		p, q = stripQuery(path)
		if !m.re.MatchString(p) {
			return false
		}
	}
	if m.more {
		return m.matchMore(r, q)
	}
	return true // most routes match on the path alone
}

// matchMore is match past the path: gRPC, header and query parameter matchers and the runtime
// fraction, with q the path's query. Out of match's common path: a route whose match is its
// path alone (more unset) needs none of it.
//
//go:noinline
func (m *routeMatch) matchMore(r Request, q string) bool {
	if m.grpc && !IsGRPC(r) {
		return false
	}
	for i := range m.headers {
		if !m.headers[i].match(r) {
			return false
		}
	}
	for i := range m.query {
		if !m.query[i].match(q) {
			return false
		}
	}
	return m.fraction >= uint32(Million) || Fraction(m.fraction).Sample()
}
