package authz

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	extauthzhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	extauthznetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	rbacnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	meshconfig "istio.io/api/mesh/v1alpha1"
	security "istio.io/api/security/v1beta1"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/registry"
	"github.com/strait-mesh/strait/controlplane/translate/provider"
	"github.com/strait-mesh/strait/internal/vocab"
)

// The names istiod gives the CUSTOM action's parts (pilot/pkg/security/authz/builder). The
// shadow RBAC filter records the policy its rules matched in dynamic metadata under
// extAuthzStatPrefix+"shadow_effective_policy_id"; the ext_authz filter runs only when that
// value starts with extAuthzPolicyPrefix, which every CUSTOM policy name does.
const (
	// filterHTTPExtAuthz and filterNetworkExtAuthz are Envoy's external authorization filters.
	filterHTTPExtAuthz    = vocab.FilterHTTPExtAuthz
	filterNetworkExtAuthz = vocab.FilterNetworkExtAuthz
	extAuthzPolicyPrefix  = "istio-ext-authz"
	extAuthzStatPrefix    = "istio_ext_authz_"
	// badCustomSuffix names the DENY policies that replace CUSTOM rules whose provider is unusable.
	badCustomSuffix = "-deny-due-to-bad-CUSTOM-action"
	// defaultExtAuthzTimeout is the provider timeout when none is set (MeshConfig's default).
	defaultExtAuthzTimeout = 600 * time.Second
)

// extAuthz is a provider resolved to filter configs: the HTTP filter's, and for a gRPC provider
// the network filter's (nil for an HTTP provider: its CUSTOM policies leave TCP chains alone).
type extAuthz struct {
	http *extauthzhttpv3.ExtAuthz
	tcp  *extauthznetv3.ExtAuthz
}

// buildCustom translates the CUSTOM policies of selected as istiod does: their rules become the
// shadow rules (action DENY, so that on TCP chains an HTTP-only field widens a rule instead of
// dropping it) of an RBAC filter named "istio-ext-authz-ns[NS]-policy[NAME]-rule[I]", followed
// by the provider's ext_authz filter, which runs only for requests one of those rules matched.
// Every CUSTOM policy of a workload must name the same provider. When the provider cannot be
// used (not defined, not an ext_authz provider, service not in the registry, several
// providers...) the rules become an enforced DENY instead: what the policies meant to send to
// the authorizer is refused, and each policy is reported.
func buildCustom(selected []*config.Object, o Options) (httpFilters []*hcmv3.HttpFilter, tcpFilters []*listenerv3.Filter, errs []error) {
	var enforced []*config.Object
	var providers []string
	for _, obj := range selected {
		ap := obj.Spec.(*security.AuthorizationPolicy)
		if ap.GetAction() != security.AuthorizationPolicy_CUSTOM {
			continue
		}
		// Istio counts a dry-run policy's provider too (it cannot be enforced either way).
		providers = append(providers, ap.GetProvider().GetName())
		// Istio reads the annotation whatever the action (config.DryRun refuses it on CUSTOM).
		if dry, _ := strconv.ParseBool(obj.Annotations[config.DryRunAnnotation]); dry {
			errs = append(errs, fmt.Errorf("AuthorizationPolicy %s/%s: dry-run is not supported with action CUSTOM; the policy is not enforced",
				obj.Namespace, obj.Name))
			continue
		}
		enforced = append(enforced, obj)
	}
	if len(enforced) == 0 {
		return nil, nil, errs
	}
	httpRules, _, e := build(enforced, security.AuthorizationPolicy_CUSTOM, false, o)
	errs = append(errs, e...)
	tcpRules, _, _ := build(enforced, security.AuthorizationPolicy_CUSTOM, true, o)

	ext, err := resolveProviders(providers, o)
	if err != nil {
		for _, obj := range enforced {
			errs = append(errs, fmt.Errorf("AuthorizationPolicy %s/%s: action CUSTOM: %w; the requests its rules match are denied",
				obj.Namespace, obj.Name, err))
		}
		httpFilters = []*hcmv3.HttpFilter{{Name: vocab.FilterHTTPRBAC, ConfigType: &hcmv3.HttpFilter_TypedConfig{
			TypedConfig: mustAny(&rbachttpv3.RBAC{Rules: badCustomRules(httpRules)})}}}
		tcpFilters = []*listenerv3.Filter{{Name: vocab.FilterNetworkRBAC, ConfigType: &listenerv3.Filter_TypedConfig{
			TypedConfig: mustAny(&rbacnetv3.RBAC{StatPrefix: "tcp.", Rules: badCustomRules(tcpRules)})}}}
		return httpFilters, tcpFilters, errs
	}
	httpFilters = []*hcmv3.HttpFilter{
		{Name: vocab.FilterHTTPRBAC, ConfigType: &hcmv3.HttpFilter_TypedConfig{
			TypedConfig: mustAny(&rbachttpv3.RBAC{ShadowRules: httpRules, ShadowRulesStatPrefix: extAuthzStatPrefix})}},
		{Name: filterHTTPExtAuthz, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(ext.http)}},
	}
	if ext.tcp != nil {
		tcpFilters = []*listenerv3.Filter{
			{Name: vocab.FilterNetworkRBAC, ConfigType: &listenerv3.Filter_TypedConfig{
				TypedConfig: mustAny(&rbacnetv3.RBAC{StatPrefix: "tcp.", ShadowRules: tcpRules, ShadowRulesStatPrefix: extAuthzStatPrefix})}},
			{Name: filterNetworkExtAuthz, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(ext.tcp)}},
		}
	}
	return httpFilters, tcpFilters, errs
}

// badCustomRules turns CUSTOM rules into DENY rules with the same matches, each policy name
// suffixed as istiod does.
func badCustomRules(rules *rbacv3.RBAC) *rbacv3.RBAC {
	out := &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: make(map[string]*rbacv3.Policy, len(rules.GetPolicies()))}
	for name, p := range rules.GetPolicies() {
		out.Policies[name+badCustomSuffix] = p
	}
	return out
}

// resolveProviders returns the ext_authz filters of the one provider that the CUSTOM policies of
// a workload name (in policy order): istiod allows a single provider per workload.
func resolveProviders(names []string, o Options) (*extAuthz, error) {
	var distinct []string
	for _, n := range names {
		if !slices.Contains(distinct, n) {
			distinct = append(distinct, n)
		}
	}
	if len(distinct) > 1 {
		return nil, fmt.Errorf("only one extension provider can be used per workload, found several: %s", strings.Join(distinct, ", "))
	}
	name := names[0]
	var defined []string
	for _, p := range o.Providers {
		if p.GetName() != name {
			defined = append(defined, p.GetName())
			continue
		}
		ext, err := buildProvider(p, o.Services)
		if err != nil {
			return nil, fmt.Errorf("extension provider %q: %w", name, err)
		}
		return ext, nil
	}
	sort.Strings(defined)
	return nil, fmt.Errorf("extension provider %q is not defined in the mesh config (extensionProviders: %s)", name, strings.Join(defined, ", "))
}

// buildProvider builds the ext_authz filter configs of an envoyExtAuthzHttp or envoyExtAuthzGrpc
// provider; any other kind is an error.
func buildProvider(p *meshconfig.MeshConfig_ExtensionProvider, services []*registry.Service) (*extAuthz, error) {
	switch kind := p.GetProvider().(type) {
	case *meshconfig.MeshConfig_ExtensionProvider_EnvoyExtAuthzHttp:
		return buildHTTPProvider(kind.EnvoyExtAuthzHttp, services)
	case *meshconfig.MeshConfig_ExtensionProvider_EnvoyExtAuthzGrpc:
		return buildGRPCProvider(kind.EnvoyExtAuthzGrpc, services)
	}
	return nil, errors.New("not an external authorization provider (envoyExtAuthzHttp or envoyExtAuthzGrpc)")
}

// providerCommon is what both provider kinds resolve the same way.
type providerCommon struct {
	host, cluster string
	timeout       *durationpb.Duration
	status        *typev3.HttpStatus
	body          *extauthzhttpv3.BufferSettings
}

// resolveCommon resolves the service, port, timeout, statusOnError and request body settings;
// errs collects every problem.
func resolveCommon(service string, port uint32, timeout *durationpb.Duration, status string,
	body *meshconfig.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationRequestBody, services []*registry.Service) (providerCommon, []error) {
	var c providerCommon
	var errs []error
	if port == 0 || port > 65535 {
		errs = append(errs, fmt.Errorf("port %d must be in 1-65535", port))
	}
	var err error
	if c.host, err = provider.LookupService(service, services); err != nil {
		errs = append(errs, err)
	}
	c.cluster = vocab.OutboundClusterName(port, "", c.host)
	c.timeout = durationpb.New(defaultExtAuthzTimeout)
	if timeout != nil {
		if err := timeout.CheckValid(); err != nil {
			errs = append(errs, fmt.Errorf("invalid timeout: %w", err))
		} else if timeout.AsDuration() < 0 {
			errs = append(errs, fmt.Errorf("timeout %s must not be negative", timeout.AsDuration()))
		}
		c.timeout = timeout
	}
	if status != "" {
		code, err := strconv.ParseInt(status, 10, 32)
		if _, known := typev3.StatusCode_name[int32(code)]; err != nil || !known || code == 0 {
			errs = append(errs, fmt.Errorf("unsupported statusOnError %q", status))
		}
		c.status = &typev3.HttpStatus{Code: typev3.StatusCode(code)}
	}
	if body != nil {
		if body.GetMaxRequestBytes() == 0 {
			errs = append(errs, errors.New("includeRequestBodyInCheck.maxRequestBytes must be at least 1"))
		}
		c.body = &extauthzhttpv3.BufferSettings{MaxRequestBytes: body.GetMaxRequestBytes(),
			AllowPartialMessage: body.GetAllowPartialMessage(), PackAsBytes: body.GetPackAsBytes()}
	}
	return c, errs
}

// httpFilter is the HTTP ext_authz filter with what both provider kinds set the same way (status
// on error, fail open, route cache, request body, run only for CUSTOM policies); the caller adds
// the service and, for HTTP providers, the allowed headers.
func (c providerCommon) httpFilter(failOpen, clearRouteCache bool) *extauthzhttpv3.ExtAuthz {
	return &extauthzhttpv3.ExtAuthz{
		StatusOnError:         c.status,
		FailureModeAllow:      failOpen,
		ClearRouteCache:       clearRouteCache,
		TransportApiVersion:   corev3.ApiVersion_V3,
		FilterEnabledMetadata: extAuthzEnabled(vocab.FilterHTTPRBAC),
		WithRequestBody:       c.body,
	}
}

// buildHTTPProvider builds the ext_authz filter of an envoyExtAuthzHttp provider: an HTTP check
// to http://HOST on cluster outbound|PORT||HOST with the path prefix, the request headers to
// send (includeRequestHeadersInCheck, else the deprecated includeHeadersInCheck) in the
// filter's allowed_headers, the fixed headers to add (sorted by name) and the response headers
// to pass on, each list only when set.
func buildHTTPProvider(c *meshconfig.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationHttpProvider, services []*registry.Service) (*extAuthz, error) {
	common, errs := resolveCommon(c.GetService(), c.GetPort(), c.GetTimeout(), c.GetStatusOnError(), c.GetIncludeRequestBodyInCheck(), services)
	if pp := c.GetPathPrefix(); pp != "" {
		if _, err := url.Parse(pp); err != nil || !strings.HasPrefix(pp, "/") {
			errs = append(errs, fmt.Errorf("invalid pathPrefix %q: want a URL path starting with '/'", pp))
		}
	}
	request := c.GetIncludeRequestHeadersInCheck()
	requestField := "includeRequestHeadersInCheck"
	if len(request) == 0 {
		request, requestField = c.GetIncludeHeadersInCheck(), "includeHeadersInCheck" //nolint:staticcheck // deprecated, still honoured as istiod does
	}
	lists := []struct {
		field string
		names []string
	}{
		{requestField, request},
		{"headersToUpstreamOnAllow", c.GetHeadersToUpstreamOnAllow()},
		{"headersToDownstreamOnDeny", c.GetHeadersToDownstreamOnDeny()},
		{"headersToDownstreamOnAllow", c.GetHeadersToDownstreamOnAllow()},
	}
	matchers := make([]*matcherv3.ListStringMatcher, len(lists))
	for i, l := range lists {
		m, err := headerList(l.names)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", l.field, err))
		}
		matchers[i] = m
	}
	var toAdd []*corev3.HeaderValue
	for _, k := range sortedKeys(c.GetIncludeAdditionalHeadersInCheck()) {
		if k == "" {
			errs = append(errs, errors.New("includeAdditionalHeadersInCheck: empty header name"))
			continue
		}
		toAdd = append(toAdd, &corev3.HeaderValue{Key: k, Value: c.GetIncludeAdditionalHeadersInCheck()[k]})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	svc := &extauthzhttpv3.HttpService{
		PathPrefix: c.GetPathPrefix(),
		ServerUri: &corev3.HttpUri{Uri: "http://" + common.host, HttpUpstreamType: &corev3.HttpUri_Cluster{Cluster: common.cluster},
			Timeout: common.timeout},
	}
	if len(toAdd) > 0 {
		svc.AuthorizationRequest = &extauthzhttpv3.AuthorizationRequest{HeadersToAdd: toAdd}
	}
	if matchers[1] != nil || matchers[2] != nil || matchers[3] != nil {
		svc.AuthorizationResponse = &extauthzhttpv3.AuthorizationResponse{AllowedUpstreamHeaders: matchers[1],
			AllowedClientHeaders: matchers[2], AllowedClientHeadersOnSuccess: matchers[3]}
	}
	filter := common.httpFilter(c.GetFailOpen(), c.GetClearRouteCache())
	filter.Services = &extauthzhttpv3.ExtAuthz_HttpService{HttpService: svc}
	filter.AllowedHeaders = matchers[0]
	return &extAuthz{http: filter}, nil
}

// buildGRPCProvider builds the ext_authz filters of an envoyExtAuthzGrpc provider: the gRPC
// service on cluster outbound|PORT||HOST with authority HOST, on HTTP and on TCP chains.
func buildGRPCProvider(c *meshconfig.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationGrpcProvider, services []*registry.Service) (*extAuthz, error) {
	common, errs := resolveCommon(c.GetService(), c.GetPort(), c.GetTimeout(), c.GetStatusOnError(), c.GetIncludeRequestBodyInCheck(), services)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	grpc := &corev3.GrpcService{
		TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{
			ClusterName: common.cluster, Authority: common.host}},
		Timeout: common.timeout,
	}
	filter := common.httpFilter(c.GetFailOpen(), c.GetClearRouteCache())
	filter.Services = &extauthzhttpv3.ExtAuthz_GrpcService{GrpcService: grpc}
	return &extAuthz{
		http: filter,
		tcp: &extauthznetv3.ExtAuthz{
			StatPrefix:            "tcp.",
			GrpcService:           grpc,
			FailureModeAllow:      c.GetFailOpen(),
			TransportApiVersion:   corev3.ApiVersion_V3,
			FilterEnabledMetadata: extAuthzEnabled(vocab.FilterNetworkRBAC),
		},
	}, nil
}

// headerList converts header names with Istio's wildcards ("x-*" a prefix, "*-id" a suffix,
// else exact; case-insensitive) to a list matcher; nil for no names. A lone "*" is refused, as
// istiod does.
func headerList(names []string) (*matcherv3.ListStringMatcher, error) {
	if len(names) == 0 {
		return nil, nil
	}
	out := &matcherv3.ListStringMatcher{}
	for _, n := range names {
		m := &matcherv3.StringMatcher{IgnoreCase: true}
		switch {
		case n == "*":
			return nil, errors.New(`a single wildcard "*" is not supported: use a prefix ("x-*") or suffix ("*-id") match`)
		case strings.HasPrefix(n, "*"):
			m.MatchPattern = &matcherv3.StringMatcher_Suffix{Suffix: n[1:]}
		case strings.HasSuffix(n, "*"):
			m.MatchPattern = &matcherv3.StringMatcher_Prefix{Prefix: n[:len(n)-1]}
		default:
			m.MatchPattern = &matcherv3.StringMatcher_Exact{Exact: n}
		}
		out.Patterns = append(out.Patterns, m)
	}
	return out, nil
}

// extAuthzEnabled is the ext_authz filters' filter_enabled_metadata: run only when the shadow
// RBAC filter (filter) matched a CUSTOM policy.
func extAuthzEnabled(filter string) *matcherv3.MetadataMatcher {
	return &matcherv3.MetadataMatcher{
		Filter: filter,
		Path:   []*matcherv3.MetadataMatcher_PathSegment{{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: extAuthzStatPrefix + "shadow_effective_policy_id"}}},
		Value: &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: extAuthzPolicyPrefix}}}},
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
