package route

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/strait-mesh/strait/proxy/httpmsg"
	"github.com/strait-mesh/strait/proxy/matcher"
	"github.com/strait-mesh/strait/proxy/xdsfield"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
	matcherv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/matcher/v3"
)

// ActionKind says what a matched route does.
type ActionKind uint8

// Route actions.
const (
	// ActionForward proxies to a cluster (RouteAction).
	ActionForward ActionKind = iota
	// ActionRedirect answers with a redirect (RedirectAction).
	ActionRedirect
	// ActionDirect answers with a fixed status and body (DirectResponseAction).
	ActionDirect
)

// DefaultTimeout is Envoy's route timeout when RouteAction.timeout is not set.
const DefaultTimeout = 15 * time.Second

// Route is a compiled routev3.Route. All fields are read-only after Compile.
type Route struct {
	// Name is the route name (may be empty).
	Name string
	// VirtualHost is the virtual host holding the route.
	VirtualHost *VirtualHost
	// Action is what the route does; the matching field below is set.
	Action ActionKind
	// Redirect is set for ActionRedirect.
	Redirect *Redirect
	// Direct is set for ActionDirect.
	Direct *DirectResponse

	// Timeout bounds the time from the end of the downstream request to the end of the
	// response (Envoy's route timeout, across retries); 0 disables it.
	Timeout time.Duration
	// IdleTimeout bounds the time without body bytes in either direction; 0 disables it.
	IdleTimeout time.Duration
	// MaxStreamDuration caps the stream duration; 0 disables it.
	MaxStreamDuration time.Duration
	// GrpcTimeoutHeaderMax, when HasGrpcTimeoutHeaderMax, makes grpc-timeout set the timeout,
	// capped at this value (0 means uncapped).
	GrpcTimeoutHeaderMax    time.Duration
	HasGrpcTimeoutHeaderMax bool
	// Retry is the effective retry policy (route's, else the virtual host's), or nil.
	Retry *RetryPolicy
	// Mirrors are the request mirror policies.
	Mirrors []Mirror
	// HostRewrite replaces the Host header when non-empty.
	HostRewrite string
	// ClusterNotFoundStatus is answered when the chosen cluster does not exist (503 by default).
	ClusterNotFoundStatus int
	// CORS is the effective CORS policy, or nil.
	CORS *CORS
	// StatPrefix, when set, asks for per-route statistics under
	// vhost.<virtual host>.route.<stat_prefix>.
	StatPrefix string
	// Decorator is decorator.operation, the name of the request's span when tracing is on
	// (empty: no decorator); DecoratorPropagate is decorator.propagate (default true): the
	// operation is passed on in x-envoy-decorator-operation.
	Decorator          string
	DecoratorPropagate bool

	m                   routeMatch
	cluster             *Target
	clusterHeader       string
	weighted            []*Target
	totalWeight         uint64
	prefixRewrite       string
	hasPrefixRw         bool
	regexRewrite        *regexp.Regexp
	regexSubst          string
	hash                []hashPolicy
	upgrades            map[string]bool
	filters             []filterConfig
	rateLimits          []rateLimitPolicy
	includeVHRateLimits bool
	reqOps              HeaderOps
	respOps             HeaderOps
	// noReqOps and noRespOps: the route, its virtual host and its table have no request
	// (response) header operations (set by compileVirtualHost; false: unknown).
	noReqOps, noRespOps bool
	// plain: see Plain (set by compileVirtualHost; false: unknown).
	plain bool
}

// Plain reports whether the route asks the router for none of: grpc-timeout
// (HasGrpcTimeoutHeaderMax), a path rewrite (RewritesPath), a host rewrite (HostRewrite, or a
// target's), request header operations at any level (NoRequestOps for every target) and a hash
// policy (HasHashPolicy). The router then skips all of them with this one test. False when
// unknown (a Route not made by Compile).
func (rt *Route) Plain() bool { return rt.plain }

// computePlain computes Plain once the route's levels of header operations are known
// (noReqOps).
func (rt *Route) computePlain() bool {
	if rt.HasGrpcTimeoutHeaderMax || rt.RewritesPath() || rt.HostRewrite != "" || rt.HasHashPolicy() || !rt.noReqOps {
		return false
	}
	targets := rt.weighted
	if rt.cluster != nil {
		targets = append([]*Target{rt.cluster}, rt.weighted...)
	}
	for _, t := range targets {
		if t.HostRewrite != "" || !t.reqOps.Empty() {
			return false
		}
	}
	return true
}

// Target is a cluster a forwarding route may send to, with its per-cluster header operations.
type Target struct {
	// Name is the cluster name; empty when it comes from ClusterHeader.
	Name string
	// ClusterHeader names the request header holding the cluster name (cluster_header).
	ClusterHeader string
	// HostRewrite replaces Host for this weighted cluster when non-empty.
	HostRewrite string

	weight  uint64
	reqOps  HeaderOps
	respOps HeaderOps
	cache   atomic.Value // Cached, SetCached
}

// Cached returns what SetCached last stored (nil if nothing): the route's consumer keeps there
// what it resolved Name to (the connection manager, the cluster, with the config generation
// it belongs to), so that a request need not look the name up again. Safe for concurrent use.
func (t *Target) Cached() any { return t.cache.Load() }

// SetCached replaces what Cached returns; v must always have the same concrete type (that of
// the one consumer's entries).
func (t *Target) SetCached(v any) { t.cache.Store(v) }

// Redirect is a compiled RedirectAction.
type Redirect struct {
	// Code is the HTTP status (301, 302, 303, 307 or 308).
	Code int

	scheme, host, port string
	path               string
	hasPath            bool
	prefix             string
	hasPrefix          bool
	re                 *regexp.Regexp
	subst              string
	stripQuery         bool
	owner              *Route
}

// DirectResponse is a compiled DirectResponseAction.
type DirectResponse struct {
	// Status is the HTTP status code.
	Status int
	// Body is the response body (may be empty).
	Body []byte
}

var routeFields = []string{"name", "match", "route", "redirect", "direct_response", "decorator", "stat_prefix",
	"metadata", "typed_per_filter_config", "request_headers_to_add", "request_headers_to_remove",
	"response_headers_to_add", "response_headers_to_remove"}

var actionFields = []string{"cluster", "cluster_header", "weighted_clusters", "cluster_not_found_response_code",
	"prefix_rewrite", "regex_rewrite", "host_rewrite_literal", "auto_host_rewrite", "timeout", "idle_timeout",
	"retry_policy", "request_mirror_policies", "hash_policy", "cors", "max_stream_duration", "upgrade_configs", "rate_limits", "include_vh_rate_limits"}

func compileRoute(field string, r *routev3.Route, env compileEnv) (*Route, error) {
	// metadata is opaque to routing: accepted as descriptive data, as Envoy does without
	// metadata consumers. decorator names the span when the connection manager traces.
	if err := xdsfield.Check(r, field, routeFields...); err != nil {
		return nil, err
	}
	rt := &Route{Name: r.GetName(), VirtualHost: env.vh, Retry: env.retry, Mirrors: env.mirrors, CORS: env.cors,
		ClusterNotFoundStatus: http.StatusServiceUnavailable, StatPrefix: r.GetStatPrefix()}
	if d := r.GetDecorator(); d != nil {
		if err := xdsfield.Check(d, field+".decorator", "operation", "propagate"); err != nil {
			return nil, err
		}
		if d.GetOperation() == "" || strings.ContainsAny(d.GetOperation(), "\r\n\x00") {
			return nil, fmt.Errorf("%s.decorator.operation: empty or not a header value", field)
		}
		rt.Decorator = d.GetOperation()
		rt.DecoratorPropagate = d.GetPropagate() == nil || d.GetPropagate().GetValue()
	}
	var err error
	if rt.m, err = compileMatch(field+".match", r.GetMatch()); err != nil {
		return nil, err
	}
	if rt.reqOps, err = compileHeaderOps(field, r.GetRequestHeadersToAdd(), r.GetRequestHeadersToRemove()); err != nil {
		return nil, err
	}
	if rt.respOps, err = compileResponseHeaderOps(field, r.GetResponseHeadersToAdd(), r.GetResponseHeadersToRemove()); err != nil {
		return nil, err
	}
	rf, err := compileFilterConfigs(field+".typed_per_filter_config", r.GetTypedPerFilterConfig())
	if err != nil {
		return nil, err
	}
	rt.filters = mergeFilterConfigs(rf, env.filters)
	for _, fc := range rt.filters {
		if c, ok := fc.cfg.(*CORS); ok {
			rt.CORS = c
			break
		}
	}
	switch a := r.GetAction().(type) {
	case *routev3.Route_Route:
		rt.Action = ActionForward
		err = compileRouteAction(field+".route", a.Route, rt)
	case *routev3.Route_Redirect:
		rt.Action = ActionRedirect
		rt.Redirect, err = compileRedirect(field+".redirect", a.Redirect, rt)
	case *routev3.Route_DirectResponse:
		rt.Action = ActionDirect
		rt.Direct, err = compileDirect(field+".direct_response", a.DirectResponse, env.maxBody)
	default:
		err = fmt.Errorf("%s: no action set", field)
	}
	if err != nil {
		return nil, err
	}
	return rt, nil
}

func compileRouteAction(field string, a *routev3.RouteAction, rt *Route) error {
	if err := xdsfield.Check(a, field, actionFields...); err != nil {
		return err
	}
	var err error
	switch c := a.GetClusterSpecifier().(type) {
	case *routev3.RouteAction_Cluster:
		if c.Cluster == "" {
			return fmt.Errorf("%s.cluster: empty", field)
		}
		rt.cluster = &Target{Name: c.Cluster}
	case *routev3.RouteAction_ClusterHeader:
		if c.ClusterHeader == "" {
			return fmt.Errorf("%s.cluster_header: empty", field)
		}
		rt.clusterHeader = headerKey(c.ClusterHeader)
		rt.cluster = &Target{ClusterHeader: rt.clusterHeader}
	case *routev3.RouteAction_WeightedClusters:
		if err := compileWeighted(field+".weighted_clusters", c.WeightedClusters, rt); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%s: no cluster_specifier set", field)
	}
	switch a.GetClusterNotFoundResponseCode() {
	case routev3.RouteAction_NOT_FOUND:
		rt.ClusterNotFoundStatus = http.StatusNotFound
	case routev3.RouteAction_INTERNAL_SERVER_ERROR:
		rt.ClusterNotFoundStatus = http.StatusInternalServerError
	}
	if a.GetPrefixRewrite() != "" {
		if rt.m.kind == pathRegex {
			return fmt.Errorf("%s.prefix_rewrite: cannot be used with a safe_regex match", field)
		}
		rt.prefixRewrite, rt.hasPrefixRw = a.GetPrefixRewrite(), true
	}
	if rr := a.GetRegexRewrite(); rr != nil {
		if rt.hasPrefixRw {
			return fmt.Errorf("%s.regex_rewrite: cannot be combined with prefix_rewrite", field)
		}
		if rt.regexRewrite, rt.regexSubst, err = compileSubst(field+".regex_rewrite", rr); err != nil {
			return err
		}
	}
	switch h := a.GetHostRewriteSpecifier().(type) {
	case *routev3.RouteAction_HostRewriteLiteral:
		rt.HostRewrite = h.HostRewriteLiteral
	case *routev3.RouteAction_AutoHostRewrite:
		if h.AutoHostRewrite.GetValue() {
			// The upstream API does not report the chosen endpoint's hostname before the
			// request is sent, so the Host could not be rewritten to it.
			return xdsfield.Unsupported(field+".auto_host_rewrite", "true")
		}
	}
	rt.Timeout = DefaultTimeout
	if a.GetTimeout() != nil {
		rt.Timeout = a.GetTimeout().AsDuration()
	}
	if a.GetIdleTimeout() != nil {
		rt.IdleTimeout = a.GetIdleTimeout().AsDuration()
	}
	if msd := a.GetMaxStreamDuration(); msd != nil {
		if err := xdsfield.Check(msd, field+".max_stream_duration", "max_stream_duration", "grpc_timeout_header_max"); err != nil {
			return err
		}
		rt.MaxStreamDuration = msd.GetMaxStreamDuration().AsDuration()
		if msd.GetGrpcTimeoutHeaderMax() != nil {
			rt.HasGrpcTimeoutHeaderMax = true
			rt.GrpcTimeoutHeaderMax = msd.GetGrpcTimeoutHeaderMax().AsDuration()
		}
	}
	if a.GetRetryPolicy() != nil {
		if rt.Retry, err = compileRetry(field+".retry_policy", a.GetRetryPolicy()); err != nil {
			return err
		}
	}
	if len(a.GetRequestMirrorPolicies()) > 0 {
		if rt.Mirrors, err = compileMirrors(field+".request_mirror_policies", a.GetRequestMirrorPolicies()); err != nil {
			return err
		}
	}
	if rt.hash, err = compileHash(field+".hash_policy", a.GetHashPolicy()); err != nil {
		return err
	}
	if a.GetCors() != nil {
		if rt.CORS, err = compileCORS(field+".cors", a.GetCors()); err != nil {
			return err
		}
	}
	if rt.rateLimits, err = compileRateLimits(field+".rate_limits", a.GetRateLimits()); err != nil {
		return err
	}
	rt.includeVHRateLimits = a.GetIncludeVhRateLimits().GetValue()
	for i, u := range a.GetUpgradeConfigs() {
		f := fmt.Sprintf("%s.upgrade_configs[%d]", field, i)
		if err := xdsfield.Check(u, f, "upgrade_type", "enabled"); err != nil {
			return err
		}
		if rt.upgrades == nil {
			rt.upgrades = map[string]bool{}
		}
		rt.upgrades[strings.ToLower(u.GetUpgradeType())] = u.GetEnabled() == nil || u.GetEnabled().GetValue()
	}
	return nil
}

func compileWeighted(field string, w *routev3.WeightedCluster, rt *Route) error {
	// runtime_key_prefix only names runtime keys; without a runtime layer the configured weights
	// apply, as in Envoy when the keys are absent.
	if err := xdsfield.Check(w, field, "clusters", "total_weight", "runtime_key_prefix"); err != nil {
		return err
	}
	for i, c := range w.GetClusters() {
		f := fmt.Sprintf("%s.clusters[%d]", field, i)
		if err := xdsfield.Check(c, f, "name", "cluster_header", "weight", "request_headers_to_add",
			"request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove",
			"host_rewrite_literal", "metadata_match"); err != nil {
			return err
		}
		if c.GetMetadataMatch() != nil && len(c.GetMetadataMatch().GetFilterMetadata()) > 0 {
			return xdsfield.Unsupported(f+".metadata_match", "subset load balancing")
		}
		t := &Target{Name: c.GetName(), HostRewrite: c.GetHostRewriteLiteral(), weight: uint64(c.GetWeight().GetValue())}
		if c.GetClusterHeader() != "" {
			t.Name, t.ClusterHeader = "", headerKey(c.GetClusterHeader())
		} else if t.Name == "" {
			return fmt.Errorf("%s.name: empty", f)
		}
		var err error
		if t.reqOps, err = compileHeaderOps(f, c.GetRequestHeadersToAdd(), c.GetRequestHeadersToRemove()); err != nil {
			return err
		}
		if t.respOps, err = compileResponseHeaderOps(f, c.GetResponseHeadersToAdd(), c.GetResponseHeadersToRemove()); err != nil {
			return err
		}
		rt.totalWeight += t.weight
		rt.weighted = append(rt.weighted, t)
	}
	if len(rt.weighted) == 0 || rt.totalWeight == 0 {
		return fmt.Errorf("%s: no clusters with weight", field)
	}
	if tw := w.GetTotalWeight(); tw != nil && uint64(tw.GetValue()) != rt.totalWeight {
		return fmt.Errorf("%s.total_weight: %d does not equal the sum of weights %d", field, tw.GetValue(), rt.totalWeight)
	}
	return nil
}

// compileSubst compiles a RegexMatchAndSubstitute. Envoy's substitution uses RE2's \N for
// capture groups; it is rewritten to Go's ${N}.
func compileSubst(field string, rr *matcherv3.RegexMatchAndSubstitute) (*regexp.Regexp, string, error) {
	if err := xdsfield.Check(rr, field, "pattern", "substitution"); err != nil {
		return nil, "", err
	}
	re, err := matcher.SearchRegex(field+".pattern", rr.GetPattern(), matchOptions)
	if err != nil {
		return nil, "", err
	}
	var b strings.Builder
	s := rr.GetSubstitution()
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			fmt.Fprintf(&b, "${%c}", s[i+1])
			i++
		case s[i] == '\\' && i+1 < len(s) && s[i+1] == '\\':
			b.WriteByte('\\')
			i++
		case s[i] == '$':
			b.WriteString("$$")
		default:
			b.WriteByte(s[i])
		}
	}
	return re, b.String(), nil
}

func compileRedirect(field string, r *routev3.RedirectAction, rt *Route) (*Redirect, error) {
	if err := xdsfield.Check(r, field, "https_redirect", "scheme_redirect", "host_redirect", "port_redirect",
		"path_redirect", "prefix_rewrite", "regex_rewrite", "response_code", "strip_query"); err != nil {
		return nil, err
	}
	rd := &Redirect{host: r.GetHostRedirect(), stripQuery: r.GetStripQuery(), owner: rt}
	if r.GetPortRedirect() != 0 {
		rd.port = fmt.Sprint(r.GetPortRedirect())
	}
	switch s := r.GetSchemeRewriteSpecifier().(type) {
	case *routev3.RedirectAction_HttpsRedirect:
		if s.HttpsRedirect {
			rd.scheme = "https"
		}
	case *routev3.RedirectAction_SchemeRedirect:
		rd.scheme = strings.ToLower(s.SchemeRedirect)
	}
	switch p := r.GetPathRewriteSpecifier().(type) {
	case *routev3.RedirectAction_PathRedirect:
		rd.path, rd.hasPath = p.PathRedirect, true
	case *routev3.RedirectAction_PrefixRewrite:
		if rt.m.kind == pathRegex {
			return nil, fmt.Errorf("%s.prefix_rewrite: cannot be used with a safe_regex match", field)
		}
		rd.prefix, rd.hasPrefix = p.PrefixRewrite, true
	case *routev3.RedirectAction_RegexRewrite:
		var err error
		if rd.re, rd.subst, err = compileSubst(field+".regex_rewrite", p.RegexRewrite); err != nil {
			return nil, err
		}
	}
	switch r.GetResponseCode() {
	case routev3.RedirectAction_MOVED_PERMANENTLY:
		rd.Code = http.StatusMovedPermanently
	case routev3.RedirectAction_FOUND:
		rd.Code = http.StatusFound
	case routev3.RedirectAction_SEE_OTHER:
		rd.Code = http.StatusSeeOther
	case routev3.RedirectAction_TEMPORARY_REDIRECT:
		rd.Code = http.StatusTemporaryRedirect
	case routev3.RedirectAction_PERMANENT_REDIRECT:
		rd.Code = http.StatusPermanentRedirect
	default:
		return nil, xdsfield.Unsupported(field+".response_code", "%v", r.GetResponseCode())
	}
	return rd, nil
}

func compileDirect(field string, d *routev3.DirectResponseAction, maxBody int) (*DirectResponse, error) {
	if err := xdsfield.Check(d, field, "status", "body"); err != nil {
		return nil, err
	}
	if d.GetStatus() < 200 || d.GetStatus() > 599 {
		return nil, fmt.Errorf("%s.status: %d out of range [200, 599]", field, d.GetStatus())
	}
	dr := &DirectResponse{Status: int(d.GetStatus())}
	if b := d.GetBody(); b != nil {
		if err := xdsfield.Check(b, field+".body", "inline_string", "inline_bytes", "filename"); err != nil {
			return nil, err
		}
		switch s := b.GetSpecifier().(type) {
		case *corev3.DataSource_InlineString:
			dr.Body = []byte(s.InlineString)
		case *corev3.DataSource_InlineBytes:
			dr.Body = s.InlineBytes
		case *corev3.DataSource_Filename:
			data, err := os.ReadFile(s.Filename)
			if err != nil {
				return nil, fmt.Errorf("%s.body.filename: reading direct response body: %w", field, err)
			}
			dr.Body = data
		}
		if len(dr.Body) > maxBody {
			return nil, fmt.Errorf("%s.body: %d bytes exceeds max_direct_response_body_size_bytes %d", field, len(dr.Body), maxBody)
		}
	}
	return dr, nil
}

// PickCluster chooses the target for a forwarding route: the single cluster, a weighted cluster
// chosen at random by weight, or the cluster named by the cluster_header. It returns the cluster
// name ("" when the header is missing) and the target whose header operations apply.
func (rt *Route) PickCluster(r Request) (string, *Target) {
	if t := rt.cluster; t != nil && t.ClusterHeader == "" {
		return t.Name, t // the common case: one named cluster
	}
	return rt.pickCluster(r)
}

// pickCluster is PickCluster for weighted clusters and cluster_header. Out of its common path.
//
//go:noinline
func (rt *Route) pickCluster(r Request) (string, *Target) {
	t := rt.cluster
	if t == nil {
		n := rand.Uint64N(rt.totalWeight)
		for _, w := range rt.weighted {
			if n < w.weight {
				t = w
				break
			}
			n -= w.weight
		}
		if t == nil {
			t = rt.weighted[len(rt.weighted)-1]
		}
	}
	if t.ClusterHeader != "" {
		v, _ := headerValue(r, t.ClusterHeader)
		return v, t
	}
	return t.Name, t
}

// UpgradeAllowed reports the route's override for an Upgrade type ("websocket"): set is false
// when the route leaves the decision to the connection manager.
func (rt *Route) UpgradeAllowed(typ string) (allowed, set bool) {
	allowed, set = rt.upgrades[strings.ToLower(typ)]
	return allowed, set
}

// matchedPrefixLen returns how many bytes of path the route's match consumed for prefix_rewrite.
func (rt *Route) matchedPrefixLen(path string) int {
	p, _ := stripQuery(path)
	switch rt.m.kind {
	case pathExact:
		return len(p)
	default:
		n := len(rt.m.s)
		if n > len(path) {
			n = len(path)
		}
		return n
	}
}

// RewritesPath reports whether the route has prefix_rewrite or regex_rewrite (RewritePath
// changes paths).
func (rt *Route) RewritesPath() bool { return rt.hasPrefixRw || rt.regexRewrite != nil }

// RewritePath applies prefix_rewrite or regex_rewrite to path (the request target including its
// query) and reports whether it changed anything.
func (rt *Route) RewritePath(path string) (string, bool) {
	switch {
	case rt.hasPrefixRw:
		n := rt.matchedPrefixLen(path)
		return rt.prefixRewrite + path[n:], true
	case rt.regexRewrite != nil:
		p, _ := stripQuery(path)
		rest := path[len(p):]
		return rt.regexRewrite.ReplaceAllString(p, rt.regexSubst) + rest, true
	}
	return path, false
}

// Location returns the redirect target for r.
func (rd *Redirect) Location(r Request) string {
	scheme := r.Scheme()
	origScheme := scheme
	if rd.scheme != "" {
		scheme = rd.scheme
	}
	host := r.Authority()
	port := ""
	if h, p, ok := splitHostPort(host); ok {
		host, port = h, p
	}
	if rd.host != "" {
		// host_redirect replaces the whole authority: the request's port goes with it.
		host, port = rd.host, ""
		if h, p, ok := splitHostPort(host); ok {
			host, port = h, p
		}
	}
	if rd.port != "" {
		port = rd.port
	}
	// Envoy drops the port when the scheme changes and no port is configured, and always drops
	// a default port for the scheme.
	if rd.port == "" && scheme != origScheme {
		port = ""
	}
	if scheme == "http" && port == "80" || scheme == "https" && port == "443" {
		port = ""
	}
	path := r.Path()
	switch {
	case rd.hasPath:
		if strings.Contains(rd.path, "?") {
			path = rd.path
		} else {
			_, q := stripQuery(path)
			path = rd.path
			if q != "" {
				path += "?" + q
			}
		}
	case rd.hasPrefix:
		n := rd.owner.matchedPrefixLen(path)
		path = rd.prefix + path[n:]
	case rd.re != nil:
		p, _ := stripQuery(path)
		path = rd.re.ReplaceAllString(p, rd.subst) + path[len(p):]
	}
	if rd.stripQuery {
		path, _ = stripQuery(path)
	}
	var b strings.Builder
	b.WriteString(scheme)
	b.WriteString("://")
	b.WriteString(host)
	if port != "" {
		b.WriteByte(':')
		b.WriteString(port)
	}
	b.WriteString(path)
	return b.String()
}

func splitHostPort(h string) (string, string, bool) {
	s := stripPort(h)
	if s == h {
		return h, "", false
	}
	return s, h[len(s)+1:], true
}

// ApplyRequestHeaders applies the request header operations of the target, route, virtual host
// and route configuration to h, in Envoy's order (most specific first, so the least specific
// wins on overwrite, unless most_specific_header_mutations_wins).
func (rt *Route) ApplyRequestHeaders(h *httpmsg.Header, r Request, info *RequestInfo, t *Target) {
	rt.applyOps(h, r, info, t, false)
}

// ApplyResponseHeaders applies the response header operations likewise.
func (rt *Route) ApplyResponseHeaders(h *httpmsg.Header, r Request, info *RequestInfo, t *Target) {
	rt.applyOps(h, r, info, t, true)
}

// NoRequestOps reports whether ApplyRequestHeaders has nothing to do with target t (nil: none):
// no level has request header operations. A caller checks it (inlined) to spare the call.
func (rt *Route) NoRequestOps(t *Target) bool {
	return rt.noReqOps && (t == nil || t.reqOps.Empty())
}

// NoResponseOps is NoRequestOps for ApplyResponseHeaders.
func (rt *Route) NoResponseOps(t *Target) bool {
	return rt.noRespOps && (t == nil || t.respOps.Empty())
}

func (rt *Route) applyOps(h *httpmsg.Header, r Request, info *RequestInfo, t *Target, resp bool) {
	if resp && rt.noRespOps && (t == nil || t.respOps.Empty()) ||
		!resp && rt.noReqOps && (t == nil || t.reqOps.Empty()) {
		return
	}
	var levels [4]*HeaderOps
	vh := rt.VirtualHost
	if resp {
		levels = [4]*HeaderOps{nil, &rt.respOps, &vh.respOps, &vh.table.respOps}
		if t != nil {
			levels[0] = &t.respOps
		}
	} else {
		levels = [4]*HeaderOps{nil, &rt.reqOps, &vh.reqOps, &vh.table.reqOps}
		if t != nil {
			levels[0] = &t.reqOps
		}
	}
	// Most levels have no operations: Empty (inlined) spares them the call.
	if vh.table.mostSpecificWins {
		for i := 3; i >= 0; i-- {
			if !levels[i].Empty() {
				levels[i].Apply(h, r, info)
			}
		}
		return
	}
	for _, l := range levels {
		if !l.Empty() {
			l.Apply(h, r, info)
		}
	}
}

// ApplyTableResponseHeaders applies only the route configuration's response header operations;
// l7 uses it for local replies when no route matched.
func (t *Table) ApplyTableResponseHeaders(h *httpmsg.Header, r Request, info *RequestInfo) {
	if t != nil {
		t.respOps.Apply(h, r, info)
	}
}
