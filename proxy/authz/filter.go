package authz

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strait-mesh/strait/internal/vocab"
	"github.com/strait-mesh/strait/proxy/xdsfield"
	rbacv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/rbac/v3"
	httprbacv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/rbac/v3"
	netrbacv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/rbac/v3"
	matcherv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/type/matcher/v3"
)

// Names of Envoy's RBAC filters, and the dynamic metadata the filter writes.
const (
	// HTTPFilterName is the HTTP filter's name and its dynamic metadata namespace.
	HTTPFilterName = vocab.FilterHTTPRBAC
	// NetworkFilterName is the network filter's name and its dynamic metadata namespace.
	NetworkFilterName = vocab.FilterNetworkRBAC
	// ShadowEffectivePolicyIDKey is the metadata key of the shadow engine's matched policy
	// (prefixed with shadow_rules_stat_prefix, e.g. Istio's
	// "istio_dry_run_allow_shadow_effective_policy_id"); set only when a policy matched.
	ShadowEffectivePolicyIDKey = "shadow_effective_policy_id"
	// ShadowEngineResultKey is the metadata key of the shadow engine's result, with the same
	// prefix: EngineResultAllowed or EngineResultDenied.
	ShadowEngineResultKey = "shadow_engine_result"
	// EngineResultAllowed and EngineResultDenied are the values of ShadowEngineResultKey.
	EngineResultAllowed = "allowed"
	EngineResultDenied  = "denied"
	// CommonMetadataNamespace and AccessLogHintKey carry a LOG engine's decision: a bool, true
	// when the request should be logged.
	CommonMetadataNamespace = "envoy.common"
	AccessLogHintKey        = "access_log_hint"
	// DeniedBody is the body of the HTTP filter's 403 reply.
	DeniedBody = "RBAC: access denied"
	// IstioDryRunAllowPrefix and IstioDryRunDenyPrefix are the shadow_rules_stat_prefix values
	// Istio sets on the filters it generates for dry-run ALLOW and DENY AuthorizationPolicies;
	// its telemetry reads the metadata keys they prefix.
	IstioDryRunAllowPrefix = "istio_dry_run_allow_"
	IstioDryRunDenyPrefix  = "istio_dry_run_deny_"
)

// Filter is a compiled RBAC filter configuration (envoy.filters.http.rbac or
// envoy.filters.network.rbac): an enforced engine, a shadow engine and their statistics'
// names. It is immutable and safe for concurrent use.
type Filter struct {
	// Rules is the enforced engine; nil when the config has no rules (nothing is enforced).
	Rules *Engine
	// Shadow is the shadow engine; nil when the config has no shadow_rules.
	Shadow *Engine
	// ShadowPrefix is shadow_rules_stat_prefix, which also prefixes the shadow metadata keys.
	ShadowPrefix string
	// Stats are the counters' full names.
	Stats StatNames
}

// StatNames are the full names of an RBAC filter's counters, as Envoy builds them: for the HTTP
// filter http.<connection manager stat_prefix>.rbac.<rules_stat_prefix>allowed, ...; for the
// network filter <stat_prefix>.rbac.allowed, ....
type StatNames struct {
	Allowed, Denied             string
	ShadowAllowed, ShadowDenied string
}

// Result is one request's outcome through a Filter.
type Result struct {
	// Enforced is the enforced engine's decision (allowed when there is no engine).
	Enforced Decision
	// Shadow is the shadow engine's decision, valid when HasShadow.
	Shadow    Decision
	HasShadow bool
}

// Allowed reports whether the request may proceed.
func (r Result) Allowed() bool { return r.Enforced.Allowed }

// CompileHTTPFilter compiles an envoy.extensions.filters.http.rbac.v3.RBAC. statPrefix is the
// owning connection manager's stat_prefix. The matcher and shadow_matcher forms (an
// xds.type.matcher.v3.Matcher tree of RBAC actions) and track_per_rule_stats are refused.
func CompileHTTPFilter(cfg *httprbacv3.RBAC, statPrefix, path string) (*Filter, error) {
	if cfg == nil {
		return nil, fmt.Errorf("%s: missing RBAC filter config", path)
	}
	if err := xdsfield.Check(cfg, path, "rules", "shadow_rules", "rules_stat_prefix", "shadow_rules_stat_prefix"); err != nil {
		return nil, withMatcherDetail(err, path)
	}
	f, err := compileEngines(cfg, path)
	if err != nil {
		return nil, err
	}
	f.ShadowPrefix = cfg.GetShadowRulesStatPrefix()
	f.Stats = statNames("http."+statPrefix, cfg.GetRulesStatPrefix(), f.ShadowPrefix)
	return f, nil
}

// CompileHTTPPerRoute compiles an envoy.extensions.filters.http.rbac.v3.RBACPerRoute, which
// replaces the filter's engines on a virtual host, route or weighted cluster. Without rbac,
// RBAC is disabled there: the returned Filter has no engines and allows everything. Only the
// engines of the result matter: Envoy counts an overridden request in the filter's own
// counters and names the shadow metadata after the filter's own shadow_rules_stat_prefix, so
// its Stats are left empty and the caller keeps using the filter's Stats and ShadowPrefix.
func CompileHTTPPerRoute(cfg *httprbacv3.RBACPerRoute, path string) (*Filter, error) {
	if cfg == nil {
		return nil, fmt.Errorf("%s: missing RBACPerRoute config", path)
	}
	if err := xdsfield.Check(cfg, path, "rbac"); err != nil {
		return nil, err
	}
	if cfg.GetRbac() == nil {
		return &Filter{}, nil
	}
	f, err := CompileHTTPFilter(cfg.GetRbac(), "", path+".rbac")
	if err != nil {
		return nil, err
	}
	f.Stats = StatNames{}
	return f, nil
}

// CompileNetworkFilter compiles an envoy.extensions.filters.network.rbac.v3.RBAC (evaluated
// once, on the connection's first byte, with EvaluateConnection). CONTINUOUS enforcement,
// delay_deny and the matcher forms are refused.
func CompileNetworkFilter(cfg *netrbacv3.RBAC, path string) (*Filter, error) {
	if cfg == nil {
		return nil, fmt.Errorf("%s: missing RBAC filter config", path)
	}
	if err := xdsfield.Check(cfg, path, "rules", "shadow_rules", "stat_prefix", "shadow_rules_stat_prefix", "enforcement_type"); err != nil {
		return nil, withMatcherDetail(err, path)
	}
	if cfg.GetEnforcementType() != netrbacv3.RBAC_ONE_TIME_ON_FIRST_BYTE {
		return nil, xdsfield.Unsupported(path+".enforcement_type", "%s (only ONE_TIME_ON_FIRST_BYTE)", cfg.GetEnforcementType())
	}
	if cfg.GetStatPrefix() == "" {
		return nil, fmt.Errorf("%s.stat_prefix: empty", path)
	}
	f, err := compileEngines(cfg, path)
	if err != nil {
		return nil, err
	}
	f.ShadowPrefix = cfg.GetShadowRulesStatPrefix()
	f.Stats = statNames(cfg.GetStatPrefix(), "", f.ShadowPrefix)
	return f, nil
}

// engineConfig is what the HTTP and network filter configs have in common.
type engineConfig interface {
	GetRules() *rbacv3.RBAC
	GetShadowRules() *rbacv3.RBAC
}

func compileEngines(cfg engineConfig, path string) (*Filter, error) {
	f := &Filter{}
	if r := cfg.GetRules(); r != nil {
		e, err := Compile(r, path+".rules")
		if err != nil {
			return nil, err
		}
		f.Rules = e
	}
	if r := cfg.GetShadowRules(); r != nil {
		e, err := Compile(r, path+".shadow_rules")
		if err != nil {
			return nil, err
		}
		f.Shadow = e
	}
	return f, nil
}

// withMatcherDetail explains a refused matcher / shadow_matcher field.
func withMatcherDetail(err error, path string) error {
	if u, ok := err.(*xdsfield.UnsupportedError); ok && (u.Field == path+".matcher" || u.Field == path+".shadow_matcher") {
		u.Detail = "the xds.type.matcher RBAC form; send rules / shadow_rules (as Istio does)"
	}
	return err
}

// statPrefixJoin is Envoy's statPrefixJoin: a "." between prefix and token unless prefix is
// empty or already ends with one.
func statPrefixJoin(prefix, token string) string {
	switch {
	case prefix == "":
		return token
	case strings.HasSuffix(prefix, "."):
		return prefix + token
	}
	return prefix + "." + token
}

func statNames(prefix, rulesPrefix, shadowPrefix string) StatNames {
	base := statPrefixJoin(prefix, "rbac.")
	rules := statPrefixJoin(base, rulesPrefix)
	shadow := statPrefixJoin(base, shadowPrefix)
	return StatNames{
		Allowed:       rules + "allowed",
		Denied:        rules + "denied",
		ShadowAllowed: shadow + "shadow_allowed",
		ShadowDenied:  shadow + "shadow_denied",
	}
}

// Check evaluates an HTTP request: the shadow engine (if any) and then the enforced one. The
// caller counts Stats.ShadowAllowed/ShadowDenied and Allowed/Denied from the result, writes the
// shadow metadata (ShadowMetadata), and on denial replies 403 DeniedBody with ResponseDetail.
func (f *Filter) Check(r Request) Result {
	return check(f, (*Engine).Evaluate, r)
}

// CheckConnection evaluates a connection (the network filter), as Check does.
func (f *Filter) CheckConnection(c Connection) Result {
	return check(f, (*Engine).EvaluateConnection, c)
}

// check evaluates x with f's shadow engine (if any) and then its enforced one.
func check[T any](f *Filter, evaluate func(*Engine, T) Decision, x T) Result {
	var res Result
	if f.Shadow != nil {
		res.Shadow, res.HasShadow = evaluate(f.Shadow, x), true
	}
	res.Enforced = evaluate(f.Rules, x)
	return res
}

// ShadowMetadata returns the dynamic metadata the filter writes for a shadow decision, in the
// filter's namespace (HTTPFilterName or NetworkFilterName): the engine result, and the
// effective policy ID when a policy matched. Keys carry the shadow_rules_stat_prefix.
func (f *Filter) ShadowMetadata(d Decision) map[string]string {
	m := map[string]string{f.ShadowPrefix + ShadowEngineResultKey: EngineResultDenied}
	if d.Allowed {
		m[f.ShadowPrefix+ShadowEngineResultKey] = EngineResultAllowed
	}
	if d.Policy != "" {
		m[f.ShadowPrefix+ShadowEffectivePolicyIDKey] = d.Policy
	}
	return m
}

// Shared values of ShadowEngineResultKey: a dynamic metadata Value is never modified once set,
// so every request's Struct can point at these.
var (
	allowedValue = structpb.NewStringValue(EngineResultAllowed)
	deniedValue  = structpb.NewStringValue(EngineResultDenied)
)

// ShadowMetadataStruct is ShadowMetadata as the Struct the filter merges into its dynamic
// metadata namespace (Envoy's setDynamicMetadata): <prefix>shadow_engine_result, and
// <prefix>shadow_effective_policy_id when a policy matched. A new Struct is returned on every
// call, since the stream's metadata merges later values into the Struct it was given first.
func (f *Filter) ShadowMetadataStruct(d Decision) *structpb.Struct {
	fields := make(map[string]*structpb.Value, 2)
	if d.Allowed {
		fields[f.ShadowPrefix+ShadowEngineResultKey] = allowedValue
	} else {
		fields[f.ShadowPrefix+ShadowEngineResultKey] = deniedValue
	}
	if d.Policy != "" {
		fields[f.ShadowPrefix+ShadowEffectivePolicyIDKey] = structpb.NewStringValue(d.Policy)
	}
	return &structpb.Struct{Fields: fields}
}

// MetadataMatcher is a compiled envoy.type.matcher.v3.MetadataMatcher over a request's dynamic
// metadata, with the semantics of the RBAC engine's metadata principal (Envoy's
// Matchers::MetadataMatcher): the value at filter/path is matched and the result XORed with
// invert. Other filters (ext_authz's filter_enabled_metadata) use it so that metadata matching
// has one owner. It is immutable and safe for concurrent use.
type MetadataMatcher struct{ m *metadataMatcher }

// CompileMetadataMatcher compiles m; field names it in errors, and unsupported fields are an
// *xdsfield.UnsupportedError.
func CompileMetadataMatcher(field string, m *matcherv3.MetadataMatcher) (*MetadataMatcher, error) {
	mm, err := compileMetadataMatcher(field, m)
	if err != nil {
		return nil, err
	}
	return &MetadataMatcher{m: mm}, nil
}

// Match reports whether the dynamic metadata md (namespace to Struct; nil for a namespace that
// is not set) satisfies the matcher. A missing value is a Value with no kind: only an inverted
// matcher accepts it.
func (mm *MetadataMatcher) Match(md func(namespace string) *structpb.Struct) bool {
	s := md(mm.m.filter)
	var v *structpb.Value
	for _, k := range mm.m.path {
		if s == nil {
			v = nil
			break
		}
		if v = s.GetFields()[k]; v == nil {
			break
		}
		s = v.GetStructValue()
	}
	return mm.m.value.match(v) != mm.m.invert
}

// ResponseDetail is Envoy's response code detail (and connection termination detail) of a
// denial: rbac_access_denied_matched_policy[<policy>], "none" when no policy matched, with
// whitespace in the name replaced by "_".
func ResponseDetail(d Decision) string {
	p := d.Policy
	if !d.Matched {
		p = "none"
	}
	p = strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\n', '\v', '\f', '\r': // StringUtil::replaceAllEmptySpace (isspace)
			return '_'
		}
		return r
	}, p)
	return "rbac_access_denied_matched_policy[" + p + "]"
}
