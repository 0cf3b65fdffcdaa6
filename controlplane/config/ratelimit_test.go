package config

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	ext "github.com/strait-mesh/strait/controlplane/config/extensionsv1alpha1"
)

// rlDoc is a RateLimit with the given spec (YAML, indented two spaces).
func rlDoc(spec string) string {
	return "apiVersion: extensions.strait.io/v1alpha1\nkind: RateLimit\nmetadata: {name: rl, namespace: default}\nspec:\n" + spec
}

// TestRateLimitDecode checks that the documented example decodes into the typed spec.
func TestRateLimitDecode(t *testing.T) {
	objs, errs := Load("rl.yaml", []byte(rlDoc(`  selector: {matchLabels: {app: productpage}}
  rules:
  - name: pages
    match:
      to: [{operation: {paths: ["/productpage*"], methods: [GET]}}]
      when: [{key: "request.headers[x-user]", values: ["jason"]}]
    limit: {requests: 5, per: 10s}
    scope: Local
    response: {status: 503, headers: {x-limited: "yes"}}
  - limit: {requests: 100, per: 1m}
    scope: Global
    onServiceError: Deny
`)))
	if len(errs) > 0 {
		t.Fatal(errors.Join(errs...))
	}
	if len(objs) != 1 || objs[0].Kind != RateLimit || objs[0].APIVersion != "extensions.strait.io/v1alpha1" {
		t.Fatalf("objects: %v", objs)
	}
	rl := objs[0].Spec.(*ext.RateLimit)
	r := rl.GetRules()[0]
	if r.GetLimit().GetRequests() != 5 || r.GetLimit().GetPer().AsDuration() != 10*time.Second || r.GetResponse().GetStatus() != 503 ||
		r.GetResponse().GetHeaders()["x-limited"] != "yes" || r.GetMatch().GetTo()[0].GetOperation().GetPaths()[0] != "/productpage*" {
		t.Errorf("rule 0: %v", r)
	}
	if r1 := rl.GetRules()[1]; r1.GetLimit().GetPer().AsDuration() != time.Minute || r1.GetScope() != RateLimitScopeGlobal || r1.GetOnServiceError() != RateLimitOnErrorDeny {
		t.Errorf("rule 1: %v", rl.GetRules()[1])
	}
	if k, ok := KindFor("rl"); !ok || k != RateLimit {
		t.Errorf("KindFor(rl) = %v, %v", k, ok)
	}
	if k, ok := KindFor("ratelimits.extensions.strait.io"); !ok || k != RateLimit {
		t.Errorf("KindFor(ratelimits.extensions.strait.io) = %v, %v", k, ok)
	}
}

// TestRateLimitRefusals checks that each bad or not-yet-supported RateLimit is refused with an
// error naming the field and its line.
func TestRateLimitRefusals(t *testing.T) {
	lim := "    limit: {requests: 5, per: 10s}\n"
	for name, tc := range map[string]struct{ spec, want string }{
		"no rules":         {"  selector: {matchLabels: {app: a}}\n", "spec.rules: at least one rule is required"},
		"unknown field":    {"  rules:\n  - limit: {requests: 5, per: 10s, burst: 3}\n", `spec.rules[0].limit.burst: unknown field "burst" in Limit`},
		"no limit":         {"  rules:\n  - name: a\n", "spec.rules[0].limit: limit is required"},
		"zero requests":    {"  rules:\n  - limit: {requests: 0, per: 10s}\n", "spec.rules[0].limit.requests: requests must be at least 1"},
		"negative":         {"  rules:\n  - limit: {requests: -1, per: 10s}\n", "spec.rules[0].limit.requests"},
		"no per":           {"  rules:\n  - limit: {requests: 5}\n", "spec.rules[0].limit.per: per is required"},
		"bad per":          {"  rules:\n  - limit: {requests: 5, per: ten}\n", "spec.rules[0].limit.per"},
		"per too short":    {"  rules:\n  - limit: {requests: 5, per: 10ms}\n", "spec.rules[0].limit.per: per 10ms must be from 50ms to 24h0m0s"},
		"per too long":     {"  rules:\n  - limit: {requests: 5, per: 48h}\n", "must be from 50ms to 24h0m0s"},
		"per precision":    {"  rules:\n  - limit: {requests: 5, per: 1.0005s}\n", "only millisecond precision"},
		"global per":       {"  rules:\n  - scope: Global\n" + lim, "spec.rules[0].limit.per: per 10s: a Global rule's budget is counted in the rate limit service's fixed windows"},
		"on error value":   {"  rules:\n  - scope: Global\n    onServiceError: deny\n    limit: {requests: 5, per: 1m}\n", `spec.rules[0].onServiceError: invalid onServiceError "deny" (want Allow or Deny)`},
		"global to":        {"  rules:\n  - scope: Global\n    match: {to: [" + strings.Repeat("{operation: {paths: [/a]}},", 16) + "]}\n    limit: {requests: 5, per: 1m}\n", "spec.rules[0].match.to: 16 entries, more than the limit of 15 for a Global rule"},
		"on error local":   {"  rules:\n  - onServiceError: Deny\n" + lim, "spec.rules[0].onServiceError: onServiceError applies only to scope Global"},
		"bad scope":        {"  rules:\n  - scope: local\n" + lim, `spec.rules[0].scope: invalid scope "local" (want Local or Global)`},
		"by source.ip":     {"  rules:\n  - by: [source.ip]\n" + lim, `spec.rules[0].by[0]: attribute "source.ip" is not supported yet in by`},
		"by principal":     {"  rules:\n  - by: [source.principal]\n" + lim, `spec.rules[0].by[0]: attribute "source.principal" is not supported yet`},
		"by unknown":       {"  rules:\n  - by: [client]\n" + lim, `spec.rules[0].by[0]: invalid attribute "client"`},
		"by twice":         {"  rules:\n  - by: [remote.ip, remote.ip]\n" + lim, `spec.rules[0].by[1]: "remote.ip" is listed twice`},
		"by too many":      {"  rules:\n  - by: [remote.ip, \"request.headers[a]\", \"request.headers[b]\"]\n" + lim, "spec.rules[0].by: 3 attributes, more than the limit of 2"},
		"by pseudo":        {"  rules:\n  - by: [\"request.headers[:path]\"]\n" + lim, "spec.rules[0].by[0]: pseudo-header"},
		"global to by":     {"  rules:\n  - scope: Global\n    by: [remote.ip]\n    match: {to: [" + strings.Repeat("{operation: {paths: [/a]}},", 15) + "]}\n    limit: {requests: 5, per: 1m}\n", "spec.rules[0].match.to: 15 entries, more than the limit of 14 for a Global rule with 1 by attributes"},
		"targetRefs":       {"  targetRefs: [{kind: Service, name: a}]\n  rules:\n  - " + lim[4:], "spec.targetRefs: targetRefs is not supported yet"},
		"bad selector":     {"  selector: {matchLabels: {\"a b\": c}}\n  rules:\n  - " + lim[4:], "spec.selector.matchLabels"},
		"bad name":         {"  rules:\n  - name: Bad_Name\n" + lim, `spec.rules[0].name: invalid name "Bad_Name"`},
		"duplicate name":   {"  rules:\n  - name: a\n" + lim + "  - name: a\n" + lim, `spec.rules[1].name: name "a" is also the name of rules[0]`},
		"status":           {"  rules:\n  - response: {status: 200}\n" + lim, "spec.rules[0].response.status: status 200 must be in 400-599"},
		"header name":      {"  rules:\n  - response: {headers: {\"a b\": c}}\n" + lim, `spec.rules[0].response.headers["a b"]: invalid header name`},
		"x-ratelimit":      {"  rules:\n  - response: {headers: {x-ratelimit-limit: \"1\"}}\n" + lim, "the x-ratelimit-* headers are set by the rate limit filter"},
		"header value":     {"  rules:\n  - response: {headers: {a: \"b\\r\\nc: d\"}}\n" + lim, "value must not contain CR, LF or NUL"},
		"from":             {"  rules:\n  - match: {from: [{source: {namespaces: [foo]}}]}\n" + lim, "spec.rules[0].match.from: from is not supported yet"},
		"empty operation":  {"  rules:\n  - match: {to: [{operation: {}}]}\n" + lim, "spec.rules[0].match.to[0].operation: operation must set at least one field"},
		"bad method":       {"  rules:\n  - match: {to: [{operation: {methods: [\"G T\"]}}]}\n" + lim, "spec.rules[0].match.to[0].operation.methods[0]: invalid method"},
		"bad wildcard":     {"  rules:\n  - match: {to: [{operation: {paths: [\"/a*b\"]}}]}\n" + lim, "spec.rules[0].match.to[0].operation.paths[0]: invalid value"},
		"path template":    {"  rules:\n  - match: {to: [{operation: {paths: [\"/a/{*}\"]}}]}\n" + lim, "spec.rules[0].match.to[0].operation.paths[0]: path templates ({*}, {**}) are not supported yet"},
		"when source":      {"  rules:\n  - match: {when: [{key: source.ip, values: [10.0.0.1]}]}\n" + lim, "spec.rules[0].match.when[0].key: key \"source.ip\" is not supported yet"},
		"when bad key":     {"  rules:\n  - match: {when: [{key: request.headers, values: [a]}]}\n" + lim, "spec.rules[0].match.when[0].key: bad key"},
		"when no values":   {"  rules:\n  - match: {when: [{key: \"request.headers[a]\"}]}\n" + lim, "spec.rules[0].match.when[0]: at least one of values or notValues"},
		"when pseudo":      {"  rules:\n  - match: {when: [{key: \"request.headers[:path]\", values: [a]}]}\n" + lim, "pseudo-header"},
		"too many values":  {"  rules:\n  - match: {to: [{operation: {paths: [" + manyPaths(40, 1000) + "]}}]}\n" + lim, "too many or too long values"},
		"wrong apiVersion": {"  rules:\n  - " + lim[4:], ""},
	} {
		t.Run(name, func(t *testing.T) {
			doc := rlDoc(tc.spec)
			if name == "wrong apiVersion" {
				doc = strings.Replace(doc, "v1alpha1", "v1", 1)
				tc.want = "unsupported apiVersion \"extensions.strait.io/v1\" (want one of extensions.strait.io/v1alpha1)"
			}
			objs, errs := Load("rl.yaml", []byte(doc))
			if len(objs) != 0 || len(errs) == 0 {
				t.Fatalf("accepted: %v", objs)
			}
			if msg := errors.Join(errs...).Error(); !strings.Contains(msg, tc.want) {
				t.Errorf("got %s\nwant it to contain %q", msg, tc.want)
			}
			var ce *Error
			if !errors.As(errs[0], &ce) || ce.Line == 0 || ce.Field == "" {
				t.Errorf("error without a line or field: %#v", errs[0])
			}
		})
	}
}

// TestRateLimitRegex checks the regular expressions that carry AuthorizationPolicy's value
// matching into header matchers: paths match without the query, methods exactly, hosts ignoring
// case, "*" a non-empty value.
func TestRateLimitRegex(t *testing.T) {
	for _, tc := range []struct {
		re       string
		in, miss []string
	}{
		{RateLimitPathRegex([]string{"/productpage"}), []string{"/productpage", "/productpage?u=1"}, []string{"/productpage/x", "/p", "/productpagex"}},
		{RateLimitPathRegex([]string{"/api/*", "*.png"}), []string{"/api/", "/api/v1?x=/", "/a.png", "/b/c.png?s=1"}, []string{"/ap", "/x?api/=.png", "/a.pngx"}},
		{RateLimitPathRegex([]string{"*"}), []string{"/", "/a?b"}, nil},
		{RateLimitValueRegex([]string{"GET", "PO*"}, false), []string{"GET", "POST", "PO"}, []string{"get", "GETS", "PUT"}},
		{RateLimitValueRegex([]string{"*.example.com"}, true), []string{"a.EXAMPLE.com"}, []string{"example.com", "a.example.com:80"}},
		{RateLimitValueRegex([]string{"*"}, false), []string{"x"}, []string{""}},
		{RateLimitValueRegex([]string{"a.b"}, false), []string{"a.b"}, []string{"axb"}},
	} {
		re := regexp.MustCompile(tc.re)
		for _, s := range tc.in {
			if !re.MatchString(s) {
				t.Errorf("%s does not match %q", tc.re, s)
			}
		}
		for _, s := range tc.miss {
			if re.MatchString(s) {
				t.Errorf("%s matches %q", tc.re, s)
			}
		}
	}
}

// manyPaths renders n distinct paths of size bytes each as a YAML flow list's items.
func manyPaths(n, size int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "\"/%d%s\",", i, strings.Repeat("a", size))
	}
	return b.String()
}
