package route

import (
	"fmt"
	"net/url"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/proxy/ratelimit"
	"github.com/strait-mesh/strait/proxy/xdsfield"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
)

// maxRateLimitStage is the highest stage Envoy accepts for rate limit policies and filters.
const maxRateLimitStage = 10

// rateLimitPolicy is a compiled routev3.RateLimit: actions that together produce one descriptor.
type rateLimitPolicy struct {
	stage    uint32
	disabled bool // disable_key set: the local rate limit filter skips the policy, as Envoy does
	actions  []rlAction
}

type rlActionKind uint8

const (
	rlDestinationCluster rlActionKind = iota
	rlRequestHeader
	rlQueryParameter
	rlRemoteAddress
	rlMaskedRemoteAddress
	rlGenericKey
	rlHeaderValueMatch
)

// rlAction is one compiled RateLimit.Action.
type rlAction struct {
	kind         rlActionKind
	key, value   string // descriptor key; value for generic_key and header_value_match
	name         string // header key (canonical) or query parameter name
	skipIfAbsent bool
	headers      []headerMatcher
	expectMatch  bool
	v4Mask       int
	v6Mask       int
}

// compileRateLimits compiles rate_limits of a virtual host, route or local rate limit filter.
func compileRateLimits(field string, rls []*routev3.RateLimit) ([]rateLimitPolicy, error) {
	out := make([]rateLimitPolicy, 0, len(rls))
	for i, rl := range rls {
		f := fmt.Sprintf("%s[%d]", field, i)
		// limit, hits_addend, apply_on_stream_done and x_ratelimit_option are options of the
		// global rate limit filter that strait-proxy does not implement yet.
		if err := xdsfield.Check(rl, f, "stage", "disable_key", "actions"); err != nil {
			return nil, err
		}
		p := rateLimitPolicy{stage: rl.GetStage().GetValue(), disabled: rl.GetDisableKey() != ""}
		if p.stage > maxRateLimitStage {
			return nil, fmt.Errorf("%s.stage: %d exceeds %d", f, p.stage, maxRateLimitStage)
		}
		if len(rl.GetActions()) == 0 {
			return nil, fmt.Errorf("%s.actions: empty", f)
		}
		for j, a := range rl.GetActions() {
			act, err := compileRateLimitAction(fmt.Sprintf("%s.actions[%d]", f, j), a)
			if err != nil {
				return nil, err
			}
			p.actions = append(p.actions, act)
		}
		out = append(out, p)
	}
	return out, nil
}

func compileRateLimitAction(field string, a *routev3.RateLimit_Action) (rlAction, error) {
	// source_cluster needs the proxy's service cluster (node.cluster), which the route compiler
	// does not see; metadata, dynamic_metadata, query_parameter_value_match, remote_address_match
	// and extension actions are not implemented: all are refused by name.
	if err := xdsfield.Check(a, field, "destination_cluster", "request_headers", "query_parameters",
		"remote_address", "masked_remote_address", "generic_key", "header_value_match"); err != nil {
		return rlAction{}, err
	}
	switch t := a.GetActionSpecifier().(type) {
	case *routev3.RateLimit_Action_DestinationCluster_:
		return compileBareAction(field, "destination_cluster", t.DestinationCluster, rlDestinationCluster)
	case *routev3.RateLimit_Action_RequestHeaders_:
		rh := t.RequestHeaders
		act, err := compileNamedAction(field+".request_headers", rh, rlRequestHeader, "header_name", rh.GetHeaderName(),
			rh.GetDescriptorKey(), rh.GetSkipIfAbsent())
		if err == nil {
			act.name = headerKey(act.name)
		}
		return act, err
	case *routev3.RateLimit_Action_QueryParameters_:
		qp := t.QueryParameters
		return compileNamedAction(field+".query_parameters", qp, rlQueryParameter, "query_parameter_name",
			qp.GetQueryParameterName(), qp.GetDescriptorKey(), qp.GetSkipIfAbsent())
	case *routev3.RateLimit_Action_RemoteAddress_:
		return compileBareAction(field, "remote_address", t.RemoteAddress, rlRemoteAddress)
	case *routev3.RateLimit_Action_MaskedRemoteAddress_:
		m := t.MaskedRemoteAddress
		f := field + ".masked_remote_address"
		if err := xdsfield.Check(m, f, "v4_prefix_mask_len", "v6_prefix_mask_len"); err != nil {
			return rlAction{}, err
		}
		act := rlAction{kind: rlMaskedRemoteAddress, key: "masked_remote_address"}
		var err error
		if act.v4Mask, err = prefixMaskLen(f+".v4_prefix_mask_len", m.GetV4PrefixMaskLen(), 32); err != nil {
			return rlAction{}, err
		}
		if act.v6Mask, err = prefixMaskLen(f+".v6_prefix_mask_len", m.GetV6PrefixMaskLen(), 128); err != nil {
			return rlAction{}, err
		}
		return act, nil
	case *routev3.RateLimit_Action_GenericKey_:
		g := t.GenericKey
		f := field + ".generic_key"
		if err := xdsfield.Check(g, f, "descriptor_value", "descriptor_key"); err != nil {
			return rlAction{}, err
		}
		if g.GetDescriptorValue() == "" {
			return rlAction{}, fmt.Errorf("%s.descriptor_value: empty", f)
		}
		key := g.GetDescriptorKey()
		if key == "" {
			key = "generic_key"
		}
		return rlAction{kind: rlGenericKey, key: key, value: g.GetDescriptorValue()}, nil
	case *routev3.RateLimit_Action_HeaderValueMatch_:
		h := t.HeaderValueMatch
		f := field + ".header_value_match"
		if err := xdsfield.Check(h, f, "descriptor_value", "descriptor_key", "expect_match", "headers"); err != nil {
			return rlAction{}, err
		}
		if h.GetDescriptorValue() == "" || len(h.GetHeaders()) == 0 {
			return rlAction{}, fmt.Errorf("%s: descriptor_value and headers are required", f)
		}
		hm, err := compileHeaderMatchers(f+".headers", h.GetHeaders())
		if err != nil {
			return rlAction{}, err
		}
		key := h.GetDescriptorKey()
		if key == "" {
			key = "header_match"
		}
		return rlAction{kind: rlHeaderValueMatch, key: key, value: h.GetDescriptorValue(), headers: hm,
			expectMatch: h.GetExpectMatch() == nil || h.GetExpectMatch().GetValue()}, nil
	}
	return rlAction{}, fmt.Errorf("%s: no action set", field)
}

// compileBareAction compiles an action without settings (destination_cluster, remote_address) at
// field.name: its descriptor key is name.
func compileBareAction(field, name string, m proto.Message, kind rlActionKind) (rlAction, error) {
	if err := xdsfield.Check(m, field+"."+name); err != nil {
		return rlAction{}, err
	}
	return rlAction{kind: kind, key: name}, nil
}

// prefixMaskLen is a masked_remote_address prefix length at field: v, at most bits, or bits when
// unset.
func prefixMaskLen(field string, v *wrapperspb.UInt32Value, bits int) (int, error) {
	if v == nil {
		return bits, nil
	}
	if int64(v.GetValue()) > int64(bits) {
		return 0, fmt.Errorf("%s: %d exceeds %d", field, v.GetValue(), bits)
	}
	return int(v.GetValue()), nil
}

// compileNamedAction compiles a request_headers or query_parameters action m at field: both
// take the value of one request header or query parameter (nameField, given as name) into
// descriptor_key, both required.
func compileNamedAction(field string, m proto.Message, kind rlActionKind, nameField, name, key string, skipIfAbsent bool) (rlAction, error) {
	if err := xdsfield.Check(m, field, nameField, "descriptor_key", "skip_if_absent"); err != nil {
		return rlAction{}, err
	}
	if name == "" || key == "" {
		return rlAction{}, fmt.Errorf("%s: %s and descriptor_key are required", field, nameField)
	}
	return rlAction{kind: kind, key: key, name: name, skipIfAbsent: skipIfAbsent}, nil
}

// appendDescriptors appends to d the descriptors of the policies of stage, as Envoy's
// RateLimitPolicyEntry does: each policy's actions produce one entry each, in order; an action
// that cannot produce its entry (a missing header without skip_if_absent, a header_value_match
// that does not hold, a remote address that is not IP) drops that policy's descriptor, and a
// policy with no entries produces none.
func appendDescriptors(d *ratelimit.Descriptors, policies []rateLimitPolicy, stage uint32, r Request, info *RequestInfo, cluster string) {
	for i := range policies {
		p := &policies[i]
		if p.stage != stage || p.disabled {
			continue
		}
		start := len(d.Entries)
		ok := true
		for j := range p.actions {
			if ok = p.actions[j].appendEntry(d, r, info, cluster); !ok {
				break
			}
		}
		if !ok || len(d.Entries) == start {
			d.Entries = d.Entries[:start]
			continue
		}
		d.Ends = append(d.Ends, len(d.Entries))
	}
}

// appendEntry appends the action's entry to d.Entries, or nothing for an absent value that
// skip_if_absent allows; false drops the policy's descriptor.
func (a *rlAction) appendEntry(d *ratelimit.Descriptors, r Request, info *RequestInfo, cluster string) bool {
	var v string
	switch a.kind {
	case rlDestinationCluster:
		if cluster == "" {
			return false
		}
		v = cluster
	case rlRequestHeader:
		var found bool
		if v, found = firstHeaderValue(r, a.name); !found {
			return a.skipIfAbsent
		}
	case rlQueryParameter:
		var found bool
		if v, found = firstQueryValue(rawQuery(r.Path()), a.name); !found {
			return a.skipIfAbsent
		}
	case rlRemoteAddress:
		if info == nil || !info.Remote.Addr().IsValid() {
			return false
		}
		v = info.Remote.Addr().Unmap().String()
	case rlMaskedRemoteAddress:
		if info == nil || !info.Remote.Addr().IsValid() {
			return false
		}
		ip := info.Remote.Addr().Unmap()
		bits := a.v6Mask
		if ip.Is4() {
			bits = a.v4Mask
		}
		p, err := ip.Prefix(bits)
		if err != nil {
			return false
		}
		v = p.String()
	case rlGenericKey:
		v = a.value
	case rlHeaderValueMatch:
		matched := true
		for i := range a.headers {
			if !a.headers[i].match(r) {
				matched = false
				break
			}
		}
		if matched != a.expectMatch {
			return false
		}
		v = a.value
	}
	d.Entries = append(d.Entries, ratelimit.Entry{Key: a.key, Value: v})
	return true
}

// firstHeaderValue returns the first value of header key (a canonical key or a pseudo-header),
// as Envoy's request_headers action reads it.
func firstHeaderValue(r Request, key string) (string, bool) {
	if key[0] == ':' || key == "Host" {
		return headerValue(r, key)
	}
	vs := r.HeaderValues(key)
	if len(vs) == 0 {
		return "", false
	}
	return vs[0], true
}

// firstQueryValue returns the decoded value of the first parameter name in the raw query.
func firstQueryValue(raw, name string) (string, bool) {
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		k, v, _ := strings.Cut(kv, "=")
		if strings.ContainsAny(k, "%+") {
			var err error
			if k, err = url.QueryUnescape(k); err != nil {
				continue
			}
		}
		if k != name {
			continue
		}
		if strings.ContainsAny(v, "%+") {
			if dv, err := url.QueryUnescape(v); err == nil {
				v = dv
			}
		}
		return v, true
	}
	return "", false
}

// VhRateLimits says whether a route's descriptors include its virtual host's rate_limits
// (envoy.extensions.common.ratelimit.v3.VhRateLimitsOptions).
type VhRateLimits uint8

// The VhRateLimits options, in Envoy's enum order.
const (
	// VhOverride uses the virtual host's rate_limits only when the route has none (default).
	VhOverride VhRateLimits = iota
	// VhInclude always adds the virtual host's rate_limits.
	VhInclude
	// VhIgnore never uses them.
	VhIgnore
)

// AppendRateLimitDescriptors appends to d the rate limit descriptors of stage that r produces
// through the route's rate_limits and, as vh (or the route's include_vh_rate_limits) says, its
// virtual host's. cluster is the chosen upstream cluster (destination_cluster). It allocates
// only for remote address values and when d's storage grows.
func (rt *Route) AppendRateLimitDescriptors(d *ratelimit.Descriptors, stage uint32, vh VhRateLimits, r Request, info *RequestInfo, cluster string) {
	appendDescriptors(d, rt.rateLimits, stage, r, info, cluster)
	if rt.includeVHRateLimits {
		vh = VhInclude
	}
	switch vh {
	case VhInclude:
		appendDescriptors(d, rt.VirtualHost.rateLimits, stage, r, info, cluster)
	case VhOverride:
		if len(rt.rateLimits) == 0 {
			appendDescriptors(d, rt.VirtualHost.rateLimits, stage, r, info, cluster)
		}
	}
}

// HasRateLimits reports whether the route or its virtual host has rate_limits.
func (rt *Route) HasRateLimits() bool {
	return len(rt.rateLimits) > 0 || rt.VirtualHost != nil && len(rt.VirtualHost.rateLimits) > 0
}
