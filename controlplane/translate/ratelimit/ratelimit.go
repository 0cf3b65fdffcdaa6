// Package ratelimit translates Strait's RateLimit kind (extensions.strait.io/v1alpha1) into
// Envoy's local rate limit HTTP filter (envoy.filters.http.local_ratelimit) for a Local rule and
// Envoy's global rate limit filter (envoy.filters.http.ratelimit) for a Global one, one filter
// per rule, at the front of the HTTP filters of the selected sidecars' inbound connection
// managers and of the selected gateways' connection managers (docs/ratelimit.md).
//
// A Global rule's filter (global.go) calls straitd's rate limit service through the cluster
// vocab.RateLimitServiceCluster (Cluster) in domain Domain, at a stage of its own (1 to
// MaxGlobalRules); its descriptor comes from rate_limits of that stage added to every route of
// the connection manager's route configuration, with the same actions as a Local rule's (below)
// padded to one entry per to entry, so that the descriptor is the same on every proxy and port
// and straitd's service (GlobalRules) counts one budget for all of them.
//
// A rule that counts every request on a chain is a filter with a token bucket of its own, as the
// EnvoyFilter of Istio's gateway example writes it. A rule with a match is a filter without a
// default bucket: its own rate_limits actions produce the rule's descriptor only for matching
// requests (header_value_match on :path, :method, :authority and request headers), and the
// descriptor has the rule's bucket; other requests pass the filter untouched. The rule's to
// entries are alternatives: the descriptor is produced by the first that matches (later policies
// require the earlier entries not to match), so a request takes one token from the rule's
// bucket, never two. Ports (to.operation.ports, notPorts) select the chains a rule applies to.
//
// Nothing here reads anything but validated config.Objects; all functions are safe for
// concurrent use.
package ratelimit

import (
	"fmt"
	"slices"
	"sort"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	lrlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	security "istio.io/api/security/v1beta1"

	"github.com/strait-mesh/strait/controlplane/config"
	ext "github.com/strait-mesh/strait/controlplane/config/extensionsv1alpha1"
	"github.com/strait-mesh/strait/controlplane/translate/selection"
)

// Names and keys of the generated configuration.
const (
	// FilterPrefix starts the name of each generated filter: FilterPrefix + "NS/NAME/RULE". A
	// name of its own keeps EnvoyFilters' per-route configs for envoy.filters.http.local_ratelimit
	// from replacing it.
	FilterPrefix = "strait.ratelimit/"
	// StatPrefix roots the statistics of each filter: ratelimit.NS.NAME.RULE.http_local_rate_limit.*
	StatPrefix = "ratelimit"
	// RuleKey is the descriptor key whose value names the rule ("NS/NAME/RULE").
	RuleKey = "ratelimit_rule"
	// MatchKey and matchValue are the descriptor entries of the rule's match actions.
	MatchKey   = "ratelimit_match"
	matchValue = "1"
	// Runtime keys of filter_enabled and filter_enforced, as Istio's examples name them.
	enabledKey  = "local_rate_limit_enabled"
	enforcedKey = "local_rate_limit_enforced"
)

// Select returns the RateLimits that apply to a workload (sidecar or gateway) in namespace ns
// with labels: those of the root namespace and of ns whose selector (if any) matches, the root
// namespace's first, then oldest first, then by name.
func Select(objs []*config.Object, ns string, labels map[string]string, root string) []*config.Object {
	return selection.Select(objs, ns, labels, root, rateLimits)
}

// rateLimits reads a RateLimit's workload selector for selection.Select.
var rateLimits = selection.Kind{Selector: func(o *config.Object) (map[string]string, bool) {
	rl, ok := o.Spec.(*ext.RateLimit)
	return rl.GetSelector().GetMatchLabels(), ok
}}

// Chain is what the rules that apply to one connection manager add to it: HTTP filters, in
// order, for the front of its filter chain, and the rate_limits that the Global rules' filters
// read (each with its filter's stage), for every route of its route configuration.
type Chain struct {
	Filters    []*hcmv3.HttpFilter
	RateLimits []*routev3.RateLimit
}

// Filters returns what the rules of policies (as Select returns them) that apply to a
// connection manager serving port (the destination port of a sidecar's inbound chain, or a
// gateway listener's port) add to it. A Global rule's filter calls the cluster
// vocab.RateLimitServiceCluster; service says whether straitd serves it: without it a Global
// rule is an error, as are more than MaxGlobalRules Global rules on one port.
func Filters(policies []*config.Object, port uint32, service bool) (Chain, error) {
	var out Chain
	stage := uint32(0)
	for _, o := range policies {
		rl, ok := o.Spec.(*ext.RateLimit)
		if !ok {
			continue
		}
		for i, r := range rl.GetRules() {
			id := ruleID(o, i, r)
			wrap := func(err error) error {
				return fmt.Errorf("RateLimit %s/%s: spec.rules[%d]: %w", o.Namespace, o.Name, i, err)
			}
			if r.GetScope() == config.RateLimitScopeGlobal {
				if !service {
					return Chain{}, wrap(errNoService)
				}
				f, rls, err := globalFilter(id, r, port, stage+1)
				if err != nil {
					return Chain{}, wrap(err)
				}
				if f == nil {
					continue
				}
				if stage++; stage > MaxGlobalRules {
					return Chain{}, wrap(fmt.Errorf("more than %d Global rules apply to port %d: the global rate limit filter has stages 1 to %d only", MaxGlobalRules, port, MaxGlobalRules))
				}
				out.Filters = append(out.Filters, f)
				out.RateLimits = append(out.RateLimits, rls...)
				continue
			}
			f, err := ruleFilter(id, r, port)
			if err != nil {
				return Chain{}, wrap(err)
			}
			if f != nil {
				out.Filters = append(out.Filters, f)
			}
		}
	}
	return out, nil
}

// RuleID names rule i of o: "NS/NAME/RULE", RULE being the rule's name or its index. It is
// the value of the RuleKey entry of the rule's descriptor.
func RuleID(o *config.Object, i int, r *ext.RateLimitRule) string { return ruleID(o, i, r) }

// ruleID names rule i of o: "NS/NAME/RULE", RULE being the rule's name or its index.
func ruleID(o *config.Object, i int, r *ext.RateLimitRule) string {
	n := r.GetName()
	if n == "" {
		n = strconv.Itoa(i)
	}
	return o.Namespace + "/" + o.Name + "/" + n
}

// ruleFilter builds the filter of one rule for a connection manager on port, or nil when the
// rule matches no request there.
func ruleFilter(id string, r *ext.RateLimitRule, port uint32) (*hcmv3.HttpFilter, error) {
	lim := r.GetLimit()
	bucket := &typev3.TokenBucket{
		MaxTokens:     lim.GetRequests(),
		TokensPerFill: wrapperspb.UInt32(lim.GetRequests()),
		FillInterval:  lim.GetPer(),
	}
	status := uint32(429)
	if s := r.GetResponse().GetStatus(); s != 0 {
		status = s
	}
	c := &lrlv3.LocalRateLimit{
		StatPrefix:              StatPrefix + "." + statName(id),
		Status:                  &typev3.HttpStatus{Code: typev3.StatusCode(status)},
		FilterEnabled:           percent(enabledKey),
		FilterEnforced:          percent(enforcedKey),
		EnableXRatelimitHeaders: ratelimitv3.XRateLimitHeadersRFCVersion_DRAFT_VERSION_03,
	}
	hs := r.GetResponse().GetHeaders()
	for _, k := range sortedKeys(hs) {
		c.ResponseHeadersToAdd = append(c.ResponseHeadersToAdd, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: k, Value: hs[k]},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		})
	}
	alts, all := alternatives(r.GetMatch(), port)
	by := byEntries(r.GetBy())
	switch {
	case all && len(by) == 0:
		c.TokenBucket = bucket
	case len(alts) == 0:
		return nil, nil
	default:
		var rls []*routev3.RateLimit
		rls, c.Descriptors = descriptors(id, alts, len(alts), whenMatchers(r.GetMatch().GetWhen()), by, bucket)
		c.RateLimits = rls
		if len(by) > 0 {
			c.MaxDynamicDescriptors = wrapperspb.UInt32(ByMaxValues)
		}
	}
	tc, err := anypb.New(c)
	if err != nil {
		return nil, fmt.Errorf("encoding the local rate limit filter: %w", err)
	}
	return &hcmv3.HttpFilter{Name: FilterPrefix + id, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: tc}}, nil
}

// alternatives returns the header matchers of each of the match's to entries that applies on
// port, in order, up to and without the first that matches every request; all is true when every
// request on port matches (no to and no when, or a first applicable entry that matches all and
// no when).
func alternatives(m *security.Rule, port uint32) (alts [][]*routev3.HeaderMatcher, all bool) {
	if len(m.GetTo()) == 0 {
		return [][]*routev3.HeaderMatcher{nil}, len(m.GetWhen()) == 0
	}
	for _, t := range m.GetTo() {
		op := t.GetOperation()
		if !portMatches(op, port) {
			continue
		}
		hm := operationMatchers(op)
		alts = append(alts, hm)
		if len(hm) == 0 {
			break // later entries are never reached
		}
	}
	return alts, len(alts) == 1 && len(alts[0]) == 0 && len(m.GetWhen()) == 0
}

// portMatches reports whether an operation's ports and notPorts allow port.
func portMatches(op *security.Operation, port uint32) bool {
	p := strconv.FormatUint(uint64(port), 10)
	if len(op.GetPorts()) > 0 && (port == 0 || !slices.Contains(op.GetPorts(), p)) {
		return false
	}
	return port == 0 || !slices.Contains(op.GetNotPorts(), p)
}

// operationMatchers returns the header matchers that together hold when a request matches the
// operation's paths, methods and hosts (and none of their not* values).
func operationMatchers(op *security.Operation) []*routev3.HeaderMatcher {
	var out []*routev3.HeaderMatcher
	add := func(name, re string, invert bool) {
		if re != "" {
			out = append(out, regexMatcher(name, re, invert))
		}
	}
	add(":path", config.RateLimitPathRegex(op.GetPaths()), false)
	add(":path", config.RateLimitPathRegex(op.GetNotPaths()), true)
	add(":method", config.RateLimitValueRegex(op.GetMethods(), false), false)
	add(":method", config.RateLimitValueRegex(op.GetNotMethods(), false), true)
	add(":authority", config.RateLimitValueRegex(op.GetHosts(), true), false)
	add(":authority", config.RateLimitValueRegex(op.GetNotHosts(), true), true)
	return out
}

// whenMatchers returns the header matchers of a match's request.headers[NAME] conditions: a
// header's values must match one of values and none of notValues (an absent header matches
// notValues only).
func whenMatchers(when []*security.Condition) []*routev3.HeaderMatcher {
	var out []*routev3.HeaderMatcher
	for _, c := range when {
		k, err := config.ParseConditionKey(c.GetKey())
		if err != nil || k.Attribute != config.AttrRequestHeaders {
			continue // refused by validation
		}
		if re := config.RateLimitValueRegex(c.GetValues(), false); re != "" {
			out = append(out, regexMatcher(k.Names[0], re, false))
		}
		if re := config.RateLimitValueRegex(c.GetNotValues(), false); re != "" {
			m := regexMatcher(k.Names[0], re, true)
			m.TreatMissingHeaderAsEmpty = true
			out = append(out, m)
		}
	}
	return out
}

func regexMatcher(name, re string, invert bool) *routev3.HeaderMatcher {
	return &routev3.HeaderMatcher{
		Name:        name,
		InvertMatch: invert,
		HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}},
		}},
	}
}

// descriptors returns the filter's rate_limits and its descriptors. Policy k produces the
// descriptor [rule, match × width] (width ≥ len(alts)) when the request matches none of
// alternatives 0..k-1, matches alternative k and the when matchers: its actions are a
// generic_key naming the rule, a header_value_match that must fail for each earlier
// alternative, one that must hold for alternative k with when, and generic_key padding, so that
// every policy's descriptor is the same and at most one policy produces it. The by entries'
// actions follow; each shape of them (byShapes) is a descriptor whose by entries have no value,
// a bucket per distinct value (Envoy's dynamic descriptors).
func descriptors(id string, alts [][]*routev3.HeaderMatcher, width int, when []*routev3.HeaderMatcher, by []byEntry, bucket *typev3.TokenBucket) ([]*routev3.RateLimit, []*ratelimitv3.LocalRateLimitDescriptor) {
	entries := []*ratelimitv3.RateLimitDescriptor_Entry{{Key: RuleKey, Value: id}}
	for range width {
		entries = append(entries, &ratelimitv3.RateLimitDescriptor_Entry{Key: MatchKey, Value: matchValue})
	}
	pad := &routev3.RateLimit_Action{ActionSpecifier: &routev3.RateLimit_Action_GenericKey_{
		GenericKey: &routev3.RateLimit_Action_GenericKey{DescriptorKey: MatchKey, DescriptorValue: matchValue}}}
	hvm := func(hs []*routev3.HeaderMatcher, expect bool) *routev3.RateLimit_Action {
		return &routev3.RateLimit_Action{ActionSpecifier: &routev3.RateLimit_Action_HeaderValueMatch_{
			HeaderValueMatch: &routev3.RateLimit_Action_HeaderValueMatch{
				DescriptorKey: MatchKey, DescriptorValue: matchValue, ExpectMatch: wrapperspb.Bool(expect), Headers: hs}}}
	}
	var rls []*routev3.RateLimit
	for k, alt := range alts {
		actions := []*routev3.RateLimit_Action{{ActionSpecifier: &routev3.RateLimit_Action_GenericKey_{
			GenericKey: &routev3.RateLimit_Action_GenericKey{DescriptorKey: RuleKey, DescriptorValue: id}}}}
		for _, prev := range alts[:k] {
			actions = append(actions, hvm(prev, false))
		}
		if hs := append(slices.Clip(alt), when...); len(hs) > 0 {
			actions = append(actions, hvm(hs, true))
		} else {
			actions = append(actions, pad)
		}
		for range width - k - 1 {
			actions = append(actions, pad)
		}
		for _, b := range by {
			actions = append(actions, b.action)
		}
		rls = append(rls, &routev3.RateLimit{Actions: actions})
	}
	var ds []*ratelimitv3.LocalRateLimitDescriptor
	for _, shape := range byShapes(by) {
		es := slices.Clone(entries)
		for _, k := range shape {
			es = append(es, &ratelimitv3.RateLimitDescriptor_Entry{Key: k})
		}
		ds = append(ds, &ratelimitv3.LocalRateLimitDescriptor{Entries: es, TokenBucket: bucket})
	}
	return rls, ds
}

// statName turns a rule id into a stat name segment: '/' becomes '.'.
func statName(id string) string {
	b := []byte(id)
	for i, c := range b {
		if c == '/' {
			b[i] = '.'
		}
	}
	return string(b)
}

func percent(key string) *corev3.RuntimeFractionalPercent {
	return &corev3.RuntimeFractionalPercent{
		RuntimeKey:   key,
		DefaultValue: &typev3.FractionalPercent{Numerator: 100, Denominator: typev3.FractionalPercent_HUNDRED},
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
