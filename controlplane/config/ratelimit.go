package config

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	security "istio.io/api/security/v1beta1"

	ext "github.com/strait-mesh/strait/controlplane/config/extensionsv1alpha1"
)

// RateLimit (extensions.strait.io/v1alpha1) has a *extensionsv1alpha1.RateLimit spec: Strait's
// first-class rate limit policy (docs/ratelimit.md). Its rules match requests as
// AuthorizationPolicy rules do; the helpers below give the translator the same reading of their
// values as validation.
const RateLimit Kind = "RateLimit"

// Scopes of a RateLimit rule.
const (
	// RateLimitScopeLocal gives each proxy its own budget (the default).
	RateLimitScopeLocal = "Local"
	// RateLimitScopeGlobal shares one budget between the proxies the RateLimit selects, kept by
	// straitd's rate limit service.
	RateLimitScopeGlobal = "Global"
)

// What a Global rule does when the rate limit service cannot answer (onServiceError).
const (
	// RateLimitOnErrorAllow lets the request through (the default): a rate limiter that fails
	// should not turn into an outage of everything behind it.
	RateLimitOnErrorAllow = "Allow"
	// RateLimitOnErrorDeny answers 500.
	RateLimitOnErrorDeny = "Deny"
)

// RateLimitByRemoteIP is the by attribute of the client's address (Istio's remote.ip: the
// downstream address after X-Forwarded-For processing).
const RateLimitByRemoteIP = AttrRemoteIP

// RateLimitGlobalPers are the values limit.per may take in a Global rule: the units of the
// rate limit service's fixed windows (second, minute, hour, day).
var RateLimitGlobalPers = []time.Duration{time.Second, time.Minute, time.Hour, 24 * time.Hour}

// Limits of a RateLimit.
const (
	// MaxRateLimitRules bounds the rules of one RateLimit: each is one filter on each selected
	// connection manager.
	MaxRateLimitRules = 32
	// MinRateLimitPer and MaxRateLimitPer bound limit.per. Envoy refuses token bucket fill
	// intervals under 50ms.
	MinRateLimitPer = 50 * time.Millisecond
	MaxRateLimitPer = 24 * time.Hour
	// MaxRateLimitGlobalTo bounds a Global rule's match.to entries: its descriptor has one entry
	// per to entry, plus the rule's, and a rate limit service takes at most 16.
	MaxRateLimitGlobalTo = 15
	// MaxRateLimitBy bounds a rule's by attributes: each header among them may be absent,
	// and each combination of present ones is a descriptor of its own.
	MaxRateLimitBy = 2
	// maxRateLimitHeaders bounds response.headers.
	maxRateLimitHeaders = 16
	// maxRateLimitHeaderValue bounds each response header value.
	maxRateLimitHeaderValue = 4096
)

// validateRateLimit checks a RateLimit: a selector as AuthorizationPolicy's (targetRefs is not
// supported yet), 1 to MaxRateLimitRules rules, each with a unique DNS-label name if named, a
// match that AuthorizationPolicy would accept and that strait-proxy's rate limit actions can
// express (refused field by field otherwise), a limit of at least one request per
// MinRateLimitPer-MaxRateLimitPer in whole milliseconds (for scope Global one of
// RateLimitGlobalPers), scope Local or Global, onServiceError (Global only) Allow or Deny, by
// attributes that strait-proxy's rate limit actions read (validateRateLimitBy), and a response
// with a 4xx/5xx status and plain response headers.
func validateRateLimit(fe *fieldErrs, rl *ext.RateLimit) {
	validatePolicySelector(fe, "spec.selector", rl.GetSelector())
	if len(rl.GetTargetRefs()) > 0 {
		fe.add("spec.targetRefs", "targetRefs is not supported yet: select workloads and gateways with selector.matchLabels")
	}
	rules := rl.GetRules()
	switch {
	case len(rules) == 0:
		fe.add("spec.rules", "at least one rule is required")
		return
	case len(rules) > MaxRateLimitRules:
		fe.add("spec.rules", "%d rules, more than the limit of %d", len(rules), MaxRateLimitRules)
		return
	}
	names := map[string]int{}
	eachItem(fe, "spec.rules", rules, "rule", func(i int, p string, r *ext.RateLimitRule) {
		if n := r.GetName(); n != "" {
			if !isDNS1123Label(n) {
				fe.add(p+".name", "invalid name %s: %s", quoteShort(n), dns1123LabelMsg)
			} else if j, dup := names[n]; dup {
				fe.add(p+".name", "name %q is also the name of rules[%d]", n, j)
			} else {
				names[n] = i
			}
		}
		if r.GetMatch() != nil {
			validateRateLimitMatch(fe, p+".match", r.GetMatch())
		}
		validateRateLimitLimit(fe, p+".limit", r.GetLimit())
		switch s := r.GetScope(); s {
		case "", RateLimitScopeLocal:
			if r.GetOnServiceError() != "" {
				fe.add(p+".onServiceError", "onServiceError applies only to scope Global (a Local rule needs no service)")
			}
		case RateLimitScopeGlobal:
			validateRateLimitGlobal(fe, p, r)
		default:
			fe.add(p+".scope", "invalid scope %s (want %s or %s)", quoteShort(s), RateLimitScopeLocal, RateLimitScopeGlobal)
		}
		validateRateLimitBy(fe, p+".by", r.GetBy())
		validateRateLimitResponse(fe, p+".response", r.GetResponse())
	})
}

// validateRateLimitGlobal checks what scope Global adds to rule r at p: limit.per is a unit of
// the rate limit service's windows, and onServiceError is Allow or Deny.
func validateRateLimitGlobal(fe *fieldErrs, p string, r *ext.RateLimitRule) {
	if per := r.GetLimit().GetPer(); per != nil && per.CheckValid() == nil {
		d := per.AsDuration()
		ok := false
		for _, g := range RateLimitGlobalPers {
			ok = ok || d == g
		}
		if !ok {
			fe.add(p+".limit.per", "per %s: a Global rule's budget is counted in the rate limit service's fixed windows: per must be 1s, 1m, 1h or 24h", d)
		}
	}
	if n, most := len(r.GetMatch().GetTo()), MaxRateLimitGlobalTo-len(r.GetBy()); n > most {
		fe.add(p+".match.to", "%d entries, more than the limit of %d for a Global rule with %d by attributes (its descriptor has one entry per to entry and per by attribute)", n, most, len(r.GetBy()))
	}
	switch v := r.GetOnServiceError(); v {
	case "", RateLimitOnErrorAllow, RateLimitOnErrorDeny:
	default:
		fe.add(p+".onServiceError", "invalid onServiceError %s (want %s or %s)", quoteShort(v), RateLimitOnErrorAllow, RateLimitOnErrorDeny)
	}
}

// validateRateLimitBy checks a rule's by attributes at p: at most MaxRateLimitBy, distinct,
// each remote.ip or request.headers[NAME] (not a pseudo-header).
func validateRateLimitBy(fe *fieldErrs, p string, by []string) {
	if len(by) > MaxRateLimitBy {
		fe.add(p, "%d attributes, more than the limit of %d", len(by), MaxRateLimitBy)
		return
	}
	seen := map[string]bool{}
	for i, a := range by {
		ap := fmt.Sprintf("%s[%d]", p, i)
		if seen[a] {
			fe.add(ap, "%s is listed twice", quoteShort(a))
			continue
		}
		seen[a] = true
		k, err := ParseConditionKey(a)
		switch {
		case err != nil:
			fe.add(ap, "invalid attribute %s: %v", quoteShort(a), err)
		case k.Attribute == AttrRemoteIP:
		case k.Attribute == AttrRequestHeaders:
			if strings.HasPrefix(k.Names[0], ":") {
				fe.add(ap, "pseudo-header %s: a budget per path, method or host is not supported yet", quoteShort(k.Names[0]))
			}
		default:
			fe.add(ap, "attribute %s is not supported yet in by: use remote.ip or request.headers[NAME]", quoteShort(a))
		}
	}
}

// validateRateLimitLimit checks a rule's limit at p.
func validateRateLimitLimit(fe *fieldErrs, p string, l *ext.Limit) {
	if l == nil {
		fe.add(p, "limit is required: requests per unit of time, e.g. {requests: 100, per: 1m}")
		return
	}
	if l.GetRequests() == 0 {
		fe.add(p+".requests", "requests must be at least 1")
	}
	per := l.GetPer()
	if per == nil {
		fe.add(p+".per", "per is required: the unit of time, e.g. 1s, 10s, 1m")
		return
	}
	if err := per.CheckValid(); err != nil {
		fe.add(p+".per", "invalid duration: %v", err)
		return
	}
	switch d := per.AsDuration(); {
	case d < MinRateLimitPer || d > MaxRateLimitPer:
		fe.add(p+".per", "per %s must be from %s to %s", d, MinRateLimitPer, MaxRateLimitPer)
	case d%time.Millisecond != 0:
		fe.add(p+".per", "per %s: only millisecond precision is supported", d)
	}
}

// validateRateLimitResponse checks a rule's response at p (nil: the defaults).
func validateRateLimitResponse(fe *fieldErrs, p string, r *ext.Response) {
	if s := r.GetStatus(); s != 0 && (s < 400 || s > 599) {
		fe.add(p+".status", "status %d must be in 400-599", s)
	}
	hs := r.GetHeaders()
	if len(hs) > maxRateLimitHeaders {
		fe.add(p+".headers", "%d headers, more than the limit of %d", len(hs), maxRateLimitHeaders)
		return
	}
	for _, k := range sortedStringKeys(hs) {
		hp := p + ".headers[" + quoteShort(k) + "]"
		lk := strings.ToLower(k)
		switch {
		case k == "" || !httpTokenRE.MatchString(k):
			fe.add(hp, "invalid header name %s", quoteShort(k))
		case strings.HasPrefix(lk, "x-ratelimit-"):
			fe.add(hp, "the x-ratelimit-* headers are set by the rate limit filter")
		case lk == "content-length" || lk == "transfer-encoding" || lk == "connection" || lk == "host" ||
			lk == "keep-alive" || lk == "upgrade" || lk == "te" || lk == "trailer" || lk == "proxy-connection":
			fe.add(hp, "header %s cannot be set on a response", quoteShort(k))
		}
		v := hs[k]
		switch {
		case len(v) > maxRateLimitHeaderValue:
			fe.add(hp, "value is %d bytes, more than the limit of %d", len(v), maxRateLimitHeaderValue)
		case strings.ContainsAny(v, "\r\n\x00"):
			fe.add(hp, "value must not contain CR, LF or NUL")
		}
	}
}

// validateRateLimitMatch checks a rule's match at p: AuthorizationPolicy's rules for its to,
// from and when, then what strait-proxy's rate limit actions can express: to.operation fields
// except path templates, and when conditions on request headers. Sources (from) are refused:
// the actions see neither the peer's identity nor a match on its address.
func validateRateLimitMatch(fe *fieldErrs, p string, m *security.Rule) {
	before := len(fe.errs)
	validateAuthzRule(fe, p, m, false)
	if len(fe.errs) > before {
		return
	}
	if len(m.GetFrom()) > 0 {
		fe.add(p+".from", "from is not supported yet: strait-proxy's rate limit actions cannot match the source's identity, namespace or address")
	}
	for i, t := range m.GetTo() {
		op := t.GetOperation()
		opPath := fmt.Sprintf("%s.to[%d].operation", p, i)
		for _, l := range []struct {
			name   string
			values []string
		}{{"paths", op.GetPaths()}, {"notPaths", op.GetNotPaths()}} {
			for j, v := range l.values {
				if IsPathTemplate(v) {
					fe.add(fmt.Sprintf("%s.%s[%d]", opPath, l.name, j), "path templates ({*}, {**}) are not supported yet in a RateLimit")
				}
			}
		}
		for _, l := range []struct {
			name string
			re   string
		}{
			{"paths", RateLimitPathRegex(op.GetPaths())}, {"notPaths", RateLimitPathRegex(op.GetNotPaths())},
			{"methods", RateLimitValueRegex(op.GetMethods(), false)}, {"notMethods", RateLimitValueRegex(op.GetNotMethods(), false)},
			{"hosts", RateLimitValueRegex(op.GetHosts(), true)}, {"notHosts", RateLimitValueRegex(op.GetNotHosts(), true)},
		} {
			if l.re != "" {
				if msg := regexErr(l.re); msg != "" {
					fe.add(opPath+"."+l.name, "too many or too long values: %s", msg)
				}
			}
		}
	}
	for i, c := range m.GetWhen() {
		cp := fmt.Sprintf("%s.when[%d]", p, i)
		k, _ := ParseConditionKey(c.GetKey())
		if k.Attribute != AttrRequestHeaders {
			fe.add(cp+".key", "key %s is not supported yet in a RateLimit: only request.headers[NAME]", quoteShort(c.GetKey()))
			continue
		}
		if strings.HasPrefix(k.Names[0], ":") {
			fe.add(cp+".key", "pseudo-header %s: match it with to.operation (paths, methods, hosts)", quoteShort(k.Names[0]))
			continue
		}
		for _, re := range []string{RateLimitValueRegex(c.GetValues(), false), RateLimitValueRegex(c.GetNotValues(), false)} {
			if re != "" {
				if msg := regexErr(re); msg != "" {
					fe.add(cp, "too many or too long values: %s", msg)
				}
			}
		}
	}
}

// RateLimitPathRegex returns an RE2 expression that matches a request's :path (path and query)
// when its path, without the query, matches one of paths as an AuthorizationPolicy's paths do
// (ParseValueMatch: exact, "prefix*", "*suffix", "*"); "" for no paths. Path templates are not
// handled (validation refuses them).
func RateLimitPathRegex(paths []string) string {
	if len(paths) == 0 {
		return ""
	}
	alts := make([]string, len(paths))
	for i, v := range paths {
		m := ParseValueMatch(v)
		q := regexp.QuoteMeta(m.Value)
		switch m.Type {
		case MatchExact:
			alts[i] = q
		case MatchPrefix:
			alts[i] = q + `[^?]*`
		case MatchSuffix:
			alts[i] = `[^?]*` + q
		case MatchPresence:
			alts[i] = `[^?]*`
		}
	}
	return `^(?:` + strings.Join(alts, "|") + `)(?:\?.*)?$`
}

// RateLimitValueRegex returns an RE2 expression that matches a whole value (a method, a host, a
// header's value) that matches one of values as an AuthorizationPolicy's values do
// (ParseValueMatch; "*" needs a non-empty value), ignoring case when ignoreCase (hosts); "" for
// no values.
func RateLimitValueRegex(values []string, ignoreCase bool) string {
	if len(values) == 0 {
		return ""
	}
	alts := make([]string, len(values))
	for i, v := range values {
		m := ParseValueMatch(v)
		q := regexp.QuoteMeta(m.Value)
		switch m.Type {
		case MatchExact:
			alts[i] = q
		case MatchPrefix:
			alts[i] = q + `.*`
		case MatchSuffix:
			alts[i] = `.*` + q
		case MatchPresence:
			alts[i] = `.+`
		}
	}
	flags := ""
	if ignoreCase {
		flags = "(?i)"
	}
	return flags + `^(?:` + strings.Join(alts, "|") + `)$`
}
