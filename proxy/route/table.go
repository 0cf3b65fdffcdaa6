package route

import (
	"fmt"
	"sort"
	"strings"

	"github.com/strait-mesh/strait/proxy/xdsfield"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
)

// Table is a compiled RouteConfiguration.
type Table struct {
	// Name is the RouteConfiguration name.
	Name string

	exact      map[string]*VirtualHost
	suffixes   []wildGroup // longest first
	prefixes   []wildGroup // longest first
	any        *VirtualHost
	ignorePort bool

	reqOps, respOps  HeaderOps
	mostSpecificWins bool
	internalOnly     []string
}

type wildGroup struct {
	n int
	m map[string]*VirtualHost
}

// VirtualHost is a compiled routev3.VirtualHost.
type VirtualHost struct {
	// Name is the virtual host name.
	Name string
	// IncludeAttemptCount asks l7 to send x-envoy-attempt-count upstream.
	IncludeAttemptCount bool
	// IncludeAttemptCountInResponse asks l7 to add x-envoy-attempt-count to responses.
	IncludeAttemptCountInResponse bool

	routes          []*Route
	rateLimits      []rateLimitPolicy
	reqOps, respOps HeaderOps
	table           *Table
}

var rcFields = []string{"name", "virtual_hosts", "internal_only_headers", "response_headers_to_add",
	"response_headers_to_remove", "request_headers_to_add", "request_headers_to_remove",
	"most_specific_header_mutations_wins", "validate_clusters", "max_direct_response_body_size_bytes",
	"request_mirror_policies", "ignore_port_in_host_matching", "typed_per_filter_config"}

var vhFields = []string{"name", "domains", "routes", "request_headers_to_add", "request_headers_to_remove",
	"response_headers_to_add", "response_headers_to_remove", "cors", "typed_per_filter_config",
	"include_request_attempt_count", "include_attempt_count_in_response", "retry_policy",
	"request_mirror_policies", "rate_limits"}

// Compile turns rc into a Table. It validates everything the request path relies on, so matching
// never fails at run time. A nil rc yields an error.
func Compile(rc *routev3.RouteConfiguration) (*Table, error) {
	if rc == nil {
		return nil, fmt.Errorf("compiling route configuration: nil")
	}
	if err := xdsfield.Check(rc, "route_configuration", rcFields...); err != nil {
		return nil, err
	}
	if rc.GetValidateClusters().GetValue() {
		// Validation needs the cluster set, which the route compiler does not see.
		return nil, xdsfield.Unsupported("route_configuration.validate_clusters", "true")
	}
	t := &Table{
		Name:             rc.GetName(),
		exact:            map[string]*VirtualHost{},
		ignorePort:       rc.GetIgnorePortInHostMatching(),
		mostSpecificWins: rc.GetMostSpecificHeaderMutationsWins(),
	}
	var err error
	if t.reqOps, err = compileHeaderOps("route_configuration", rc.GetRequestHeadersToAdd(), rc.GetRequestHeadersToRemove()); err != nil {
		return nil, err
	}
	if t.respOps, err = compileResponseHeaderOps("route_configuration", rc.GetResponseHeadersToAdd(), rc.GetResponseHeadersToRemove()); err != nil {
		return nil, err
	}
	for _, h := range rc.GetInternalOnlyHeaders() {
		t.internalOnly = append(t.internalOnly, headerKey(h))
	}
	maxBody := 4096
	if v := rc.GetMaxDirectResponseBodySizeBytes(); v != nil {
		maxBody = int(v.GetValue())
	}
	rcFilters, err := compileFilterConfigs("route_configuration.typed_per_filter_config", rc.GetTypedPerFilterConfig())
	if err != nil {
		return nil, err
	}
	rcMirrors, err := compileMirrors("route_configuration.request_mirror_policies", rc.GetRequestMirrorPolicies())
	if err != nil {
		return nil, err
	}
	suffix := map[int]map[string]*VirtualHost{}
	prefix := map[int]map[string]*VirtualHost{}
	for i, vh := range rc.GetVirtualHosts() {
		field := fmt.Sprintf("virtual_hosts[%d]", i)
		v, err := compileVirtualHost(field, vh, t, compileEnv{maxBody: maxBody, filters: rcFilters, mirrors: rcMirrors})
		if err != nil {
			return nil, err
		}
		if len(vh.GetDomains()) == 0 {
			return nil, fmt.Errorf("%s.domains: empty", field)
		}
		for _, d := range vh.GetDomains() {
			d = strings.ToLower(d)
			var dup bool
			switch {
			case d == "*":
				dup = t.any != nil
				t.any = v
			case strings.HasPrefix(d, "*"):
				dup = addWild(suffix, d[1:], v)
			case strings.HasSuffix(d, "*"):
				dup = addWild(prefix, d[:len(d)-1], v)
			case strings.Contains(d, "*"):
				return nil, xdsfield.Unsupported(field+".domains", "wildcard in the middle of %q", d)
			default:
				_, dup = t.exact[d]
				t.exact[d] = v
			}
			if dup {
				return nil, fmt.Errorf("%s.domains: domain %q is already used by another virtual host", field, d)
			}
		}
	}
	t.suffixes = groups(suffix)
	t.prefixes = groups(prefix)
	return t, nil
}

func addWild(m map[int]map[string]*VirtualHost, s string, v *VirtualHost) bool {
	g := m[len(s)]
	if g == nil {
		g = map[string]*VirtualHost{}
		m[len(s)] = g
	}
	_, dup := g[s]
	g[s] = v
	return dup
}

func groups(m map[int]map[string]*VirtualHost) []wildGroup {
	out := make([]wildGroup, 0, len(m))
	for n, g := range m {
		out = append(out, wildGroup{n: n, m: g})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].n > out[j].n })
	return out
}

type compileEnv struct {
	maxBody int
	filters []filterConfig
	mirrors []Mirror
	retry   *RetryPolicy
	cors    *CORS
	vh      *VirtualHost
}

func compileVirtualHost(field string, vh *routev3.VirtualHost, t *Table, env compileEnv) (*VirtualHost, error) {
	if err := xdsfield.Check(vh, field, vhFields...); err != nil {
		return nil, err
	}
	v := &VirtualHost{
		Name:                          vh.GetName(),
		IncludeAttemptCount:           vh.GetIncludeRequestAttemptCount(),
		IncludeAttemptCountInResponse: vh.GetIncludeAttemptCountInResponse(),
		table:                         t,
	}
	var err error
	if v.reqOps, err = compileHeaderOps(field, vh.GetRequestHeadersToAdd(), vh.GetRequestHeadersToRemove()); err != nil {
		return nil, err
	}
	if v.respOps, err = compileResponseHeaderOps(field, vh.GetResponseHeadersToAdd(), vh.GetResponseHeadersToRemove()); err != nil {
		return nil, err
	}
	if v.rateLimits, err = compileRateLimits(field+".rate_limits", vh.GetRateLimits()); err != nil {
		return nil, err
	}
	vf, err := compileFilterConfigs(field+".typed_per_filter_config", vh.GetTypedPerFilterConfig())
	if err != nil {
		return nil, err
	}
	env.filters = mergeFilterConfigs(vf, env.filters)
	if vh.GetCors() != nil {
		if env.cors, err = compileCORS(field+".cors", vh.GetCors()); err != nil {
			return nil, err
		}
	}
	if vh.GetRetryPolicy() != nil {
		if env.retry, err = compileRetry(field+".retry_policy", vh.GetRetryPolicy()); err != nil {
			return nil, err
		}
	}
	if len(vh.GetRequestMirrorPolicies()) > 0 {
		if env.mirrors, err = compileMirrors(field+".request_mirror_policies", vh.GetRequestMirrorPolicies()); err != nil {
			return nil, err
		}
	}
	env.vh = v
	for i, r := range vh.GetRoutes() {
		rt, err := compileRoute(fmt.Sprintf("%s.routes[%d]", field, i), r, env)
		if err != nil {
			return nil, err
		}
		// The route, virtual host and table levels of applyOps, known once here.
		rt.noReqOps = rt.reqOps.Empty() && v.reqOps.Empty() && t.reqOps.Empty()
		rt.noRespOps = rt.respOps.Empty() && v.respOps.Empty() && t.respOps.Empty()
		rt.plain = rt.computePlain()
		v.routes = append(v.routes, rt)
	}
	return v, nil
}

// Match returns the route for r, or nil when no virtual host or route matches (the caller
// answers 404 with response flag NR). It does not allocate for lower-case hosts and
// single-valued headers.
func (t *Table) Match(r Request) *Route {
	vh := t.VirtualHost(r.Authority())
	if vh == nil {
		return nil
	}
	return vh.Match(r)
}

// VirtualHost returns the virtual host for host (the Host / :authority value), or nil.
func (t *Table) VirtualHost(host string) *VirtualHost {
	if t == nil {
		return nil
	}
	if hasUpper(host) {
		host = strings.ToLower(host)
	}
	if t.ignorePort {
		host = stripPort(host)
	}
	if v := t.exact[host]; v != nil {
		return v
	}
	for _, g := range t.suffixes {
		if len(host) > g.n {
			if v := g.m[host[len(host)-g.n:]]; v != nil {
				return v
			}
		}
	}
	for _, g := range t.prefixes {
		if len(host) > g.n {
			if v := g.m[host[:g.n]]; v != nil {
				return v
			}
		}
	}
	return t.any
}

// CatchAll returns the virtual host of domain "*" (nil if none): the one VirtualHost returns
// for a host no other domain matches.
func (t *Table) CatchAll() *VirtualHost {
	if t == nil {
		return nil
	}
	return t.any
}

// Match returns the first route of vh matching r, or nil.
func (vh *VirtualHost) Match(r Request) *Route {
	path := r.Path()
	for _, rt := range vh.routes {
		if rt.m.match(r, path) {
			return rt
		}
	}
	return nil
}

// InternalOnlyHeaders lists (canonical) headers l7 strips from external requests.
func (t *Table) InternalOnlyHeaders() []string { return t.internalOnly }

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

// stripPort removes a trailing ":port" from host, leaving IPv6 literals ("[::1]") intact.
func stripPort(host string) string {
	i := strings.LastIndexByte(host, ':')
	if i < 0 || strings.HasSuffix(host, "]") {
		return host
	}
	if strings.HasPrefix(host, "[") && host[i-1] != ']' {
		return host
	}
	if strings.Count(host, ":") > 1 && !strings.HasPrefix(host, "[") {
		return host // bare IPv6 address without port
	}
	for _, c := range host[i+1:] {
		if c < '0' || c > '9' {
			return host
		}
	}
	return host[:i]
}

// StripPort removes a numeric port from a Host value (for strip_any_host_port in l7).
func StripPort(host string) string { return stripPort(host) }
