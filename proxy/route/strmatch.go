package route

import (
	"fmt"
	"net/http"
	"net/textproto"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/strait-mesh/strait/proxy/xdsfield"
)

// DefaultMaxProgramSize bounds the size of compiled regular expressions (Go regexp program
// instructions) when the config does not set max_program_size. Envoy's RE2 default is 100 RE2
// instructions; Go's programs are about twice as long for the same pattern, hence 200.
const DefaultMaxProgramSize = 200

// compileRegex compiles an RE2 pattern for a full-string match (Envoy's safe_regex semantics)
// and rejects programs larger than limit instructions.
func compileRegex(field, pattern string, limit int) (*regexp.Regexp, error) {
	if limit <= 0 {
		limit = DefaultMaxProgramSize
	}
	if len(pattern) > 64<<10 {
		return nil, fmt.Errorf("%s: regex longer than 64 KiB", field)
	}
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return nil, fmt.Errorf("%s: parsing regex %q: %w", field, pattern, err)
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		return nil, fmt.Errorf("%s: compiling regex %q: %w", field, pattern, err)
	}
	if len(prog.Inst) > limit {
		return nil, fmt.Errorf("%s: regex %q program size %d exceeds limit %d", field, pattern, len(prog.Inst), limit)
	}
	return regexp.Compile(pattern)
}

func regexMatcher(field string, m *matcherv3.RegexMatcher) (*regexp.Regexp, error) {
	if m == nil {
		return nil, fmt.Errorf("%s: missing regex", field)
	}
	limit := 0
	if g := m.GetGoogleRe2(); g != nil {
		if err := xdsfield.Check(g, field+".google_re2", "max_program_size"); err != nil {
			return nil, err
		}
		limit = int(g.GetMaxProgramSize().GetValue())
	}
	if err := xdsfield.Check(m, field, "regex", "google_re2"); err != nil {
		return nil, err
	}
	return compileRegex(field, "^(?:"+m.GetRegex()+")$", limit)
}

type strKind uint8

const (
	strExact strKind = iota
	strPrefix
	strSuffix
	strContains
	strRegex
)

// StringMatch is a compiled envoy.type.matcher.v3.StringMatcher.
type StringMatch struct {
	kind       strKind
	ignoreCase bool
	s          string
	re         *regexp.Regexp
}

func compileStringMatch(field string, m *matcherv3.StringMatcher) (StringMatch, error) {
	if m == nil {
		return StringMatch{}, fmt.Errorf("%s: missing string matcher", field)
	}
	if err := xdsfield.Check(m, field, "exact", "prefix", "suffix", "contains", "safe_regex", "ignore_case"); err != nil {
		return StringMatch{}, err
	}
	sm := StringMatch{ignoreCase: m.GetIgnoreCase()}
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
		re, err := regexMatcher(field+".safe_regex", p.SafeRegex)
		if err != nil {
			return StringMatch{}, err
		}
		sm.kind, sm.re = strRegex, re
	default:
		return StringMatch{}, fmt.Errorf("%s: no match_pattern set", field)
	}
	return sm, nil
}

// Match reports whether v matches. It does not allocate.
func (m *StringMatch) Match(v string) bool {
	switch m.kind {
	case strExact:
		if m.ignoreCase {
			return asciiEqualFold(v, m.s)
		}
		return v == m.s
	case strPrefix:
		if len(v) < len(m.s) {
			return false
		}
		if m.ignoreCase {
			return asciiEqualFold(v[:len(m.s)], m.s)
		}
		return v[:len(m.s)] == m.s
	case strSuffix:
		if len(v) < len(m.s) {
			return false
		}
		if m.ignoreCase {
			return asciiEqualFold(v[len(v)-len(m.s):], m.s)
		}
		return v[len(v)-len(m.s):] == m.s
	case strContains:
		if !m.ignoreCase {
			return strings.Contains(v, m.s)
		}
		for i := 0; i+len(m.s) <= len(v); i++ {
			if asciiEqualFold(v[i:i+len(m.s)], m.s) {
				return true
			}
		}
		return false
	case strRegex:
		return m.re.MatchString(v)
	}
	return false
}

type hdrKind uint8

const (
	hdrString hdrKind = iota
	hdrPresent
	hdrRange
)

// headerMatcher is a compiled routev3.HeaderMatcher.
type headerMatcher struct {
	name         string // canonical Go header key, or a pseudo-header such as ":authority"
	kind         hdrKind
	sm           StringMatch
	present      bool
	start, end   int64
	invert       bool
	missingEmpty bool
}

func compileHeaderMatchers(field string, hs []*routev3.HeaderMatcher) ([]headerMatcher, error) {
	out := make([]headerMatcher, 0, len(hs))
	for i, h := range hs {
		hm, err := compileHeaderMatcher(fmt.Sprintf("%s[%d]", field, i), h)
		if err != nil {
			return nil, err
		}
		out = append(out, hm)
	}
	return out, nil
}

func headerKey(name string) string {
	if strings.HasPrefix(name, ":") {
		return strings.ToLower(name)
	}
	return textproto.CanonicalMIMEHeaderKey(name)
}

func compileHeaderMatcher(field string, h *routev3.HeaderMatcher) (headerMatcher, error) {
	if err := xdsfield.Check(h, field, "name", "invert_match", "treat_missing_header_as_empty",
		"exact_match", "safe_regex_match", "range_match", "present_match", "prefix_match",
		"suffix_match", "contains_match", "string_match"); err != nil {
		return headerMatcher{}, err
	}
	if h.GetName() == "" {
		return headerMatcher{}, fmt.Errorf("%s.name: empty header name", field)
	}
	hm := headerMatcher{name: headerKey(h.GetName()), invert: h.GetInvertMatch(), missingEmpty: h.GetTreatMissingHeaderAsEmpty()}
	switch s := h.GetHeaderMatchSpecifier().(type) {
	case *routev3.HeaderMatcher_ExactMatch:
		hm.sm = StringMatch{kind: strExact, s: s.ExactMatch}
	case *routev3.HeaderMatcher_PrefixMatch:
		hm.sm = StringMatch{kind: strPrefix, s: s.PrefixMatch}
	case *routev3.HeaderMatcher_SuffixMatch:
		hm.sm = StringMatch{kind: strSuffix, s: s.SuffixMatch}
	case *routev3.HeaderMatcher_ContainsMatch:
		hm.sm = StringMatch{kind: strContains, s: s.ContainsMatch}
	case *routev3.HeaderMatcher_SafeRegexMatch:
		re, err := regexMatcher(field+".safe_regex_match", s.SafeRegexMatch)
		if err != nil {
			return headerMatcher{}, err
		}
		hm.sm = StringMatch{kind: strRegex, re: re}
	case *routev3.HeaderMatcher_StringMatch:
		sm, err := compileStringMatch(field+".string_match", s.StringMatch)
		if err != nil {
			return headerMatcher{}, err
		}
		hm.sm = sm
	case *routev3.HeaderMatcher_PresentMatch:
		hm.kind, hm.present = hdrPresent, s.PresentMatch
	case *routev3.HeaderMatcher_RangeMatch:
		hm.kind, hm.start, hm.end = hdrRange, s.RangeMatch.GetStart(), s.RangeMatch.GetEnd()
	case nil:
		// Envoy: no specifier means "header is present".
		hm.kind, hm.present = hdrPresent, true
	}
	return hm, nil
}

// headerValue returns the value of header key in r, joining repeated values with "," as Envoy
// does. Pseudo-headers map to the request line. Only repeated headers allocate.
func headerValue(r *http.Request, key string) (string, bool) {
	if key[0] == ':' {
		switch key {
		case ":authority", ":host":
			return r.Host, true
		case ":method":
			return r.Method, true
		case ":path":
			return requestPath(r), true
		case ":scheme":
			return requestScheme(r), true
		}
		return "", false
	}
	vs, ok := r.Header[key]
	if !ok || len(vs) == 0 {
		if key == "Host" {
			return r.Host, true
		}
		return "", false
	}
	if len(vs) == 1 {
		return vs[0], true
	}
	return strings.Join(vs, ","), true
}

func requestPath(r *http.Request) string {
	if r.RequestURI != "" && r.RequestURI[0] == '/' {
		return r.RequestURI
	}
	return r.URL.RequestURI()
}

func requestScheme(r *http.Request) string {
	if r.URL.Scheme != "" {
		return r.URL.Scheme
	}
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

func (hm *headerMatcher) match(r *http.Request) bool {
	v, ok := headerValue(r, hm.name)
	if !ok && !hm.missingEmpty {
		return hm.kind == hdrPresent && (hm.present == hm.invert)
	}
	return hm.matchValue(v, true)
}

// matchValue evaluates the matcher against a present value v.
func (hm *headerMatcher) matchValue(v string, _ bool) bool {
	var m bool
	switch hm.kind {
	case hdrPresent:
		m = hm.present
	case hdrRange:
		n, err := strconv.ParseInt(v, 10, 64)
		m = err == nil && n >= hm.start && n < hm.end
	default:
		m = hm.sm.Match(v)
	}
	return m != hm.invert
}

// queryMatcher is a compiled routev3.QueryParameterMatcher.
type queryMatcher struct {
	name string
	sm   *StringMatch
}

func compileQueryMatchers(field string, qs []*routev3.QueryParameterMatcher) ([]queryMatcher, error) {
	out := make([]queryMatcher, 0, len(qs))
	for i, q := range qs {
		f := fmt.Sprintf("%s[%d]", field, i)
		if err := xdsfield.Check(q, f, "name", "string_match", "present_match"); err != nil {
			return nil, err
		}
		if q.GetName() == "" {
			return nil, fmt.Errorf("%s.name: empty query parameter name", f)
		}
		qm := queryMatcher{name: q.GetName()}
		switch s := q.GetQueryParameterMatchSpecifier().(type) {
		case *routev3.QueryParameterMatcher_StringMatch:
			sm, err := compileStringMatch(f+".string_match", s.StringMatch)
			if err != nil {
				return nil, err
			}
			qm.sm = &sm
		case *routev3.QueryParameterMatcher_PresentMatch:
		default:
			return nil, fmt.Errorf("%s: no query_parameter_match_specifier set", f)
		}
		out = append(out, qm)
	}
	return out, nil
}

// queryParam returns the first value of parameter name in the raw query q (URL-decoded).
// It allocates only when the value is percent- or plus-encoded.
func queryParam(q, name string) (string, bool) {
	for q != "" {
		var kv string
		if i := strings.IndexByte(q, '&'); i >= 0 {
			kv, q = q[:i], q[i+1:]
		} else {
			kv, q = q, ""
		}
		k, v, _ := strings.Cut(kv, "=")
		if k != name && !(strings.ContainsAny(k, "%+") && unescape(k) == name) {
			continue
		}
		if strings.ContainsAny(v, "%+") {
			v = unescape(v)
		}
		return v, true
	}
	return "", false
}

func unescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			b.WriteByte(' ')
		case c == '%' && i+2 < len(s) && ishex(s[i+1]) && ishex(s[i+2]):
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

func (qm *queryMatcher) match(rawQuery string) bool {
	v, ok := queryParam(rawQuery, qm.name)
	if !ok {
		return false
	}
	if qm.sm == nil {
		return true // present_match: presence is all that is asked
	}
	return qm.sm.Match(v)
}

// asciiEqualFold compares s and t ignoring ASCII case only, as Envoy's ignore_case does (no
// Unicode folding: "K" does not equal the Kelvin sign).
func asciiEqualFold(s, t string) bool {
	if len(s) != len(t) {
		return false
	}
	for i := 0; i < len(s); i++ {
		a, b := s[i], t[i]
		if a == b {
			continue
		}
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}
