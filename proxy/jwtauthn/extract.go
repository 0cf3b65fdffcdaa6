package jwtauthn

import (
	"net/textproto"
	"net/url"
	"sort"
	"strings"

	jwtauthnv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/jwt_authn/v3"
)

// Where a token is looked for when a provider names no location (Envoy's defaults).
const (
	defaultHeader      = "Authorization"
	defaultValuePrefix = "Bearer "
	defaultParam       = "access_token"
)

// issuerChecker says which issuers configured a location: a token found there must carry one
// of them (Envoy's JwtIssuerChecker). A provider without issuer allows any.
type issuerChecker struct {
	all     bool
	issuers []string
}

func (c *issuerChecker) add(iss string) {
	if iss == "" {
		c.all = true
		return
	}
	for _, s := range c.issuers {
		if s == iss {
			return
		}
	}
	c.issuers = append(c.issuers, iss)
}

func (c *issuerChecker) allows(iss string) bool {
	if c.all {
		return true
	}
	for _, s := range c.issuers {
		if s == iss {
			return true
		}
	}
	return false
}

type locKind uint8

const (
	locHeader locKind = iota
	locParam
	locCookie
)

type headerLoc struct {
	name    string // canonical MIME form
	prefix  string
	sortKey string // Envoy's map key: lower-case name + prefix
	issuers issuerChecker
}

type namedLoc struct {
	name    string
	issuers issuerChecker
}

// extractor finds the tokens of one provider, or of several merged (for allow_missing and
// allow_missing_or_failed, which look everywhere any provider looks). Locations are kept in
// Envoy's order (headers by name and prefix, then query parameters, then cookies, each sorted),
// which decides the order in which several tokens are verified.
type extractor struct {
	headers  []*headerLoc
	params   []*namedLoc
	cookies  []*namedLoc
	sanitize []string // forward_payload_header and claim_to_headers names, canonical
}

// location is one token found in a request.
type location struct {
	token   string
	issuers *issuerChecker
	kind    locKind
	name    string // header (canonical) or query parameter name
}

func newExtractor(providers ...*jwtauthnv3.JwtProvider) *extractor {
	e := &extractor{}
	for _, p := range providers {
		iss := p.GetIssuer()
		for _, h := range p.GetFromHeaders() {
			e.addHeader(iss, h.GetName(), h.GetValuePrefix())
		}
		for _, name := range p.GetFromParams() {
			e.params = addNamed(e.params, iss, name)
		}
		for _, name := range p.GetFromCookies() {
			e.cookies = addNamed(e.cookies, iss, name)
		}
		if len(p.GetFromHeaders()) == 0 && len(p.GetFromParams()) == 0 && len(p.GetFromCookies()) == 0 {
			e.addHeader(iss, defaultHeader, defaultValuePrefix)
			e.params = addNamed(e.params, iss, defaultParam)
		}
		if h := p.GetForwardPayloadHeader(); h != "" {
			e.sanitize = append(e.sanitize, textproto.CanonicalMIMEHeaderKey(h))
		}
		for _, c := range p.GetClaimToHeaders() {
			e.sanitize = append(e.sanitize, textproto.CanonicalMIMEHeaderKey(c.GetHeaderName()))
		}
	}
	sort.Slice(e.headers, func(i, j int) bool { return e.headers[i].sortKey < e.headers[j].sortKey })
	sort.Slice(e.params, func(i, j int) bool { return e.params[i].name < e.params[j].name })
	sort.Slice(e.cookies, func(i, j int) bool { return e.cookies[i].name < e.cookies[j].name })
	return e
}

func (e *extractor) addHeader(iss, name, prefix string) {
	key := strings.ToLower(name) + prefix
	for _, h := range e.headers {
		if h.sortKey == key {
			h.issuers.add(iss)
			return
		}
	}
	h := &headerLoc{name: textproto.CanonicalMIMEHeaderKey(name), prefix: prefix, sortKey: key}
	h.issuers.add(iss)
	e.headers = append(e.headers, h)
}

func addNamed(list []*namedLoc, iss, name string) []*namedLoc {
	for _, l := range list {
		if l.name == name {
			l.issuers.add(iss)
			return list
		}
	}
	l := &namedLoc{name: name}
	l.issuers.add(iss)
	return append(list, l)
}

// sanitizeHeaders removes the headers the providers write on success, so that a client cannot
// pass its own values off as the filter's (Envoy's sanitizeHeaders, run before verification).
func (e *extractor) sanitizeHeaders(req Request) {
	for _, h := range e.sanitize {
		req.DelHeader(h)
	}
}

// extract appends the tokens of req to out, in location order, and returns the result. It
// does not allocate when they fit in out's capacity.
func (e *extractor) extract(req Request, out []location) []location {
	for _, h := range e.headers {
		for _, v := range req.Header(h.name) {
			if h.prefix != "" {
				// Envoy looks for the prefix anywhere in the value, case-sensitively; a value
				// without it holds no token for this location.
				pos := strings.Index(v, h.prefix)
				if pos < 0 {
					continue
				}
				v = tokenAfter(v, pos+len(h.prefix))
			}
			out = append(out, location{token: v, issuers: &h.issuers, kind: locHeader, name: h.name})
		}
	}
	if len(e.params) > 0 {
		if _, query, ok := strings.Cut(req.Path(), "?"); ok {
			for _, p := range e.params {
				if v, found := queryValue(query, p.name); found {
					out = append(out, location{token: v, issuers: &p.issuers, kind: locParam, name: p.name})
				}
			}
		}
	}
	if len(e.cookies) > 0 {
		cookies := req.Header("Cookie")
		for _, c := range e.cookies {
			if v, found := cookieValue(cookies, c.name); found {
				out = append(out, location{token: v, issuers: &c.issuers, kind: locCookie, name: c.name})
			}
		}
	}
	return out
}

// isTokenChar reports whether c is in the base64url alphabet or a dot.
func isTokenChar(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.'
}

// tokenAfter is Envoy's extractJWT: the value from the first base64url-or-dot character at or
// after offset on, or the whole value when there is none (it then fails to parse).
func tokenAfter(v string, offset int) string {
	for i := offset; i < len(v); i++ {
		if isTokenChar(v[i]) {
			return v[i:]
		}
	}
	return v
}

// queryValue returns the decoded value of the first query parameter whose decoded name is name.
func queryValue(query, name string) (string, bool) {
	for query != "" {
		var pair string
		pair, query, _ = strings.Cut(query, "&")
		k, v, _ := strings.Cut(pair, "=")
		if decodeQuery(k) != name {
			continue
		}
		return decodeQuery(v), true
	}
	return "", false
}

// decodeQuery percent-decodes a query component ('+' is a space); a malformed one is kept as is.
func decodeQuery(s string) string {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s
	}
	d, err := url.QueryUnescape(s)
	if err != nil {
		return s
	}
	return d
}

// withoutParam returns path with every query parameter whose decoded name is name removed; the
// other parameters are kept byte for byte and in order.
func withoutParam(path, name string) string {
	p, query, ok := strings.Cut(path, "?")
	if !ok {
		return path
	}
	var kept []string
	for query != "" {
		var pair string
		pair, query, _ = strings.Cut(query, "&")
		k, _, _ := strings.Cut(pair, "=")
		if decodeQuery(k) == name {
			continue
		}
		kept = append(kept, pair)
	}
	if len(kept) == 0 {
		return p
	}
	return p + "?" + strings.Join(kept, "&")
}

// cookieValue returns the value of the first cookie named name in the Cookie headers, without
// surrounding double quotes (Envoy's Http::Utility::parseCookies).
func cookieValue(headers []string, name string) (string, bool) {
	for _, h := range headers {
		for h != "" {
			var part string
			part, h, _ = strings.Cut(h, ";")
			part = strings.TrimLeft(part, " ")
			k, v, ok := strings.Cut(part, "=")
			if !ok || k != name {
				continue
			}
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v, true
		}
	}
	return "", false
}

// remove takes the token out of the request once verified, unless the provider forwards it:
// the whole header goes, a query parameter is cut from the path; a cookie stays (as in Envoy).
func (l *location) remove(req Request) {
	switch l.kind {
	case locHeader:
		req.DelHeader(l.name)
	case locParam:
		if p := req.Path(); strings.Contains(p, "?") {
			req.SetPath(withoutParam(p, l.name))
		}
	}
}
