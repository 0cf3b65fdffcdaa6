package route

import (
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/strait-mesh/strait/proxy/xdsfield"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
)

type hashKind uint8

const (
	hashHeader hashKind = iota
	hashCookie
	hashSourceIP
	hashQuery
)

type hashPolicy struct {
	kind     hashKind
	name     string
	re       *regexp.Regexp
	subst    string
	terminal bool
	ttl      time.Duration
	hasTTL   bool
	cookie   string // Set-Cookie suffix (attributes) for generated cookies
}

func compileHash(field string, hs []*routev3.RouteAction_HashPolicy) ([]hashPolicy, error) {
	var out []hashPolicy
	for i, h := range hs {
		f := fmt.Sprintf("%s[%d]", field, i)
		if err := xdsfield.Check(h, f, "header", "cookie", "connection_properties", "query_parameter", "terminal"); err != nil {
			return nil, err
		}
		hp := hashPolicy{terminal: h.GetTerminal()}
		switch p := h.GetPolicySpecifier().(type) {
		case *routev3.RouteAction_HashPolicy_Header_:
			if err := xdsfield.Check(p.Header, f+".header", "header_name", "regex_rewrite"); err != nil {
				return nil, err
			}
			if p.Header.GetHeaderName() == "" {
				return nil, fmt.Errorf("%s.header.header_name: empty", f)
			}
			hp.kind, hp.name = hashHeader, headerKey(p.Header.GetHeaderName())
			if rr := p.Header.GetRegexRewrite(); rr != nil {
				var err error
				if hp.re, hp.subst, err = compileSubst(f+".header.regex_rewrite", rr); err != nil {
					return nil, err
				}
			}
		case *routev3.RouteAction_HashPolicy_Cookie_:
			c := p.Cookie
			if err := xdsfield.Check(c, f+".cookie", "name", "ttl", "path", "attributes"); err != nil {
				return nil, err
			}
			if c.GetName() == "" {
				return nil, fmt.Errorf("%s.cookie.name: empty", f)
			}
			hp.kind, hp.name = hashCookie, c.GetName()
			if c.GetTtl() != nil {
				hp.hasTTL, hp.ttl = true, c.GetTtl().AsDuration()
				var b strings.Builder
				if hp.ttl > 0 {
					fmt.Fprintf(&b, "; Max-Age=%d", int64(hp.ttl/time.Second))
				}
				if c.GetPath() != "" {
					fmt.Fprintf(&b, "; Path=%s", c.GetPath())
				}
				for _, a := range c.GetAttributes() {
					if a.GetValue() == "" {
						fmt.Fprintf(&b, "; %s", a.GetName())
					} else {
						fmt.Fprintf(&b, "; %s=%s", a.GetName(), a.GetValue())
					}
				}
				b.WriteString("; HttpOnly")
				hp.cookie = b.String()
			}
		case *routev3.RouteAction_HashPolicy_ConnectionProperties_:
			if err := xdsfield.Check(p.ConnectionProperties, f+".connection_properties", "source_ip"); err != nil {
				return nil, err
			}
			if !p.ConnectionProperties.GetSourceIp() {
				continue
			}
			hp.kind = hashSourceIP
		case *routev3.RouteAction_HashPolicy_QueryParameter_:
			if err := xdsfield.Check(p.QueryParameter, f+".query_parameter", "name"); err != nil {
				return nil, err
			}
			hp.kind, hp.name = hashQuery, p.QueryParameter.GetName()
		default:
			return nil, fmt.Errorf("%s: no policy_specifier set", f)
		}
		out = append(out, hp)
	}
	return out, nil
}

// fnv64 is FNV-1a: deterministic across proxies (so every client proxy maps a key to the same
// ring position) and allocation-free.
func fnv64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// cookieValue finds cookie name in the Cookie headers of r without allocating. The value may
// be lent (headerLender): the caller hashes it and keeps nothing of it.
func cookieValue(r Request, name string) (string, bool) {
	if l, ok := r.(headerLender); ok {
		for line, i := l.LendHeaderField("Cookie", 0); i >= 0; line, i = l.LendHeaderField("Cookie", i+1) {
			if v, ok := cookieIn(line, name); ok {
				return v, true
			}
		}
		return "", false
	}
	for _, line := range r.HeaderValues("Cookie") {
		if v, ok := cookieIn(line, name); ok {
			return v, true
		}
	}
	return "", false
}

// cookieIn finds cookie name in one Cookie field's value.
func cookieIn(line, name string) (string, bool) {
	for line != "" {
		var part string
		if i := strings.IndexByte(line, ';'); i >= 0 {
			part, line = line[:i], line[i+1:]
		} else {
			part, line = line, ""
		}
		part = strings.TrimSpace(part)
		k, v, ok := strings.Cut(part, "=")
		if ok && k == name {
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v, true
		}
	}
	return "", false
}

// HasHashPolicy reports whether the route hashes requests.
func (rt *Route) HasHashPolicy() bool { return len(rt.hash) > 0 }

// Hash computes the request hash from the route's hash policies, combining several as Envoy
// does (rotate left by one, then xor). ok is false when no policy produced a value. setCookie,
// when non-empty, is a Set-Cookie value l7 must add to the response: a cookie policy with a ttl
// generated the cookie the client did not send.
func (rt *Route) Hash(r Request, info *RequestInfo) (h uint64, ok bool, setCookie string) {
	for i := range rt.hash {
		p := &rt.hash[i]
		var v uint64
		var got bool
		switch p.kind {
		case hashHeader:
			s, present := lentHeaderValue(r, p.name)
			if present {
				if p.re != nil {
					s = p.re.ReplaceAllString(s, p.subst)
				}
				v, got = fnv64(s), true
			}
		case hashCookie:
			s, present := cookieValue(r, p.name)
			switch {
			case present:
				v, got = fnv64(s), true
			case p.hasTTL:
				var raw [8]byte
				n := rand.Uint64()
				for j := range raw {
					raw[j] = byte(n >> (8 * j))
				}
				s = hex.EncodeToString(raw[:])
				v, got = fnv64(s), true
				setCookie = p.name + "=\"" + s + "\"" + p.cookie
			}
		case hashSourceIP:
			if info != nil && info.Remote.IsValid() {
				a := info.Remote.Addr().As16()
				v, got = fnv64(string(a[:])), true
			}
		case hashQuery:
			_, q := stripQuery(r.Path())
			if s, present := queryParam(q, p.name); present {
				v, got = fnv64(s), true
			}
		}
		if got {
			if ok {
				h = (h<<1 | h>>63) ^ v
			} else {
				h = v
			}
			ok = true
			if p.terminal {
				break
			}
		}
	}
	return h, ok, setCookie
}

// Mirror is a compiled request mirror policy: a copy of the request is sent, fire and forget,
// to Cluster (or the cluster named by ClusterHeader) with "-shadow" appended to the host.
type Mirror struct {
	// Cluster is the shadow cluster.
	Cluster string
	// ClusterHeader names the request header holding the shadow cluster.
	ClusterHeader string
	// Fraction is the share of requests mirrored.
	Fraction Fraction
	// DisableShadowSuffix keeps the Host unchanged.
	DisableShadowSuffix bool
	// HostRewrite replaces the Host of the mirrored request when non-empty.
	HostRewrite string
}

// ClusterName returns the shadow cluster for r ("" when the header is missing).
func (m *Mirror) ClusterName(r Request) string {
	if m.ClusterHeader != "" {
		v, _ := headerValue(r, m.ClusterHeader)
		return v
	}
	return m.Cluster
}

// ShadowHost returns the Host for the mirrored request.
func (m *Mirror) ShadowHost(host string) string {
	if m.HostRewrite != "" {
		return m.HostRewrite
	}
	if m.DisableShadowSuffix {
		return host
	}
	h, p, ok := splitHostPort(host)
	if !ok {
		return host + "-shadow"
	}
	return h + "-shadow:" + p
}

func compileMirrors(field string, ms []*routev3.RouteAction_RequestMirrorPolicy) ([]Mirror, error) {
	var out []Mirror
	for i, m := range ms {
		f := fmt.Sprintf("%s[%d]", field, i)
		if err := xdsfield.Check(m, f, "cluster", "cluster_header", "runtime_fraction",
			"disable_shadow_host_suffix_append", "host_rewrite_literal"); err != nil {
			return nil, err
		}
		mm := Mirror{Cluster: m.GetCluster(), DisableShadowSuffix: m.GetDisableShadowHostSuffixAppend(),
			HostRewrite: m.GetHostRewriteLiteral(), Fraction: Million}
		if m.GetClusterHeader() != "" {
			mm.ClusterHeader = headerKey(m.GetClusterHeader())
		}
		if mm.Cluster == "" && mm.ClusterHeader == "" {
			return nil, fmt.Errorf("%s: neither cluster nor cluster_header set", f)
		}
		if rf := m.GetRuntimeFraction(); rf != nil {
			var err error
			if mm.Fraction, err = runtimeFraction(f+".runtime_fraction", rf); err != nil {
				return nil, err
			}
		}
		out = append(out, mm)
	}
	return out, nil
}

// grpcTimeoutUnits are the grpc-timeout units by their letter.
var grpcTimeoutUnits = map[byte]time.Duration{
	'H': time.Hour, 'M': time.Minute, 'S': time.Second,
	'm': time.Millisecond, 'u': time.Microsecond, 'n': time.Nanosecond,
}

// ParseGRPCTimeout parses a grpc-timeout header value ("100m", "5S"...).
func ParseGRPCTimeout(v string) (time.Duration, bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	n, err := strconv.ParseInt(v[:len(v)-1], 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	unit, ok := grpcTimeoutUnits[v[len(v)-1]]
	if !ok {
		return 0, false
	}
	if n > int64(math.MaxInt64/unit) {
		return math.MaxInt64, true // 99999999H overflows time.Duration: treat as unbounded
	}
	return time.Duration(n) * unit, true
}
