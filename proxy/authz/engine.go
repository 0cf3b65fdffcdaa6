package authz

import (
	"fmt"
	"slices"

	"github.com/strait-mesh/strait/proxy/xdsfield"
	rbacv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/rbac/v3"
)

// Action is what an Engine does with a request that matches one of its policies.
type Action uint8

const (
	// Allow lets a request through iff some policy matches (Envoy's ALLOW; no policy denies all).
	Allow Action = iota
	// Deny refuses a request iff some policy matches (Envoy's DENY).
	Deny
	// Log lets every request through; a match only marks it for access logging (Envoy's LOG,
	// the access_log_hint in the "envoy.common" metadata namespace).
	Log
)

// String returns Envoy's name of the action.
func (a Action) String() string {
	switch a {
	case Allow:
		return "ALLOW"
	case Deny:
		return "DENY"
	case Log:
		return "LOG"
	}
	return fmt.Sprintf("Action(%d)", uint8(a))
}

// Decision is the result of one evaluation.
type Decision struct {
	// Allowed reports whether the request may proceed.
	Allowed bool
	// Matched reports whether some policy matched. With Log it says whether the request should
	// be logged (Envoy's access_log_hint).
	Matched bool
	// Policy is the name of the matched policy ("" when none matched): the first in byte order
	// of the names, as Envoy iterates its ordered map. It is Envoy's effective policy ID, for the
	// access log, the response details and `strait explain`.
	Policy string
}

// Engine is a compiled envoy.config.rbac.v3.RBAC. It is immutable and safe for concurrent use.
// A nil *Engine stands for an absent `rules` field: it allows everything and matches nothing.
type Engine struct {
	action   Action
	policies []policy // sorted by name
}

type policy struct {
	name        string
	permissions []rule // any may match
	principals  []rule // any may match
}

// rbacActions are the RBAC actions strait-proxy implements.
var rbacActions = map[rbacv3.RBAC_Action]Action{
	rbacv3.RBAC_ALLOW: Allow,
	rbacv3.RBAC_DENY:  Deny,
	rbacv3.RBAC_LOG:   Log,
}

// Compile validates rules and compiles its matchers. path names the message in errors (e.g.
// "rules" or "shadow_rules"). Any field strait-proxy does not implement is an
// *xdsfield.UnsupportedError naming it; the caller NACKs the update. Supported:
//
//	RBAC: action (ALLOW, DENY, LOG), policies
//	Policy: permissions, principals
//	Permission: and_rules, or_rules, not_rule, any, header, url_path, uri_template,
//	  destination_ip, destination_port, destination_port_range, metadata,
//	  sourced_metadata (DYNAMIC), requested_server_name
//	Principal: and_ids, or_ids, not_id, any, authenticated, source_ip, direct_remote_ip,
//	  remote_ip, header, url_path, metadata, sourced_metadata (DYNAMIC), filter_state
//	  (string_match)
//
// Refused: RBAC.audit_logging_options, Policy.condition / checked_condition / cel_config (CEL),
// Permission.matcher and Principal.custom (extensions), FilterStateMatcher.address_match,
// SourcedMetadata ROUTE, StringMatcher.custom.
func Compile(rules *rbacv3.RBAC, path string) (*Engine, error) {
	if rules == nil {
		return nil, fmt.Errorf("%s: missing RBAC rules", path)
	}
	if err := xdsfield.Check(rules, path, "action", "policies"); err != nil {
		return nil, err
	}
	action, ok := rbacActions[rules.GetAction()]
	if !ok {
		return nil, fmt.Errorf("%s.action: unknown action %d", path, rules.GetAction())
	}
	e := &Engine{action: action}
	names := make([]string, 0, len(rules.GetPolicies()))
	for name := range rules.GetPolicies() {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		p, err := compilePolicy(policyField(path, name), rules.GetPolicies()[name])
		if err != nil {
			return nil, err
		}
		p.name = name
		e.policies = append(e.policies, p)
	}
	// protoc-gen-validate's rules, which Envoy applies to every config it loads (non-empty
	// permission and id lists, prefix/suffix/contains of at least one byte, ports, ...).
	if err := validateRBAC(path, rules); err != nil {
		return nil, err
	}
	return e, nil
}

func compilePolicy(field string, p *rbacv3.Policy) (policy, error) {
	if p == nil {
		return policy{}, fmt.Errorf("%s: missing policy", field)
	}
	if err := xdsfield.Check(p, field, "permissions", "principals"); err != nil {
		return policy{}, err
	}
	// Envoy requires at least one of each (min_items: 1).
	if len(p.GetPermissions()) == 0 {
		return policy{}, fmt.Errorf("%s.permissions: empty", field)
	}
	if len(p.GetPrincipals()) == 0 {
		return policy{}, fmt.Errorf("%s.principals: empty", field)
	}
	var out policy
	for i, pm := range p.GetPermissions() {
		r, err := compilePermission(fmt.Sprintf("%s.permissions[%d]", field, i), pm, 1)
		if err != nil {
			return policy{}, err
		}
		out.permissions = append(out.permissions, r)
	}
	for i, pr := range p.GetPrincipals() {
		r, err := compilePrincipal(fmt.Sprintf("%s.principals[%d]", field, i), pr, 1)
		if err != nil {
			return policy{}, err
		}
		out.principals = append(out.principals, r)
	}
	return out, nil
}

// Action returns the engine's action.
func (e *Engine) Action() Action {
	if e == nil {
		return Allow
	}
	return e.action
}

// Policies returns the policy names in evaluation order.
func (e *Engine) Policies() []string {
	if e == nil {
		return nil
	}
	out := make([]string, len(e.policies))
	for i := range e.policies {
		out[i] = e.policies[i].name
	}
	return out
}

// Evaluate decides on an HTTP request (the HTTP RBAC filter). It does not retain r.
func (e *Engine) Evaluate(r Request) Decision {
	if e == nil {
		return Decision{Allowed: true}
	}
	return e.decide(&input{c: r, r: r})
}

// EvaluateConnection decides on a connection (the network RBAC filter): header rules see no
// headers (Envoy evaluates them against an empty header map) and url_path / uri_template never
// match. It does not retain c.
func (e *Engine) EvaluateConnection(c Connection) Decision {
	if e == nil {
		return Decision{Allowed: true}
	}
	return e.decide(&input{c: c})
}

func (e *Engine) decide(in *input) Decision {
	d := Decision{}
	for i := range e.policies {
		if e.policies[i].match(in) {
			d.Matched, d.Policy = true, e.policies[i].name
			break
		}
	}
	switch e.action {
	case Allow:
		d.Allowed = d.Matched
	case Deny:
		d.Allowed = !d.Matched
	default:
		d.Allowed = true
	}
	return d
}

// MatchingPolicies returns the names of every policy that matches r (not only the first, which
// Evaluate reports), for `strait explain`. It allocates.
func (e *Engine) MatchingPolicies(r Request) []string {
	return e.matching(&input{c: r, r: r})
}

// MatchingPoliciesConnection is MatchingPolicies for the network filter.
func (e *Engine) MatchingPoliciesConnection(c Connection) []string {
	return e.matching(&input{c: c})
}

func (e *Engine) matching(in *input) []string {
	if e == nil {
		return nil
	}
	var out []string
	for i := range e.policies {
		if e.policies[i].match(in) {
			out = append(out, e.policies[i].name)
		}
	}
	return out
}

// match reports whether any permission and any principal match. Envoy evaluates permissions
// first; the rules have no side effects, so the order changes nothing but speed.
func (p *policy) match(in *input) bool {
	ok := false
	for i := range p.permissions {
		if p.permissions[i].match(in) {
			ok = true
			break
		}
	}
	if !ok {
		return false
	}
	for i := range p.principals {
		if p.principals[i].match(in) {
			return true
		}
	}
	return false
}
