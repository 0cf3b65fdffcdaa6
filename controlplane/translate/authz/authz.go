// Package authz translates Istio AuthorizationPolicy into Envoy filters for a sidecar's inbound
// listeners and a gateway's listeners, as istiod does:
//
//   - the policies of a workload are those of the root namespace (without a selector: every
//     workload; with one: matching workloads of every namespace) and of its own namespace
//     (without a selector, or with a matching one); policies with targetRef(s) do not apply to
//     sidecars;
//   - actions are evaluated in the order CUSTOM, AUDIT (LOG), DENY, ALLOW, each a group of
//     filters on HTTP chains (envoy.filters.http.rbac) and TCP chains (envoy.filters.network.rbac,
//     stat prefix "tcp."); dry-run policies (annotation istio.io/dry-run: "true") go into the same
//     filter's shadow rules;
//   - each rule becomes one RBAC policy "ns[NS]-policy[NAME]-rule[I]" whose permissions are the
//     rule's `to` operations (each AND of its fields, values ORed) and whose principals are its
//     `from` sources, with the `when` conditions added to every permission or principal by key;
//   - on TCP chains, a rule of an ALLOW policy that uses an HTTP-only field is dropped (it allows
//     nothing), while DENY, AUDIT and CUSTOM rules drop only the HTTP-only values (matching more);
//   - an ALLOW policy without rules allows nothing; without any policy there is no filter;
//   - CUSTOM policies (external authorization, extauthz.go) become a shadow RBAC filter whose
//     rules are named "istio-ext-authz-ns[NS]-policy[NAME]-rule[I]", followed by the ext_authz
//     filter of the MeshConfig extension provider they name, which runs only for requests those
//     rules match; the JWT filter (jwt.go) goes after them and before the RBAC filters (see
//     Filters.WithAuthn).
//
// requestPrincipals and request.auth.* match the jwt_authn filter's payload metadata.
package authz

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	rbacnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	uritemplatev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/path/match/uri_template/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	meshconfig "istio.io/api/mesh/v1alpha1"
	security "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/registry"
	"github.com/strait-mesh/strait/controlplane/translate/selection"
	"github.com/strait-mesh/strait/internal/vocab"
)

// Options is what translation needs beyond the policies.
type Options struct {
	// RootNamespace is the mesh root namespace (MeshConfig.rootNamespace).
	RootNamespace string
	// TrustDomains is the trust domain bundle: MeshConfig trustDomain first, then its aliases.
	TrustDomains []string
	// Providers are MeshConfig.extensionProviders, where CUSTOM policies find their provider.
	Providers []*meshconfig.MeshConfig_ExtensionProvider
	// Services is the service registry (mesh.Snapshot.Services), where an ext_authz provider's
	// service is looked up.
	Services []*registry.Service
}

// Filters are the authorization filters of one workload's chains, in order; both empty when no
// policy applies.
type Filters struct {
	// HTTP are the CUSTOM action's filters (shadow RBAC, ext_authz), then the RBAC filters of
	// AUDIT, DENY and ALLOW.
	HTTP []*hcmv3.HttpFilter
	// TCP are the network filters in the same order.
	TCP []*listenerv3.Filter
	// custom is how many of HTTP are the CUSTOM action's.
	custom int
}

// WithAuthn returns the HTTP filters with the authentication filter authn (jwt_authn; nil for
// none) where istiod puts it: after the CUSTOM action's filters, which see the request before
// authentication, and before the RBAC filters, which read its result.
func (f Filters) WithAuthn(authn *hcmv3.HttpFilter) []*hcmv3.HttpFilter {
	if authn == nil {
		return f.HTTP
	}
	out := make([]*hcmv3.HttpFilter, 0, len(f.HTTP)+1)
	out = append(append(out, f.HTTP[:f.custom]...), authn)
	return append(out, f.HTTP[f.custom:]...)
}

// Select returns the AuthorizationPolicies that apply to a sidecar workload (namespace ns, labels),
// oldest first, the root namespace's before the workload namespace's.
func Select(policies []*config.Object, ns string, labels map[string]string, root string) []*config.Object {
	return selection.Select(policies, ns, labels, root, workloadPolicies)
}

// workloadPolicy is what AuthorizationPolicy and RequestAuthentication have in common.
type workloadPolicy interface {
	GetSelector() *typev1beta1.WorkloadSelector
	GetTargetRef() *typev1beta1.PolicyTargetReference
	GetTargetRefs() []*typev1beta1.PolicyTargetReference
}

// workloadPolicies selects AuthorizationPolicies and RequestAuthentications for a sidecar
// workload: by selector, never with targetRef(s) (those attach to gateways and waypoints, never
// to sidecars).
var workloadPolicies = selection.Kind{Selector: func(o *config.Object) (map[string]string, bool) {
	wp, ok := o.Spec.(workloadPolicy)
	if !ok || len(wp.GetTargetRefs()) > 0 || wp.GetTargetRef() != nil {
		return nil, false
	}
	return wp.GetSelector().GetMatchLabels(), true
}}

// Build translates the selected policies (see Select) into the workload's filters. errs names
// the policies or rules that could not be translated (unknown condition keys, CUSTOM policies
// whose provider cannot be used): an ALLOW rule is left out (it allows nothing), a DENY rule
// denies everything, a CUSTOM rule sends every request to the authorizer, and the rules of
// CUSTOM policies without a usable provider deny the requests they match.
func Build(selected []*config.Object, o Options) (Filters, []error) {
	var out Filters
	var errs []error
	out.HTTP, out.TCP, errs = buildCustom(selected, o)
	out.custom = len(out.HTTP)
	for _, action := range []security.AuthorizationPolicy_Action{
		security.AuthorizationPolicy_AUDIT, security.AuthorizationPolicy_DENY, security.AuthorizationPolicy_ALLOW} {
		var group []*config.Object
		for _, obj := range selected {
			if obj.Spec.(*security.AuthorizationPolicy).GetAction() == action {
				group = append(group, obj)
			}
		}
		if len(group) == 0 {
			continue
		}
		for _, tcp := range []bool{false, true} {
			rules, shadow, e := build(group, action, tcp, o)
			if !tcp {
				errs = append(errs, e...)
			}
			if tcp {
				out.TCP = append(out.TCP, networkFilter(rules, shadow))
			} else {
				out.HTTP = append(out.HTTP, httpFilter(rules, shadow))
			}
		}
	}
	return out, errs
}

// build returns the enforced and the dry-run RBAC config of one action's policies. CUSTOM
// rules are built as DENY rules (istiod's choice, so that on TCP chains HTTP-only values widen
// a rule rather than drop it) and named for the ext_authz filter; the caller leaves out dry-run
// CUSTOM policies.
func build(group []*config.Object, action security.AuthorizationPolicy_Action, tcp bool, o Options) (rules, shadow *rbacv3.RBAC, errs []error) {
	act := rbacv3.RBAC_ALLOW
	switch action {
	case security.AuthorizationPolicy_DENY, security.AuthorizationPolicy_CUSTOM:
		act = rbacv3.RBAC_DENY
	case security.AuthorizationPolicy_AUDIT:
		act = rbacv3.RBAC_LOG
	}
	custom := action == security.AuthorizationPolicy_CUSTOM
	for _, obj := range group {
		ap := obj.Spec.(*security.AuthorizationPolicy)
		dry, _ := config.DryRun(obj)
		target := &rules
		if dry {
			target = &shadow
		}
		if *target == nil {
			*target = &rbacv3.RBAC{Action: act, Policies: map[string]*rbacv3.Policy{}}
		}
		if len(ap.GetRules()) == 0 {
			// No rules: ALLOW allows nothing; DENY, AUDIT and CUSTOM match nothing.
			(*target).Policies[policyName(obj, 0, custom)] = &rbacv3.Policy{
				Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_NotRule{NotRule: anyPermission()}}},
				Principals:  []*rbacv3.Principal{{Identifier: &rbacv3.Principal_NotId{NotId: anyPrincipal()}}},
			}
			continue
		}
		b := &ruleBuilder{o: o, tcp: tcp, allow: action == security.AuthorizationPolicy_ALLOW, namespace: obj.Namespace}
		for i, r := range ap.GetRules() {
			p, err := b.rule(r)
			if err != nil {
				if b.httpOnly {
					continue // ALLOW on TCP: the rule allows nothing
				}
				errs = append(errs, fmt.Errorf("AuthorizationPolicy %s/%s rules[%d]: %w", obj.Namespace, obj.Name, i, err))
				if action != security.AuthorizationPolicy_DENY && !custom {
					continue // ALLOW: the rule allows nothing; AUDIT: nothing is logged
				}
				// A DENY rule that cannot be translated denies everything, and a CUSTOM rule
				// sends every request to the authorizer: failing open would let through what
				// the policy meant to keep out or check.
				p = &rbacv3.Policy{Permissions: []*rbacv3.Permission{andRules(nil)}, Principals: []*rbacv3.Principal{andIDs(nil)}}
			}
			(*target).Policies[policyName(obj, i, custom)] = p
		}
	}
	return rules, shadow, errs
}

// policyName names the RBAC policy of rule i of o; CUSTOM rules get the prefix the ext_authz
// filter looks for.
func policyName(o *config.Object, i int, custom bool) string {
	name := fmt.Sprintf("ns[%s]-policy[%s]-rule[%d]", o.Namespace, o.Name, i)
	if custom {
		return extAuthzPolicyPrefix + "-" + name
	}
	return name
}

// httpFilter and networkFilter wrap rules in the filters, with Istio's shadow stat prefix (the
// allow prefix also when there are no shadow rules, as istiod does).
func httpFilter(rules, shadow *rbacv3.RBAC) *hcmv3.HttpFilter {
	f := &rbachttpv3.RBAC{Rules: rules, ShadowRules: shadow, ShadowRulesStatPrefix: shadowPrefix(shadow)}
	return &hcmv3.HttpFilter{Name: vocab.FilterHTTPRBAC, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(f)}}
}

func networkFilter(rules, shadow *rbacv3.RBAC) *listenerv3.Filter {
	f := &rbacnetv3.RBAC{StatPrefix: "tcp.", Rules: rules, ShadowRules: shadow, ShadowRulesStatPrefix: shadowPrefix(shadow)}
	return &listenerv3.Filter{Name: vocab.FilterNetworkRBAC, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(f)}}
}

func shadowPrefix(shadow *rbacv3.RBAC) string {
	switch shadow.GetAction() {
	case rbacv3.RBAC_DENY:
		return "istio_dry_run_deny_"
	case rbacv3.RBAC_LOG:
		if shadow != nil {
			return ""
		}
	}
	return "istio_dry_run_allow_"
}

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(fmt.Sprintf("encoding %T: %v", m, err)) // only fails for invalid messages we build
	}
	return a
}

// errHTTPOnly marks a field a TCP chain cannot evaluate.
type errHTTPOnly string

func (e errHTTPOnly) Error() string { return fmt.Sprintf("%q is HTTP only", string(e)) }

// ruleBuilder translates one rule for one chain kind.
type ruleBuilder struct {
	o         Options
	tcp       bool
	allow     bool
	namespace string // the policy's, for serviceAccounts without a namespace
	httpOnly  bool   // the last rule was dropped for an HTTP-only field (not an error)
}

// rule builds one rule's RBAC policy. On a TCP chain, an HTTP-only field drops the whole rule of
// an ALLOW policy (errHTTPOnly) and only its own values otherwise.
func (b *ruleBuilder) rule(r *security.Rule) (*rbacv3.Policy, error) {
	b.httpOnly = false
	var whenPerm []*rbacv3.Permission
	var whenPrin []*rbacv3.Principal
	for _, c := range r.GetWhen() {
		perm, prin, err := b.condition(c)
		if err != nil {
			return nil, err
		}
		whenPerm = append(whenPerm, perm...)
		whenPrin = append(whenPrin, prin...)
	}
	p := &rbacv3.Policy{}
	for _, to := range r.GetTo() {
		rules, err := b.operation(to.GetOperation())
		if err != nil {
			return nil, err
		}
		p.Permissions = append(p.Permissions, andRules(append(rules, whenPerm...)))
	}
	if len(r.GetTo()) == 0 {
		p.Permissions = []*rbacv3.Permission{andRules(whenPerm)}
	}
	for _, from := range r.GetFrom() {
		ids, err := b.source(from.GetSource())
		if err != nil {
			return nil, err
		}
		p.Principals = append(p.Principals, andIDs(append(ids, whenPrin...)))
	}
	if len(r.GetFrom()) == 0 {
		p.Principals = []*rbacv3.Principal{andIDs(whenPrin)}
	}
	return p, nil
}

// httpField handles an HTTP-only field with values on a TCP chain: for ALLOW an error that drops
// the rule; otherwise skip reports that the values are dropped.
func (b *ruleBuilder) httpField(name string, n int) (skip bool, err error) {
	if !b.tcp || n == 0 {
		return false, nil
	}
	if b.allow {
		b.httpOnly = true
		return true, errHTTPOnly(name)
	}
	return true, nil
}

func (b *ruleBuilder) operation(op *security.Operation) ([]*rbacv3.Permission, error) {
	host := one(func(v string) (*rbacv3.Permission, error) { return headerPermission(":authority", v, true), nil })
	method := one(func(v string) (*rbacv3.Permission, error) { return headerPermission(":method", v, false), nil })
	path, port := one(pathPermission), one(portPermission)
	return appendFields(b, permissions, []field[*rbacv3.Permission]{
		{"hosts", op.GetHosts(), false, host, true}, {"notHosts", op.GetNotHosts(), true, host, true},
		{"methods", op.GetMethods(), false, method, true}, {"notMethods", op.GetNotMethods(), true, method, true},
		{"paths", op.GetPaths(), false, path, true}, {"notPaths", op.GetNotPaths(), true, path, true},
		{"ports", op.GetPorts(), false, port, false}, {"notPorts", op.GetNotPorts(), true, port, false},
	})
}

func (b *ruleBuilder) source(src *security.Source) ([]*rbacv3.Principal, error) {
	return appendFields(b, principals, []field[*rbacv3.Principal]{
		{"principals", src.GetPrincipals(), false, b.principal, false}, {"notPrincipals", src.GetNotPrincipals(), true, b.principal, false},
		{"requestPrincipals", src.GetRequestPrincipals(), false, requestPrincipal, true},
		{"notRequestPrincipals", src.GetNotRequestPrincipals(), true, requestPrincipal, true},
		{"serviceAccounts", src.GetServiceAccounts(), false, b.serviceAccount, false},
		{"notServiceAccounts", src.GetNotServiceAccounts(), true, b.serviceAccount, false},
		{"namespaces", src.GetNamespaces(), false, namespacePrincipal, false}, {"notNamespaces", src.GetNotNamespaces(), true, namespacePrincipal, false},
		{"remoteIpBlocks", src.GetRemoteIpBlocks(), false, remoteIP, false}, {"notRemoteIpBlocks", src.GetNotRemoteIpBlocks(), true, remoteIP, false},
		{"ipBlocks", src.GetIpBlocks(), false, directIP, false}, {"notIpBlocks", src.GetNotIpBlocks(), true, directIP, false},
	})
}

// combiner is how the matchers of a field's values combine, for permissions (or_rules,
// not_rule) or principals (or_ids, not_id).
type combiner[M any] struct {
	or  func([]M) M
	not func(M) M
}

var (
	permissions = combiner[*rbacv3.Permission]{
		or: func(rs []*rbacv3.Permission) *rbacv3.Permission {
			return &rbacv3.Permission{Rule: &rbacv3.Permission_OrRules{OrRules: &rbacv3.Permission_Set{Rules: rs}}}
		},
		not: func(r *rbacv3.Permission) *rbacv3.Permission {
			return &rbacv3.Permission{Rule: &rbacv3.Permission_NotRule{NotRule: r}}
		},
	}
	principals = combiner[*rbacv3.Principal]{
		or: func(ids []*rbacv3.Principal) *rbacv3.Principal {
			return &rbacv3.Principal{Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: ids}}}
		},
		not: func(id *rbacv3.Principal) *rbacv3.Principal {
			return &rbacv3.Principal{Identifier: &rbacv3.Principal_NotId{NotId: id}}
		},
	}
)

// one adapts a function that makes one matcher of a value to appendField's.
func one[M any](mk func(string) (M, error)) func(string) ([]M, error) {
	return func(v string) ([]M, error) {
		m, err := mk(v)
		return []M{m}, err
	}
}

// field is one field of an operation or source: its values, whether it is the not- form, how a
// value becomes matchers, and whether only an HTTP chain can evaluate it.
type field[M any] struct {
	name     string
	values   []string
	not      bool
	mk       func(string) ([]M, error)
	httpOnly bool
}

// appendFields returns the matchers of the fields that have values, in order.
func appendFields[M any](b *ruleBuilder, c combiner[M], fs []field[M]) ([]M, error) {
	var out []M
	for _, f := range fs {
		var err error
		if out, err = appendField(b, out, c, f.name, f.name, f.httpOnly, f.mk, valueSet{f.values, f.not}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// valueSet is a field's values, or the values of its not- form (notPaths, notValues).
type valueSet struct {
	values []string
	not    bool
}

// appendField appends to out one matcher per value set with values: mk's matchers of every
// value or'ed, negated for a not- set. An HTTP-only field with values on a TCP chain is left to
// b.httpField, under name; label starts the error about a value mk refuses.
func appendField[M any](b *ruleBuilder, out []M, c combiner[M], name, label string, httpOnly bool, mk func(string) ([]M, error), sets ...valueSet) ([]M, error) {
	n := 0
	for _, s := range sets {
		n += len(s.values)
	}
	if n == 0 {
		return out, nil
	}
	if httpOnly {
		if skip, err := b.httpField(name, n); skip {
			return out, err
		}
	}
	for _, s := range sets {
		if len(s.values) == 0 {
			continue
		}
		var or []M
		for _, v := range s.values {
			ms, err := mk(v)
			if err != nil {
				return out, fmt.Errorf("%s %q: %w", label, v, err)
			}
			or = append(or, ms...)
		}
		m := c.or(or)
		if s.not {
			m = c.not(m)
		}
		out = append(out, m)
	}
	return out, nil
}

// condition translates one `when` condition into permission or principal matchers by its key.
func (b *ruleBuilder) condition(c *security.Condition) (perm []*rbacv3.Permission, prin []*rbacv3.Principal, err error) {
	key := c.GetKey()
	sets := []valueSet{{c.GetValues(), false}, {c.GetNotValues(), true}}
	permField := func(mk func(string) (*rbacv3.Permission, error)) (err error) {
		perm, err = appendField(b, perm, permissions, key, "when "+key, false, one(mk), sets...)
		return err
	}
	prinField := func(mk func(string) ([]*rbacv3.Principal, error), httpOnly bool) (err error) {
		prin, err = appendField(b, prin, principals, key, "when "+key, httpOnly, mk, sets...)
		return err
	}
	switch {
	case key == "source.ip":
		err = prinField(directIP, false)
	case key == "remote.ip":
		err = prinField(remoteIP, false)
	case key == "source.namespace":
		err = prinField(namespacePrincipal, false)
	case key == "source.principal":
		err = prinField(b.principal, false)
	case strings.HasPrefix(key, "request.headers[") && strings.HasSuffix(key, "]"):
		name := key[len("request.headers[") : len(key)-1]
		err = prinField(func(v string) ([]*rbacv3.Principal, error) {
			return []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Header{Header: headerMatcher(name, v, false)}}}, nil
		}, true)
	case key == "request.auth.principal":
		err = prinField(requestPrincipal, true)
	case key == "request.auth.audiences", key == "request.auth.presenter", strings.HasPrefix(key, "request.auth.claims["):
		path, perr := claimPath(key)
		if perr != nil {
			return nil, nil, perr
		}
		err = prinField(func(v string) ([]*rbacv3.Principal, error) {
			return []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Metadata{Metadata: claimMatcher(path, v)}}}, nil
		}, true)
	case key == "destination.ip":
		err = permField(func(v string) (*rbacv3.Permission, error) {
			cidr, err := cidrRange(v)
			return &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationIp{DestinationIp: cidr}}, err
		})
	case key == "destination.port":
		err = permField(portPermission)
	case key == "connection.sni":
		err = permField(func(v string) (*rbacv3.Permission, error) {
			return &rbacv3.Permission{Rule: &rbacv3.Permission_RequestedServerName{RequestedServerName: stringMatcher(v, "")}}, nil
		})
	default:
		err = fmt.Errorf("when key %q is not supported", key)
	}
	return perm, prin, err
}

// stringMatcher converts an Istio value with its wildcards ("*", "prefix*", "*suffix") to an
// Envoy StringMatcher, with prefix prepended (Istio's StringMatcherWithPrefix).
func stringMatcher(v, prefix string) *matcherv3.StringMatcher {
	switch {
	case v == "*":
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: ".+"}}}
	case strings.HasPrefix(v, "*"):
		if prefix == "" {
			return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: v[1:]}}
		}
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: prefix + ".*" + v[1:]}}}
	case strings.HasSuffix(v, "*"):
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: prefix + v[:len(v)-1]}}
	}
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: prefix + v}}
}

// headerMatcher matches a header by an Istio value; "*" means present.
func headerMatcher(name, v string, ignoreCase bool) *routev3.HeaderMatcher {
	if v == "*" {
		return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}
	}
	sm := stringMatcher(v, "")
	sm.IgnoreCase = ignoreCase
	return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: sm}}
}

func headerPermission(name, v string, ignoreCase bool) *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: headerMatcher(name, v, ignoreCase)}}
}

// pathPermission matches the path; Istio's templates {*} and {**} become an Envoy URI template.
func pathPermission(v string) (*rbacv3.Permission, error) {
	if strings.Contains(v, "{*}") || strings.Contains(v, "{**}") {
		tmpl := strings.ReplaceAll(strings.ReplaceAll(v, "{**}", "**"), "{*}", "*")
		return &rbacv3.Permission{Rule: &rbacv3.Permission_UriTemplate{UriTemplate: &corev3.TypedExtensionConfig{
			Name: "uri-template", TypedConfig: mustAny(&uritemplatev3.UriTemplateMatchConfig{PathTemplate: tmpl})}}}, nil
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{
		Rule: &matcherv3.PathMatcher_Path{Path: stringMatcher(v, "")}}}}, nil
}

func portPermission(v string) (*rbacv3.Permission, error) {
	n, err := strconv.ParseUint(v, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("not a port: %w", err)
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationPort{DestinationPort: uint32(n)}}, nil
}

// principal matches the peer certificate's identity: Istio's "TD/ns/NS/sa/SA" values get the
// spiffe:// prefix, rewritten over the trust domain bundle.
func (b *ruleBuilder) principal(v string) ([]*rbacv3.Principal, error) {
	var out []*rbacv3.Principal
	for _, id := range b.trustDomainVariants(v) {
		out = append(out, &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{
			PrincipalName: stringMatcher(id, "spiffe://")}}})
	}
	return out, nil
}

// trustDomainVariants applies Istio's trust domain bundle to a principal: a value
// TD/ns/NS/sa/SA whose trust domain is the mesh's, one of its aliases or cluster.local stands
// for the same identity in every trust domain of the bundle.
func (b *ruleBuilder) trustDomainVariants(v string) []string {
	parts := strings.Split(v, "/")
	if len(parts) != 5 || parts[0] == "*" || len(b.o.TrustDomains) == 0 {
		return []string{v}
	}
	td := parts[0]
	known := td == "cluster.local"
	for _, t := range b.o.TrustDomains {
		known = known || t == td
	}
	if !known {
		return []string{v}
	}
	out := make([]string, 0, len(b.o.TrustDomains))
	for _, t := range b.o.TrustDomains {
		out = append(out, t+"/"+strings.Join(parts[1:], "/"))
	}
	return out
}

// serviceAccount matches "NS/SA" (or "SA" in the policy's namespace) in any trust domain.
func (b *ruleBuilder) serviceAccount(v string) ([]*rbacv3.Principal, error) {
	ns, sa := config.ParseServiceAccount(v, b.namespace)
	re := "spiffe://[^/]+/ns/" + regexp.QuoteMeta(ns) + "/sa/" + regexp.QuoteMeta(sa)
	return []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{
		PrincipalName: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}}}}}}, nil
}

func namespacePrincipal(v string) ([]*rbacv3.Principal, error) {
	re := ".*/ns/" + strings.ReplaceAll(v, "*", ".*") + "/.*"
	return []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{
		PrincipalName: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}}}}}}, nil
}

func directIP(v string) ([]*rbacv3.Principal, error) {
	c, err := cidrRange(v)
	return []*rbacv3.Principal{{Identifier: &rbacv3.Principal_DirectRemoteIp{DirectRemoteIp: c}}}, err
}

func remoteIP(v string) ([]*rbacv3.Principal, error) {
	c, err := cidrRange(v)
	return []*rbacv3.Principal{{Identifier: &rbacv3.Principal_RemoteIp{RemoteIp: c}}}, err
}

// cidrRange parses an IP or CIDR; the address is kept as written (not masked), as Istio does.
func cidrRange(v string) (*corev3.CidrRange, error) {
	addr, bits, hasBits := strings.Cut(v, "/")
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return nil, fmt.Errorf("not an IP address or CIDR")
	}
	n := uint64(ip.BitLen())
	if hasBits {
		if n, err = strconv.ParseUint(bits, 10, 8); err != nil || n > uint64(ip.BitLen()) {
			return nil, fmt.Errorf("bad prefix length")
		}
	}
	return &corev3.CidrRange{AddressPrefix: addr, PrefixLen: wrapperspb.UInt32(uint32(n))}, nil
}

// requestPrincipal matches the JWT's "iss/sub" (split at the last '/') in the jwt_authn filter's
// payload metadata, as istiod 1.21+ does.
func requestPrincipal(v string) ([]*rbacv3.Principal, error) {
	var iss, sub *matcherv3.StringMatcher
	switch i := strings.LastIndexByte(v, '/'); {
	case v == "*":
		iss, sub = stringMatcher("*", ""), stringMatcher("*", "")
	case i >= 0:
		iss, sub = stringMatcher(v[:i], ""), stringMatcher(v[i+1:], "")
		if v[i+1:] == "" {
			sub = stringMatcher("*", "")
		}
	case strings.HasSuffix(v, "*"):
		iss, sub = stringMatcher(v, ""), stringMatcher("*", "")
	case strings.HasPrefix(v, "*"):
		iss, sub = stringMatcher("*", ""), stringMatcher(v, "")
	default:
		iss, sub = stringMatcher(v, ""), &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: ""}}
	}
	md := func(key string, m *matcherv3.StringMatcher) *rbacv3.Principal {
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_Metadata{Metadata: &matcherv3.MetadataMatcher{
			Filter: vocab.FilterJWTAuthn,
			Path:   []*matcherv3.MetadataMatcher_PathSegment{{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: "payload"}}, {Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: key}}},
			Value:  &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_StringMatch{StringMatch: m}},
		}}}
	}
	return []*rbacv3.Principal{andIDs([]*rbacv3.Principal{md("iss", iss), md("sub", sub)})}, nil
}

// claimPath returns the payload path of request.auth.audiences (aud), .presenter (azp) and
// .claims[a][b]... .
func claimPath(key string) ([]string, error) {
	switch key {
	case "request.auth.audiences":
		return []string{"aud"}, nil
	case "request.auth.presenter":
		return []string{"azp"}, nil
	}
	rest := strings.TrimPrefix(key, "request.auth.claims")
	var path []string
	for rest != "" {
		if rest[0] != '[' {
			return nil, fmt.Errorf("when key %q: want request.auth.claims[NAME][NAME]...", key)
		}
		end := strings.IndexByte(rest, ']')
		if end <= 1 {
			return nil, fmt.Errorf("when key %q: want request.auth.claims[NAME][NAME]...", key)
		}
		path = append(path, rest[1:end])
		rest = rest[end+1:]
	}
	if len(path) == 0 {
		return nil, fmt.Errorf("when key %q: no claim named", key)
	}
	return path, nil
}

// claimMatcher matches a claim that is a string equal to v or a list holding v.
func claimMatcher(path []string, v string) *matcherv3.MetadataMatcher {
	segs := []*matcherv3.MetadataMatcher_PathSegment{{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: "payload"}}}
	for _, p := range path {
		segs = append(segs, &matcherv3.MetadataMatcher_PathSegment{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: p}})
	}
	sv := &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_StringMatch{StringMatch: stringMatcher(v, "")}}
	return &matcherv3.MetadataMatcher{Filter: vocab.FilterJWTAuthn, Path: segs, Value: &matcherv3.ValueMatcher{
		MatchPattern: &matcherv3.ValueMatcher_OrMatch{OrMatch: &matcherv3.OrMatcher{ValueMatchers: []*matcherv3.ValueMatcher{
			{MatchPattern: &matcherv3.ValueMatcher_ListMatch{ListMatch: &matcherv3.ListMatcher{
				MatchPattern: &matcherv3.ListMatcher_OneOf{OneOf: sv}}}},
			sv,
		}}}}}
}

func anyPermission() *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_Any{Any: true}}
}

func anyPrincipal() *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Any{Any: true}}
}

func andRules(rules []*rbacv3.Permission) *rbacv3.Permission {
	if len(rules) == 0 {
		rules = []*rbacv3.Permission{anyPermission()}
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_AndRules{AndRules: &rbacv3.Permission_Set{Rules: rules}}}
}

func andIDs(ids []*rbacv3.Principal) *rbacv3.Principal {
	if len(ids) == 0 {
		ids = []*rbacv3.Principal{anyPrincipal()}
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_AndIds{AndIds: &rbacv3.Principal_Set{Ids: ids}}}
}
