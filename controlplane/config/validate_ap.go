package config

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	security "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
)

// Limits of the AuthorizationPolicy CRD schema (istio.io/api security/v1beta1, type/v1beta1).
const (
	maxTargetRefs         = 16  // targetRefs
	maxAuthzRules         = 512 // rules
	maxAuthzFrom          = 512 // rules[].from
	maxServiceAccounts    = 16  // serviceAccounts, notServiceAccounts
	maxServiceAccountSize = 320 // each serviceAccounts value
)

// validateAuthorizationPolicy checks an AuthorizationPolicy with the rules of Istio's validation
// webhook (pkg/config/validation ValidateAuthorizationPolicy and pkg/config/security) and of its
// CRD schema, https://istio.io/latest/docs/reference/config/security/authorization-policy/:
//   - at most one of selector, targetRef and targetRefs; target references as validateTargetRef;
//   - action CUSTOM needs rules (an empty rule {} matches every request) and provider.name, and
//     its rules may not match on peer or JWT identities (namespaces, principals, serviceAccounts,
//     requestPrincipals and their when keys; Strait adds trustDomains); provider only with action
//     CUSTOM;
//   - action DENY needs rules;
//   - every from has a source and every to an operation, neither empty; every value is a
//     non-empty string; ipBlocks are IPs or CIDRs, ports numbers in 0-65535, paths valid path
//     templates; serviceAccounts ("ns/name" or "name", no '*') exclude principals and namespaces;
//   - every condition has a known key (ParseConditionKey) and values or notValues of the key's
//     format (IPs, ports, service accounts).
//
// Strait is stricter than Istio in a few places where Istio accepts a policy that cannot mean
// what it says: a '*' that is not alone, leading or trailing (Istio would match it as a literal
// '*' — a DENY that never matches); header and method names that are not HTTP tokens; namespaces
// and service accounts that are not Kubernetes names; IPv6 zones in IPs; malformed bracketed
// names in condition keys (Istio only checks for "a[b]").
func validateAuthorizationPolicy(fe *fieldErrs, ap *security.AuthorizationPolicy) {
	validatePolicyTarget(fe, ap.GetSelector(), ap.GetTargetRef(), ap.GetTargetRefs())
	action := ap.GetAction()
	if _, ok := security.AuthorizationPolicy_Action_name[int32(action)]; !ok {
		fe.add("spec.action", "invalid action %d (valid: ALLOW, DENY, AUDIT, CUSTOM)", int32(action))
	}
	custom := action == security.AuthorizationPolicy_CUSTOM
	switch {
	case custom && ap.GetProvider().GetName() == "":
		fe.add("spec.provider.name", "provider.name is required with action CUSTOM: it names an extension provider of the mesh config")
	case !custom && ap.GetProvider() != nil:
		fe.add("spec.provider", "provider is allowed only with action CUSTOM, not %s", action)
	}
	if ap.GetRules() == nil && (custom || action == security.AuthorizationPolicy_DENY) {
		fe.add("spec.rules", "a %s policy without rules never matches; add an empty rule {} to apply it to every request", action)
	}
	if n := len(ap.GetRules()); n > maxAuthzRules {
		fe.add("spec.rules", "%d rules, more than the limit of %d", n, maxAuthzRules)
		return
	}
	eachItem(fe, "spec.rules", ap.GetRules(), "rule", func(_ int, p string, r *security.Rule) {
		validateAuthzRule(fe, p, r, custom)
	})
}

// validateAuthzRule checks one rule; custom reports whether the policy's action is CUSTOM.
func validateAuthzRule(fe *fieldErrs, p string, r *security.Rule, custom bool) {
	if n := len(r.GetFrom()); n > maxAuthzFrom {
		fe.add(p+".from", "%d sources, more than the limit of %d", n, maxAuthzFrom)
	} else {
		eachItem(fe, p+".from", r.GetFrom(), "from", func(_ int, fp string, f *security.Rule_From) {
			if f.GetSource() == nil {
				fe.add(fp+".source", "source is required")
				return
			}
			validateAuthzSource(fe, fp+".source", f.GetSource(), custom)
		})
	}
	eachItem(fe, p+".to", r.GetTo(), "to", func(_ int, tp string, t *security.Rule_To) {
		if t.GetOperation() == nil {
			fe.add(tp+".operation", "operation is required")
			return
		}
		validateAuthzOperation(fe, tp+".operation", t.GetOperation())
	})
	for j, c := range r.GetWhen() {
		validateAuthzCondition(fe, fmt.Sprintf("%s.when[%d]", p, j), c, custom)
	}
}

// validateAuthzSource checks a rule's from.source.
func validateAuthzSource(fe *fieldErrs, p string, s *security.Source, custom bool) {
	lists := []struct {
		name   string
		values []string
		check  func(fe *fieldErrs, path, v string)
		peer   bool // an identity CUSTOM cannot match on
	}{
		{"principals", s.GetPrincipals(), checkMatchValue, true},
		{"notPrincipals", s.GetNotPrincipals(), checkMatchValue, true},
		{"requestPrincipals", s.GetRequestPrincipals(), checkMatchValue, true},
		{"notRequestPrincipals", s.GetNotRequestPrincipals(), checkMatchValue, true},
		{"namespaces", s.GetNamespaces(), checkNamespaceValue, true},
		{"notNamespaces", s.GetNotNamespaces(), checkNamespaceValue, true},
		{"serviceAccounts", s.GetServiceAccounts(), checkServiceAccount, true},
		{"notServiceAccounts", s.GetNotServiceAccounts(), checkServiceAccount, true},
		{"trustDomains", s.GetTrustDomains(), checkMatchValue, true},
		{"notTrustDomains", s.GetNotTrustDomains(), checkMatchValue, true},
		{"ipBlocks", s.GetIpBlocks(), checkIPBlock, false},
		{"notIpBlocks", s.GetNotIpBlocks(), checkIPBlock, false},
		{"remoteIpBlocks", s.GetRemoteIpBlocks(), checkIPBlock, false},
		{"notRemoteIpBlocks", s.GetNotRemoteIpBlocks(), checkIPBlock, false},
	}
	empty := true
	for _, l := range lists {
		if len(l.values) == 0 {
			continue
		}
		empty = false
		lp := p + "." + l.name
		if custom && l.peer {
			fe.add(lp, "%s is not supported with action CUSTOM", l.name)
			continue
		}
		if (l.name == "serviceAccounts" || l.name == "notServiceAccounts") && len(l.values) > maxServiceAccounts {
			fe.add(lp, "%d values, more than the limit of %d", len(l.values), maxServiceAccounts)
			continue
		}
		checkValues(fe, lp, l.values, l.check)
	}
	if empty {
		fe.add(p, "source must set at least one field (principals, namespaces, serviceAccounts, ipBlocks, ...); omit it to match any source")
	}
	if len(s.GetServiceAccounts())+len(s.GetNotServiceAccounts()) > 0 &&
		len(s.GetPrincipals())+len(s.GetNotPrincipals())+len(s.GetNamespaces())+len(s.GetNotNamespaces()) > 0 {
		fe.add(p, "serviceAccounts and notServiceAccounts cannot be set with principals or namespaces")
	}
}

// validateAuthzOperation checks a rule's to.operation.
func validateAuthzOperation(fe *fieldErrs, p string, o *security.Operation) {
	lists := []struct {
		name   string
		values []string
		check  func(fe *fieldErrs, path, v string)
	}{
		{"hosts", o.GetHosts(), checkMatchValue},
		{"notHosts", o.GetNotHosts(), checkMatchValue},
		{"ports", o.GetPorts(), checkPortValue},
		{"notPorts", o.GetNotPorts(), checkPortValue},
		{"methods", o.GetMethods(), checkMethod},
		{"notMethods", o.GetNotMethods(), checkMethod},
		{"paths", o.GetPaths(), checkPath},
		{"notPaths", o.GetNotPaths(), checkPath},
	}
	empty := true
	for _, l := range lists {
		if len(l.values) > 0 {
			empty = false
			checkValues(fe, p+"."+l.name, l.values, l.check)
		}
	}
	if empty {
		fe.add(p, "operation must set at least one field (hosts, ports, methods, paths, ...); omit it to match any operation")
	}
}

// validateAuthzCondition checks one condition (rules[].when[]).
func validateAuthzCondition(fe *fieldErrs, p string, c *security.Condition, custom bool) {
	if c == nil {
		fe.add(p, "condition must not be null")
		return
	}
	if c.GetKey() == "" {
		fe.add(p+".key", "key is required")
		return
	}
	k, err := ParseConditionKey(c.GetKey())
	if err != nil {
		fe.add(p+".key", "%v", err)
		return
	}
	if custom {
		switch k.Attribute {
		case AttrSourceNamespace, AttrSourceServiceAccount, AttrSourcePrincipal, AttrRequestPrincipal,
			AttrRequestAudiences, AttrRequestPresenter, AttrRequestClaims:
			fe.add(p+".key", "key %s is not supported with action CUSTOM", c.GetKey())
			return
		}
	}
	if len(c.GetValues()) == 0 && len(c.GetNotValues()) == 0 {
		fe.add(p, "at least one of values or notValues must be set for key %s", c.GetKey())
		return
	}
	var check func(fe *fieldErrs, path, v string)
	switch k.Attribute {
	case AttrSourceIP, AttrRemoteIP, AttrDestinationIP:
		check = checkIPBlock
	case AttrDestinationPort:
		check = checkPortValue
	case AttrSourceNamespace:
		check = checkNamespaceValue
	case AttrSourceServiceAccount:
		check = checkServiceAccount
	case AttrEnvoyFilters:
		check = checkMetadataValue
	default:
		check = checkMatchValue
	}
	if k.Attribute == AttrRequestHeaders || k.Attribute == AttrRequestInlineHeaders {
		validateHeaderName(fe, p+".key", k.Names[0])
	}
	if k.Attribute == AttrSourceServiceAccount {
		for _, l := range [][]string{c.GetValues(), c.GetNotValues()} {
			if len(l) > maxServiceAccounts {
				fe.add(p, "%d values, more than the limit of %d", len(l), maxServiceAccounts)
				return
			}
		}
	}
	checkValues(fe, p+".values", c.GetValues(), check)
	checkValues(fe, p+".notValues", c.GetNotValues(), check)
}

// checkValues checks each value of a list: not empty, then check.
func checkValues(fe *fieldErrs, p string, values []string, check func(fe *fieldErrs, path, v string)) {
	for i, v := range values {
		vp := fmt.Sprintf("%s[%d]", p, i)
		if v == "" {
			fe.add(vp, "empty value")
			continue
		}
		check(fe, vp, v)
	}
}

// checkMatchValue checks a value matched by ParseValueMatch: '*' only alone, leading or trailing.
func checkMatchValue(fe *fieldErrs, p, v string) {
	if msg := wildcardErr(v); msg != "" {
		fe.add(p, "%s", msg)
	}
}

// wildcardErr returns why v's '*' is not one Istio treats as a wildcard, or "".
func wildcardErr(v string) string {
	n := strings.Count(v, "*")
	if n == 0 || v == "*" || n == 1 && (v[0] == '*' || v[len(v)-1] == '*') {
		return ""
	}
	return fmt.Sprintf("invalid value %s: '*' is a wildcard only alone (\"*\"), leading (\"*suffix\") or trailing (\"prefix*\"); Istio would match any other '*' literally", quoteShort(v))
}

// namespaceGlobRE is a namespace name in which Istio reads each '*' as "any characters".
var namespaceGlobRE = regexp.MustCompile(`^[a-z0-9*]([-a-z0-9*]*[a-z0-9*])?$`)

// checkNamespaceValue checks a namespaces value or source.namespace condition value.
func checkNamespaceValue(fe *fieldErrs, p, v string) {
	if len(v) > 63 || !namespaceGlobRE.MatchString(v) {
		fe.add(p, "invalid namespace %s: %s, or '*' wildcards", quoteShort(v), dns1123LabelMsg)
	}
}

// checkServiceAccount checks a serviceAccounts value: "namespace/name" or "name", no wildcard.
func checkServiceAccount(fe *fieldErrs, p, v string) {
	if len(v) > maxServiceAccountSize {
		fe.add(p, "service account %s is longer than %d characters", quoteShort(v), maxServiceAccountSize)
		return
	}
	if strings.Contains(v, "*") {
		fe.add(p, "invalid service account %s: wildcards are not allowed", quoteShort(v))
		return
	}
	ns, name, found := strings.Cut(v, "/")
	if !found {
		ns, name = "", v
	}
	switch {
	case strings.Contains(name, "/"):
		fe.add(p, "invalid service account %s: want \"namespace/name\" or \"name\"", quoteShort(v))
	case found && !isDNS1123Label(ns):
		fe.add(p, "invalid service account %s: namespace %s", quoteShort(v), dns1123LabelMsg)
	case !isDNS1123Subdomain(name):
		fe.add(p, "invalid service account %s: name %s", quoteShort(v), dns1123SubdomainMsg)
	}
}

// checkIPBlock checks an IP address or CIDR block (without zone).
func checkIPBlock(fe *fieldErrs, p, v string) {
	if strings.Contains(v, "/") {
		if !isCIDR(v) {
			fe.add(p, "invalid CIDR block %s", quoteShort(v))
		}
		return
	}
	if !isIP(v) {
		fe.add(p, "invalid IP address %s", quoteShort(v))
	}
}

// checkPortValue checks a port number as a string, 0-65535 (Istio's range for ports).
func checkPortValue(fe *fieldErrs, p, v string) {
	if n, err := strconv.ParseUint(v, 10, 32); err != nil || n > 65535 {
		fe.add(p, "invalid port %s: want a number in 0-65535", quoteShort(v))
	}
}

// checkMethod checks an HTTP method: a token, with Istio's wildcards.
func checkMethod(fe *fieldErrs, p, v string) {
	if msg := wildcardErr(v); msg != "" {
		fe.add(p, "%s", msg)
		return
	}
	if m := strings.Trim(v, "*"); m != "" && !httpTokenRE.MatchString(m) {
		fe.add(p, "invalid method %s: not an HTTP token", quoteShort(v))
	}
}

// checkMetadataValue checks a value of an experimental.envoy.filters condition: a match value, or
// "[value]" to match one element of a list.
func checkMetadataValue(fe *fieldErrs, p, v string) {
	if strings.HasPrefix(v, "[") && strings.HasSuffix(v, "]") {
		v = strings.Trim(v, "[]")
		if v == "" {
			fe.add(p, "empty list element value")
			return
		}
	}
	checkMatchValue(fe, p, v)
}

// pathLiteralRE is a path segment next to a template operator: RFC 3986 pchars (Envoy's rule).
var pathLiteralRE = regexp.MustCompile(`^[a-zA-Z0-9\-._~%!$&'()+,;:@=]+$`)

// checkPath checks an Operation path. A path with "{*}" or "{**}" is an Envoy URI template: each
// segment is "{*}", "{**}" or literal pchars, with no operator after "{**}". Any other path may
// not contain '{' or '}', and its '*' follows ParseValueMatch.
func checkPath(fe *fieldErrs, p, v string) {
	if !IsPathTemplate(v) {
		if strings.ContainsAny(v, "{}") {
			fe.add(p, "invalid path %s: '{' and '}' are allowed only in the template operators {*} and {**}", quoteShort(v))
			return
		}
		checkMatchValue(fe, p, v)
		return
	}
	anySeen := false
	for _, seg := range strings.Split(strings.Trim(v, "/"), "/") {
		switch {
		case (seg == PathMatchOne || seg == PathMatchAny) && anySeen:
			fe.add(p, "invalid path template %s: {**} must be the last operator", quoteShort(v))
			return
		case seg == PathMatchOne:
		case seg == PathMatchAny:
			anySeen = true
		case strings.ContainsAny(seg, "{}"):
			fe.add(p, "invalid path template %s: segment %s: an operator {*} or {**} must be a whole path segment", quoteShort(v), quoteShort(seg))
			return
		case !pathLiteralRE.MatchString(seg):
			fe.add(p, "invalid path template %s: segment %s must be non-empty and of letters, digits and -._~%%!$&'()+,;:@= (no '*' outside {*} and {**})", quoteShort(v), quoteShort(seg))
			return
		}
	}
}

// validatePolicyTarget checks where a security policy applies: a selector, or target references,
// or neither (the whole namespace).
func validatePolicyTarget(fe *fieldErrs, sel *typev1beta1.WorkloadSelector, ref *typev1beta1.PolicyTargetReference, refs []*typev1beta1.PolicyTargetReference) {
	set := 0
	for _, b := range []bool{sel != nil, ref != nil, len(refs) > 0} {
		if b {
			set++
		}
	}
	if set > 1 {
		fe.add("spec", "only one of selector, targetRef and targetRefs may be set")
	}
	validatePolicySelector(fe, "spec.selector", sel)
	if ref != nil {
		validateTargetRef(fe, "spec.targetRef", ref)
	}
	if len(refs) > maxTargetRefs {
		fe.add("spec.targetRefs", "%d target references, more than the limit of %d", len(refs), maxTargetRefs)
		return
	}
	eachItem(fe, "spec.targetRefs", refs, "target reference", func(_ int, p string, r *typev1beta1.PolicyTargetReference) {
		validateTargetRef(fe, p, r)
	})
}

var (
	targetGroupRE = regexp.MustCompile(`^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	targetKindRE  = regexp.MustCompile(`^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$`)
)

// targetKinds are the resources a policy may be attached to, by group ("" for core) and kind.
var targetKinds = map[[2]string]bool{
	{"", "Service"}:                               true,
	{Group, "ServiceEntry"}:                       true,
	{"gateway.networking.k8s.io", "Gateway"}:      true,
	{"gateway.networking.k8s.io", "GatewayClass"}: true,
}

// validateTargetRef checks a policy target reference (PolicyTargetReference): name required, no
// namespace (cross-namespace references are not supported), group and kind of the CRD's
// patterns and one of core Service, networking.istio.io ServiceEntry, or the Gateway API's
// Gateway and GatewayClass (the latter only means something for a policy in the root namespace).
func validateTargetRef(fe *fieldErrs, p string, r *typev1beta1.PolicyTargetReference) {
	switch n := r.GetName(); {
	case n == "":
		fe.add(p+".name", "name is required")
	case len(n) > 253:
		fe.add(p+".name", "name is longer than 253 characters")
	}
	if r.GetNamespace() != "" {
		fe.add(p+".namespace", "namespace must not be set: cross-namespace references are not supported")
	}
	g, k := r.GetGroup(), r.GetKind()
	if len(g) > 253 || !targetGroupRE.MatchString(g) {
		fe.add(p+".group", "invalid group %s", quoteShort(g))
		return
	}
	if k == "" {
		fe.add(p+".kind", "kind is required")
		return
	}
	if len(k) > 63 || !targetKindRE.MatchString(k) {
		fe.add(p+".kind", "invalid kind %s", quoteShort(k))
		return
	}
	if !targetKinds[[2]string{TargetRefGroup(r), k}] {
		fe.add(p, "cannot target %s/%s: want core Service, networking.istio.io ServiceEntry, or gateway.networking.k8s.io Gateway or GatewayClass", g, k)
	}
}

// validateDryRunAnnotation checks the istio.io/dry-run annotation, as Istio does for every kind:
// only an AuthorizationPolicy with action ALLOW or DENY may have it, and its value must be a
// boolean. Kubernetes' own kinds (Secret) are not Istio's to check.
func validateDryRunAnnotation(fe *fieldErrs, o *Object) {
	v, ok := o.Annotations[DryRunAnnotation]
	if !ok || !strings.HasSuffix(GroupFor(o.Kind), "istio.io") {
		return
	}
	if msg := dryRunErr(o, v); msg != "" {
		fe.add("metadata.annotations["+quoteShort(DryRunAnnotation)+"]", "%s", msg)
	}
}

// dryRunErr returns why value v of the dry-run annotation is not valid on o, or "".
func dryRunErr(o *Object, v string) string {
	ap, ok := o.Spec.(*security.AuthorizationPolicy)
	if o.Kind != AuthorizationPolicy || !ok {
		return fmt.Sprintf("only an AuthorizationPolicy may have this annotation, not a %s; remove it", o.Kind)
	}
	switch a := ap.GetAction(); a {
	case security.AuthorizationPolicy_ALLOW, security.AuthorizationPolicy_DENY:
	default:
		return fmt.Sprintf("dry-run is supported only for action ALLOW or DENY, not %s", a)
	}
	if _, err := strconv.ParseBool(v); err != nil {
		return fmt.Sprintf("invalid value %s: want \"true\" or \"false\"", quoteShort(v))
	}
	return ""
}
