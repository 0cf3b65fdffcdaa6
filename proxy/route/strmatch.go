package route

import (
	"fmt"
	"net/textproto"
	"strings"

	"github.com/strait-mesh/strait/proxy/matcher"
	"github.com/strait-mesh/strait/proxy/xdsfield"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
)

// DefaultMaxProgramSize bounds the size of compiled regular expressions (Go regexp program
// instructions) when the config does not set max_program_size. Envoy's RE2 default is 100 RE2
// instructions; Go's programs are about twice as long for the same pattern, hence 200.
const DefaultMaxProgramSize = 200

// matchOptions are the route table's choices for string, regex and header matchers. A
// google_re2.max_program_size is taken as Go instructions (0 as unset); ignore_case with
// safe_regex is accepted and has no effect; a deprecated exact_match "" matches only an empty
// value, and range_match parses the value as it is, without trimming whitespace.
var matchOptions = matcher.Options{
	MaxProgramSize: DefaultMaxProgramSize,
	ProgramSize: func(n uint32) int {
		if n == 0 {
			return DefaultMaxProgramSize
		}
		return int(n)
	},
	MaxRegexLen:     64 << 10,
	IgnoreCaseRegex: true,
}

// headerMatcher is a compiled routev3.HeaderMatcher with the request's header it reads.
type headerMatcher struct {
	name string // canonical Go header key, or a pseudo-header such as ":authority"
	matcher.Header
}

func compileHeaderMatchers(field string, hs []*routev3.HeaderMatcher) ([]headerMatcher, error) {
	out := make([]headerMatcher, 0, len(hs))
	for i, h := range hs {
		hm, err := matcher.CompileHeader(fmt.Sprintf("%s[%d]", field, i), h, matchOptions)
		if err != nil {
			return nil, err
		}
		out = append(out, headerMatcher{name: headerKey(hm.Name()), Header: hm})
	}
	return out, nil
}

func headerKey(name string) string {
	if strings.HasPrefix(name, ":") {
		return strings.ToLower(name)
	}
	return textproto.CanonicalMIMEHeaderKey(name)
}

// headerValue returns the value of header key in r, joining repeated values with "," as Envoy
// does. Pseudo-headers map to the request line. Only repeated headers allocate.
func headerValue(r Request, key string) (string, bool) {
	if key[0] == ':' {
		switch key {
		case ":authority", ":host":
			return r.Authority(), true
		case ":method":
			return r.Method(), true
		case ":path":
			return r.Path(), true
		case ":scheme":
			return r.Scheme(), true
		}
		return "", false
	}
	vs := r.HeaderValues(key)
	if len(vs) == 0 {
		if key == "Host" {
			return r.Authority(), true
		}
		return "", false
	}
	if len(vs) == 1 {
		return vs[0], true
	}
	return strings.Join(vs, ","), true
}

// lentHeaderValue is headerValue for a caller that keeps nothing of the value (a match, a
// hash, a copy into a builder): one field's value is lent by a headerLender, not copied.
func lentHeaderValue(r Request, key string) (string, bool) {
	if l, ok := r.(headerLender); ok && key[0] != ':' {
		v, i := l.LendHeaderField(key, 0)
		if i < 0 && key != "Host" {
			return "", false
		}
		if i >= 0 {
			if _, j := l.LendHeaderField(key, i+1); j < 0 {
				return v, true
			}
		}
	}
	return headerValue(r, key)
}

func (hm *headerMatcher) match(r Request) bool {
	v, ok := lentHeaderValue(r, hm.name)
	return hm.Match(v, ok)
}

// queryMatcher is a compiled routev3.QueryParameterMatcher.
type queryMatcher struct {
	name string
	sm   *matcher.String
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
			sm, err := matcher.CompileString(f+".string_match", s.StringMatch, matchOptions)
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
