package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	security "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
)

// checkRejects validates each spec of kind and wants an error at field whose message contains msg,
// naming the file and the object.
func checkRejects(t *testing.T, kind string, cases []rejectCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := mustDecode(t, docWithMeta(kind, tc.meta, tc.spec))
			err := Validate(o)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, e := range Errors(err) {
				var ce *Error
				if !errors.As(e, &ce) {
					t.Fatalf("%T is not *config.Error: %v", e, e)
				}
				if ce.Field == tc.field && strings.Contains(ce.Msg, tc.msg) && strings.HasPrefix(e.Error(), "v.yaml: "+kind+" ns/obj: "+tc.field+": ") {
					return
				}
			}
			t.Errorf("want error at %q containing %q, got:\n%v", tc.field, tc.msg, err)
		})
	}
}

// checkAccepts validates each spec of kind and wants no error.
func checkAccepts(t *testing.T, kind string, cases []rejectCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := Validate(mustDecode(t, docWithMeta(kind, tc.meta, tc.spec))); err != nil {
				t.Errorf("rejected: %v", err)
			}
		})
	}
}

type rejectCase struct {
	name, meta, spec, field, msg string
}

// checkBuiltSpecsRejected validates an object of kind with each of specs, built in code as a Source
// may hand them over: each must be refused with an error, never a panic or an internal error.
func checkBuiltSpecsRejected[S proto.Message](t *testing.T, kind Kind, specs []S) {
	t.Helper()
	for i, s := range specs {
		err := Validate(&Object{Kind: kind, Meta: Meta{Name: "obj", Namespace: "ns"}, Spec: s})
		if err == nil || strings.Contains(err.Error(), "internal error") {
			t.Errorf("spec %d: %v", i, err)
		}
	}
}

// docWithMeta is doc with extra metadata lines (e.g. "  annotations: {...}\n").
func docWithMeta(kind, meta, spec string) string {
	return "apiVersion: " + DefaultAPIVersionFor(Kind(kind)) + "\nkind: " + kind + "\nmetadata:\n  name: obj\n  namespace: ns\n" + meta + "spec:\n" + spec
}

// rule wraps one from/to/when fragment (indented for "  rules:\n  - ") into a policy spec.
func rule(fragment string) string { return "  rules:\n  - " + fragment + "\n" }

func TestAuthorizationPolicyRejects(t *testing.T) {
	const dryRun = "  annotations: {istio.io/dry-run: %s}\n"
	checkRejects(t, "AuthorizationPolicy", []rejectCase{
		// Where the policy applies.
		{"selector and targetRefs", "", "  selector: {matchLabels: {app: a}}\n  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: w}]\n", "spec", "only one of selector, targetRef and targetRefs"},
		{"empty selector and targetRef", "", "  selector: {}\n  targetRef: {kind: Service, name: s}\n", "spec", "only one of"},
		{"targetRef and targetRefs", "", "  targetRef: {kind: Service, name: s}\n  targetRefs: [{kind: Service, name: s}]\n", "spec", "only one of"},
		{"selector wildcard", "", "  selector: {matchLabels: {app: 'a*'}}\n", `spec.selector.matchLabels["app"]`, "wildcards"},
		{"target kind", "", "  targetRefs: [{kind: Deployment, group: apps, name: d}]\n", "spec.targetRefs[0]", "cannot target apps/Deployment"},
		{"target istio gateway", "", "  targetRefs: [{kind: Gateway, group: networking.istio.io, name: g}]\n", "spec.targetRefs[0]", "cannot target networking.istio.io/Gateway"},
		{"target service wrong group", "", "  targetRefs: [{kind: Service, group: networking.istio.io, name: s}]\n", "spec.targetRefs[0]", "cannot target"},
		{"target no name", "", "  targetRefs: [{kind: Service}]\n", "spec.targetRefs[0].name", "name is required"},
		{"target no kind", "", "  targetRef: {name: s}\n", "spec.targetRef.kind", "kind is required"},
		{"target namespace", "", "  targetRef: {kind: Service, name: s, namespace: other}\n", "spec.targetRef.namespace", "cross-namespace"},
		{"target bad group", "", "  targetRefs: [{kind: Service, group: __, name: s}]\n", "spec.targetRefs[0].group", "invalid group"},
		{"target bad kind", "", "  targetRefs: [{kind: Serv_ice, name: s}]\n", "spec.targetRefs[0].kind", "invalid kind"},
		{"too many targets", "", "  targetRefs: [" + strings.Repeat("{kind: Service, name: s}, ", 16) + "{kind: Service, name: s}]\n", "spec.targetRefs", "more than the limit of 16"},
		// Actions.
		{"deny without rules", "", "  action: DENY\n", "spec.rules", "DENY policy without rules never matches"},
		{"custom without rules", "", "  action: CUSTOM\n  provider: {name: p}\n", "spec.rules", "CUSTOM policy without rules"},
		{"custom without provider", "", "  action: CUSTOM\n" + rule("{}"), "spec.provider.name", "provider.name is required"},
		{"custom empty provider", "", "  action: CUSTOM\n  provider: {}\n" + rule("{}"), "spec.provider.name", "provider.name is required"},
		{"provider with allow", "", "  provider: {name: p}\n" + rule("{}"), "spec.provider", "only with action CUSTOM, not ALLOW"},
		{"provider with audit", "", "  action: AUDIT\n  provider: {name: p}\n" + rule("{}"), "spec.provider", "not AUDIT"},
		{"custom principals", "", "  action: CUSTOM\n  provider: {name: p}\n" + rule("from: [{source: {principals: [a]}}]"), "spec.rules[0].from[0].source.principals", "not supported with action CUSTOM"},
		{"custom not namespaces", "", "  action: CUSTOM\n  provider: {name: p}\n" + rule("from: [{source: {notNamespaces: [a]}}]"), "spec.rules[0].from[0].source.notNamespaces", "not supported with action CUSTOM"},
		{"custom request principals", "", "  action: CUSTOM\n  provider: {name: p}\n" + rule("from: [{source: {requestPrincipals: ['*']}}]"), "spec.rules[0].from[0].source.requestPrincipals", "not supported with action CUSTOM"},
		{"custom service accounts", "", "  action: CUSTOM\n  provider: {name: p}\n" + rule("from: [{source: {serviceAccounts: [sa]}}]"), "spec.rules[0].from[0].source.serviceAccounts", "not supported with action CUSTOM"},
		{"custom claims", "", "  action: CUSTOM\n  provider: {name: p}\n" + rule("when: [{key: 'request.auth.claims[iss]', values: [a]}]"), "spec.rules[0].when[0].key", "not supported with action CUSTOM"},
		{"custom source principal", "", "  action: CUSTOM\n  provider: {name: p}\n" + rule("when: [{key: source.principal, values: [a]}]"), "spec.rules[0].when[0].key", "not supported with action CUSTOM"},
		{"custom source namespace", "", "  action: CUSTOM\n  provider: {name: p}\n" + rule("when: [{key: source.namespace, values: [a]}]"), "spec.rules[0].when[0].key", "not supported with action CUSTOM"},
		{"custom not principals", "", "  action: CUSTOM\n  provider: {name: p}\n" + rule("from: [{source: {notPrincipals: [a]}}]"), "spec.rules[0].from[0].source.notPrincipals", "not supported with action CUSTOM"},
		{"custom not request principals", "", "  action: CUSTOM\n  provider: {name: p}\n" + rule("from: [{source: {notRequestPrincipals: [a]}}]"), "spec.rules[0].from[0].source.notRequestPrincipals", "not supported with action CUSTOM"},
		{"custom request.auth.principal", "", "  action: CUSTOM\n  provider: {name: p}\n" + rule("when: [{key: request.auth.principal, values: [a]}]"), "spec.rules[0].when[0].key", "not supported with action CUSTOM"},
		{"custom request.auth.audiences", "", "  action: CUSTOM\n  provider: {name: p}\n" + rule("when: [{key: request.auth.audiences, values: [a]}]"), "spec.rules[0].when[0].key", "not supported with action CUSTOM"},
		{"custom request.auth.presenter", "", "  action: CUSTOM\n  provider: {name: p}\n" + rule("when: [{key: request.auth.presenter, values: [a]}]"), "spec.rules[0].when[0].key", "not supported with action CUSTOM"},
		{"provider with deny", "", "  action: DENY\n  provider: {name: p}\n" + rule("{}"), "spec.provider", "only with action CUSTOM, not DENY"},
		// Dry-run.
		{"dry-run not a boolean", strings.Replace(dryRun, "%s", "'yes'", 1), "  action: DENY\n" + rule("{}"), `metadata.annotations["istio.io/dry-run"]`, `invalid value "yes"`},
		{"dry-run empty", strings.Replace(dryRun, "%s", "''", 1), rule("{}"), `metadata.annotations["istio.io/dry-run"]`, `invalid value ""`},
		{"dry-run custom", strings.Replace(dryRun, "%s", "'true'", 1), "  action: CUSTOM\n  provider: {name: p}\n" + rule("{}"), `metadata.annotations["istio.io/dry-run"]`, "only for action ALLOW or DENY, not CUSTOM"},
		{"dry-run audit", strings.Replace(dryRun, "%s", "'false'", 1), "  action: AUDIT\n" + rule("{}"), `metadata.annotations["istio.io/dry-run"]`, "not AUDIT"},
		// Sources.
		{"empty source", "", rule("from: [{source: {}}]"), "spec.rules[0].from[0].source", "at least one field"},
		{"no source", "", rule("from: [{}]"), "spec.rules[0].from[0].source", "source is required"},
		{"empty principal", "", rule("from: [{source: {principals: [a, '']}}]"), "spec.rules[0].from[0].source.principals[1]", "empty value"},
		{"principal star in middle", "", rule("from: [{source: {principals: ['cluster.local/ns/*/sa/a']}}]"), "spec.rules[0].from[0].source.principals[0]", "Istio would match any other '*' literally"},
		{"principal two stars", "", rule("from: [{source: {notPrincipals: ['*a*']}}]"), "spec.rules[0].from[0].source.notPrincipals[0]", "wildcard only alone"},
		{"request principal double star", "", rule("from: [{source: {requestPrincipals: ['*/*']}}]"), "spec.rules[0].from[0].source.requestPrincipals[0]", "wildcard"},
		{"namespace upper case", "", rule("from: [{source: {namespaces: [Prod]}}]"), "spec.rules[0].from[0].source.namespaces[0]", "invalid namespace"},
		{"namespace slash", "", rule("from: [{source: {namespaces: ['a/b']}}]"), "spec.rules[0].from[0].source.namespaces[0]", "invalid namespace"},
		{"namespace regex", "", rule("from: [{source: {notNamespaces: ['a.b']}}]"), "spec.rules[0].from[0].source.notNamespaces[0]", "invalid namespace"},
		{"ip block", "", rule("from: [{source: {ipBlocks: ['1.2.3']}}]"), "spec.rules[0].from[0].source.ipBlocks[0]", "invalid IP address"},
		{"cidr", "", rule("from: [{source: {notIpBlocks: ['10.0.0.0/33']}}]"), "spec.rules[0].from[0].source.notIpBlocks[0]", "invalid CIDR"},
		{"remote ip zone", "", rule("from: [{source: {remoteIpBlocks: ['fe80::1%eth0']}}]"), "spec.rules[0].from[0].source.remoteIpBlocks[0]", "invalid IP address"},
		{"remote ip hostname", "", rule("from: [{source: {notRemoteIpBlocks: [example.com]}}]"), "spec.rules[0].from[0].source.notRemoteIpBlocks[0]", "invalid IP address"},
		{"service account wildcard", "", rule("from: [{source: {serviceAccounts: ['ns/*']}}]"), "spec.rules[0].from[0].source.serviceAccounts[0]", "wildcards are not allowed"},
		{"service account segments", "", rule("from: [{source: {serviceAccounts: ['a/b/c']}}]"), "spec.rules[0].from[0].source.serviceAccounts[0]", "want \"namespace/name\""},
		{"service account empty namespace", "", rule("from: [{source: {notServiceAccounts: ['/sa']}}]"), "spec.rules[0].from[0].source.notServiceAccounts[0]", "namespace must be"},
		{"service account empty name", "", rule("from: [{source: {serviceAccounts: ['ns/']}}]"), "spec.rules[0].from[0].source.serviceAccounts[0]", "name must be"},
		{"service account long", "", rule("from: [{source: {serviceAccounts: ['" + strings.Repeat("a", 321) + "']}}]"), "spec.rules[0].from[0].source.serviceAccounts[0]", "longer than 320"},
		{"too many service accounts", "", rule("from: [{source: {serviceAccounts: [" + strings.Repeat("a, ", 16) + "a]}}]"), "spec.rules[0].from[0].source.serviceAccounts", "more than the limit of 16"},
		{"service accounts with namespaces", "", rule("from: [{source: {serviceAccounts: [a], namespaces: [b]}}]"), "spec.rules[0].from[0].source", "cannot be set with principals or namespaces"},
		{"not service accounts with principals", "", rule("from: [{source: {notServiceAccounts: [a], principals: [b]}}]"), "spec.rules[0].from[0].source", "cannot be set with principals or namespaces"},
		{"trust domain star", "", rule("from: [{source: {trustDomains: ['a*b']}}]"), "spec.rules[0].from[0].source.trustDomains[0]", "wildcard"},
		// Operations.
		{"no operation", "", rule("to: [{}]"), "spec.rules[0].to[0].operation", "operation is required"},
		{"empty operation", "", rule("to: [{operation: {}}]"), "spec.rules[0].to[0].operation", "at least one field"},
		{"port name", "", rule("to: [{operation: {ports: [http]}}]"), "spec.rules[0].to[0].operation.ports[0]", "invalid port \"http\""},
		{"port too big", "", rule("to: [{operation: {notPorts: ['65536']}}]"), "spec.rules[0].to[0].operation.notPorts[0]", "0-65535"},
		{"port negative", "", rule("to: [{operation: {ports: ['-1']}}]"), "spec.rules[0].to[0].operation.ports[0]", "0-65535"},
		{"port range", "", rule("to: [{operation: {ports: ['80-90']}}]"), "spec.rules[0].to[0].operation.ports[0]", "0-65535"},
		{"empty method", "", rule("to: [{operation: {methods: ['']}}]"), "spec.rules[0].to[0].operation.methods[0]", "empty value"},
		{"method with space", "", rule("to: [{operation: {methods: ['GET POST']}}]"), "spec.rules[0].to[0].operation.methods[0]", "not an HTTP token"},
		{"method star in middle", "", rule("to: [{operation: {notMethods: ['G*T']}}]"), "spec.rules[0].to[0].operation.notMethods[0]", "wildcard"},
		{"host star in middle", "", rule("to: [{operation: {hosts: ['a.*.com']}}]"), "spec.rules[0].to[0].operation.hosts[0]", "wildcard"},
		{"empty host", "", rule("to: [{operation: {notHosts: ['']}}]"), "spec.rules[0].to[0].operation.notHosts[0]", "empty value"},
		{"path star in middle", "", rule("to: [{operation: {paths: ['/api/*/users']}}]"), "spec.rules[0].to[0].operation.paths[0]", "Istio would match any other '*' literally"},
		{"path brace", "", rule("to: [{operation: {paths: ['/a/{b}']}}]"), "spec.rules[0].to[0].operation.paths[0]", "'{' and '}' are allowed only in the template operators"},
		{"path template star", "", rule("to: [{operation: {paths: ['/*/baz/{*}']}}]"), "spec.rules[0].to[0].operation.paths[0]", "no '*' outside {*} and {**}"},
		{"path template double star", "", rule("to: [{operation: {paths: ['/**/baz/{*}']}}]"), "spec.rules[0].to[0].operation.paths[0]", "invalid path template"},
		{"path template any not last", "", rule("to: [{operation: {paths: ['/{**}/foo/{*}']}}]"), "spec.rules[0].to[0].operation.paths[0]", "{**} must be the last operator"},
		{"path template two any", "", rule("to: [{operation: {notPaths: ['/{**}/{**}']}}]"), "spec.rules[0].to[0].operation.notPaths[0]", "{**} must be the last operator"},
		{"path template partial segment", "", rule("to: [{operation: {paths: ['/foo/{*}.txt']}}]"), "spec.rules[0].to[0].operation.paths[0]", "must be a whole path segment"},
		{"path template named", "", rule("to: [{operation: {paths: ['/{*}/{name}']}}]"), "spec.rules[0].to[0].operation.paths[0]", "must be a whole path segment"},
		{"path template named glob", "", rule("to: [{operation: {paths: ['/{x=*}/{*}']}}]"), "spec.rules[0].to[0].operation.paths[0]", "must be a whole path segment"},
		{"path template empty segment", "", rule("to: [{operation: {paths: ['/a//{*}']}}]"), "spec.rules[0].to[0].operation.paths[0]", "must be non-empty"},
		{"path template query", "", rule("to: [{operation: {paths: ['/{*}?a=b']}}]"), "spec.rules[0].to[0].operation.paths[0]", "must be a whole path segment"},
		// Conditions.
		{"condition no key", "", rule("when: [{values: [a]}]"), "spec.rules[0].when[0].key", "key is required"},
		{"condition no values", "", rule("when: [{key: source.ip}]"), "spec.rules[0].when[0]", "at least one of values or notValues"},
		{"condition unknown key", "", rule("when: [{key: source.user, values: [a]}]"), "spec.rules[0].when[0].key", "unknown attribute \"source.user\""},
		{"condition regex headers", "", rule("when: [{key: 'request.regex.headers[x]', values: [a]}]"), "spec.rules[0].when[0].key", "unknown attribute"},
		{"condition destination labels", "", rule("when: [{key: 'destination.labels[app]', values: [a]}]"), "spec.rules[0].when[0].key", "replaced by the policy's selector"},
		{"condition destination namespace", "", rule("when: [{key: destination.namespace, values: [a]}]"), "spec.rules[0].when[0].key", "replaced by the policy's metadata.namespace"},
		{"condition destination user", "", rule("when: [{key: destination.user, values: [a]}]"), "spec.rules[0].when[0].key", "removed"},
		{"condition header no brackets", "", rule("when: [{key: request.headers, values: [a]}]"), "spec.rules[0].when[0].key", "want request.headers[NAME]"},
		{"condition header empty name", "", rule("when: [{key: 'request.headers[]', values: [a]}]"), "spec.rules[0].when[0].key", "empty name"},
		{"condition header unclosed", "", rule("when: [{key: 'request.headers[x', values: [a]}]"), "spec.rules[0].when[0].key", "missing ']'"},
		{"condition header two names", "", rule("when: [{key: 'request.headers[x][y]', values: [a]}]"), "spec.rules[0].when[0].key", "only one bracketed name"},
		{"condition header trailing", "", rule("when: [{key: 'request.headers[x]y', values: [a]}]"), "spec.rules[0].when[0].key", "expected '['"},
		{"condition header bad name", "", rule("when: [{key: 'request.headers[a b]', values: [a]}]"), "spec.rules[0].when[0].key", "invalid header name"},
		{"condition claim nested bracket", "", rule("when: [{key: 'request.auth.claims[a[b]]', values: [a]}]"), "spec.rules[0].when[0].key", "'[' inside a name"},
		{"condition claim empty nested", "", rule("when: [{key: 'request.auth.claims[a][]', values: [a]}]"), "spec.rules[0].when[0].key", "empty name"},
		{"condition envoy filter no key", "", rule("when: [{key: experimental.envoy.filters.a.b, values: [a]}]"), "spec.rules[0].when[0].key", "want experimental.envoy.filters.FILTER[KEY]"},
		{"condition envoy filter no filter", "", rule("when: [{key: 'experimental.envoy.filters.[c]', values: [a]}]"), "spec.rules[0].when[0].key", "want experimental.envoy.filters.FILTER[KEY]"},
		{"condition source ip", "", rule("when: [{key: source.ip, values: ['10.0.0.0/40']}]"), "spec.rules[0].when[0].values[0]", "invalid CIDR"},
		{"condition remote ip", "", rule("when: [{key: remote.ip, notValues: [localhost]}]"), "spec.rules[0].when[0].notValues[0]", "invalid IP address"},
		{"condition destination ip", "", rule("when: [{key: destination.ip, values: ['*']}]"), "spec.rules[0].when[0].values[0]", "invalid IP address"},
		{"condition destination port", "", rule("when: [{key: destination.port, values: ['80', '99999']}]"), "spec.rules[0].when[0].values[1]", "0-65535"},
		{"condition service account", "", rule("when: [{key: source.serviceAccount, values: ['ns/*']}]"), "spec.rules[0].when[0].values[0]", "wildcards are not allowed"},
		{"condition namespace", "", rule("when: [{key: source.namespace, notValues: ['NS']}]"), "spec.rules[0].when[0].notValues[0]", "invalid namespace"},
		{"condition empty value", "", rule("when: [{key: 'request.auth.claims[groups]', values: ['']}]"), "spec.rules[0].when[0].values[0]", "empty value"},
		{"condition header star", "", rule("when: [{key: 'request.headers[accept]', values: ['*/*']}]"), "spec.rules[0].when[0].values[0]", "wildcard"},
		{"condition metadata empty list", "", rule("when: [{key: 'experimental.envoy.filters.a[b]', values: ['[]']}]"), "spec.rules[0].when[0].values[0]", "empty list element"},
		{"condition sni star", "", rule("when: [{key: connection.sni, values: ['a.*.com']}]"), "spec.rules[0].when[0].values[0]", "wildcard"},
	})
}

func TestAuthorizationPolicyAccepts(t *testing.T) {
	checkAccepts(t, "AuthorizationPolicy", []rejectCase{
		{name: "empty: allow nothing", spec: "  {}\n"},
		{name: "allow all", spec: rule("{}")},
		{name: "deny all", spec: "  action: DENY\n" + rule("{}")},
		{name: "audit without rules", spec: "  action: AUDIT\n"},
		{name: "custom every request", spec: "  action: CUSTOM\n  provider: {name: ext}\n" + rule("{}")},
		{name: "custom ip and paths", spec: "  action: CUSTOM\n  provider: {name: ext}\n" + rule("from: [{source: {ipBlocks: [10.0.0.0/8]}}]\n    to: [{operation: {paths: ['/admin*']}}]\n    when: [{key: 'request.headers[x]', values: [a]}]")},
		{name: "dry-run true", meta: "  annotations: {istio.io/dry-run: 'true'}\n", spec: "  action: DENY\n" + rule("{}")},
		{name: "dry-run parse bool forms", meta: "  annotations: {istio.io/dry-run: 'T'}\n", spec: rule("{}")},
		{name: "dry-run zero", meta: "  annotations: {istio.io/dry-run: '0'}\n", spec: rule("{}")},
		{name: "port zero", spec: rule("to: [{operation: {ports: ['0']}}]")},
		{name: "gateway class target", spec: "  targetRefs: [{kind: GatewayClass, group: gateway.networking.k8s.io, name: istio-waypoint}]\n"},
		{name: "core service target", spec: "  targetRef: {kind: Service, group: core, name: s}\n"},
		{name: "empty selector", spec: "  selector: {}\n"},
		{name: "glob namespace", spec: rule("from: [{source: {namespaces: ['team-*-prod']}}]")},
		{name: "path template at root", spec: rule("to: [{operation: {paths: ['/{**}', '/{*}', '/a/{**}/b/c']}}]")},
		{name: "grpc path", spec: rule("to: [{operation: {paths: ['/helloworld.Greeter/SayHello'], methods: [POST]}}]")},
		{name: "nested claims", spec: rule("when: [{key: 'request.auth.claims[a][b][c]', values: [x]}]")},
		{name: "claim with dots", spec: rule("when: [{key: 'request.auth.claims[realm_access.roles]', values: [admin]}]")},
		{name: "not values only", spec: rule("when: [{key: source.ip, notValues: ['10.0.0.1']}]")},
		{name: "ipv6 cidr", spec: rule("from: [{source: {ipBlocks: ['2001:db8::/32', '::1']}}]")},
		{name: "request principal suffix", spec: rule("from: [{source: {requestPrincipals: ['*@example.com']}}]")},
	})
}

// TestAuthorizationPolicyObjects checks policies built in code, as a Source may hand them over:
// nil parts are errors, never a panic.
func TestAuthorizationPolicyObjects(t *testing.T) {
	specs := []*security.AuthorizationPolicy{
		{Rules: []*security.Rule{nil}},
		{Rules: []*security.Rule{{From: []*security.Rule_From{nil, {}}, To: []*security.Rule_To{nil, {}}, When: []*security.Condition{nil}}}},
		{Action: security.AuthorizationPolicy_CUSTOM, Rules: []*security.Rule{{When: []*security.Condition{nil}}}},
		{TargetRefs: []*typev1beta1.PolicyTargetReference{nil}},
		{Action: 7},
	}
	checkBuiltSpecsRejected(t, AuthorizationPolicy, specs)
	ap := &Object{Kind: AuthorizationPolicy, Meta: Meta{Name: "ap", Namespace: "ns"}, Spec: &security.AuthorizationPolicy{
		Action: security.AuthorizationPolicy_DENY,
		Rules:  []*security.Rule{{To: []*security.Rule_To{{Operation: &security.Operation{Ports: []string{"22"}}}}}},
	}}
	if err := Validate(ap); err != nil {
		t.Fatal(err)
	}
	out, err := MarshalYAML(ap)
	if err != nil || !strings.HasPrefix(string(out), "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n") {
		t.Errorf("rendered (%v):\n%s", err, out)
	}
	if back := mustDecode(t, string(out)); Validate(back) != nil || back.Kind != AuthorizationPolicy {
		t.Errorf("round trip: %+v", back)
	}
}

func TestDryRun(t *testing.T) {
	ap := func(action security.AuthorizationPolicy_Action, ann map[string]string) *Object {
		return &Object{Kind: AuthorizationPolicy, Meta: Meta{Name: "ap", Namespace: "ns", Annotations: ann}, Spec: &security.AuthorizationPolicy{Action: action}}
	}
	for _, tc := range []struct {
		o       *Object
		want    bool
		wantErr string
	}{
		{ap(security.AuthorizationPolicy_ALLOW, nil), false, ""},
		{ap(security.AuthorizationPolicy_DENY, map[string]string{DryRunAnnotation: "true"}), true, ""},
		{ap(security.AuthorizationPolicy_ALLOW, map[string]string{DryRunAnnotation: "TRUE"}), true, ""},
		{ap(security.AuthorizationPolicy_ALLOW, map[string]string{DryRunAnnotation: "false"}), false, ""},
		{ap(security.AuthorizationPolicy_DENY, map[string]string{DryRunAnnotation: "maybe"}), false, `invalid value "maybe"`},
		{ap(security.AuthorizationPolicy_AUDIT, map[string]string{DryRunAnnotation: "true"}), false, "not AUDIT"},
		{&Object{Kind: PeerAuthentication, Meta: Meta{Name: "pa", Annotations: map[string]string{DryRunAnnotation: "true"}}, Spec: &security.PeerAuthentication{}}, false, "only an AuthorizationPolicy"},
		{&Object{Kind: PeerAuthentication, Meta: Meta{Name: "pa"}, Spec: &security.PeerAuthentication{}}, false, ""},
		{nil, false, "nil object"},
	} {
		got, err := DryRun(tc.o)
		if got != tc.want || (err == nil) != (tc.wantErr == "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("DryRun(%v) = %v, %v; want %v, %q", tc.o, got, err, tc.want, tc.wantErr)
		}
	}
	// Istio rejects the annotation on every other Istio kind; a Secret is not Istio's to check.
	vs := mustDecode(t, "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v, namespace: ns, annotations: {istio.io/dry-run: 'true'}}\nspec: {hosts: [a], http: [{route: [{destination: {host: a}}]}]}\n")
	if err := Validate(vs); err == nil || !strings.Contains(err.Error(), `metadata.annotations["istio.io/dry-run"]: only an AuthorizationPolicy may have this annotation, not a VirtualService`) {
		t.Errorf("VirtualService with dry-run: %v", err)
	}
}

func TestParseValueMatch(t *testing.T) {
	for in, want := range map[string]ValueMatch{
		"*":     {MatchPresence, ""},
		"abc":   {MatchExact, "abc"},
		"abc*":  {MatchPrefix, "abc"},
		"*abc":  {MatchSuffix, "abc"},
		"/a/b*": {MatchPrefix, "/a/b"},
		"":      {MatchExact, ""},
	} {
		if got := ParseValueMatch(in); got != want {
			t.Errorf("ParseValueMatch(%q) = %+v, want %+v", in, got, want)
		}
	}
	if MatchSuffix.String() != "suffix" || MatchType(9).String() != "MatchType(9)" {
		t.Error("MatchType.String")
	}
	if !IsPathTemplate("/a/{*}") || !IsPathTemplate("/{**}") || IsPathTemplate("/a/*") || IsPathTemplate("/{}") {
		t.Error("IsPathTemplate")
	}
}

func TestParseConditionKey(t *testing.T) {
	for in, want := range map[string]ConditionKey{
		"source.ip":                                {Attribute: AttrSourceIP},
		"request.headers[User-Agent]":              {Attribute: AttrRequestHeaders, Names: []string{"User-Agent"}},
		"request.experimental.inline.headers[x-a]": {Attribute: AttrRequestInlineHeaders, Names: []string{"x-a"}},
		"request.auth.claims[iss]":                 {Attribute: AttrRequestClaims, Names: []string{"iss"}},
		"request.auth.claims[a][b.c]":              {Attribute: AttrRequestClaims, Names: []string{"a", "b.c"}},
		"experimental.envoy.filters.http.foo[k]":   {Attribute: AttrEnvoyFilters, Filter: "envoy.filters.http.foo", Names: []string{"k"}},
		"source.serviceAccount":                    {Attribute: AttrSourceServiceAccount},
	} {
		got, err := ParseConditionKey(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ParseConditionKey(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	httpOnly, _ := ParseConditionKey("request.auth.audiences")
	tcp, _ := ParseConditionKey("destination.port")
	if !httpOnly.HTTPOnly() || tcp.HTTPOnly() {
		t.Error("HTTPOnly")
	}
	for _, bad := range []string{"", "source.IP", "request.headers", "request.headers[]", "request.auth.claims", "experimental.envoy.filters.x", "source.ip[a]"} {
		if k, err := ParseConditionKey(bad); err == nil {
			t.Errorf("ParseConditionKey(%q) = %+v, want an error", bad, k)
		}
	}
}

func TestPolicyTargetHelpers(t *testing.T) {
	ref := &typev1beta1.PolicyTargetReference{Kind: "Service", Group: "core", Name: "s"}
	if got := PolicyTargetRefs(&security.AuthorizationPolicy{TargetRef: ref}); len(got) != 1 || got[0] != ref {
		t.Errorf("targetRef: %v", got)
	}
	refs := []*typev1beta1.PolicyTargetReference{ref, {Kind: "Gateway", Group: "gateway.networking.k8s.io", Name: "w"}}
	if got := PolicyTargetRefs(&security.RequestAuthentication{TargetRefs: refs}); len(got) != 2 {
		t.Errorf("targetRefs: %v", got)
	}
	if got := PolicyTargetRefs(&security.AuthorizationPolicy{}); got != nil {
		t.Errorf("no targets: %v", got)
	}
	if TargetRefGroup(ref) != "" || TargetRefGroup(refs[1]) != "gateway.networking.k8s.io" {
		t.Error("TargetRefGroup")
	}
	if ns, sa := ParseServiceAccount("sa", "bookinfo"); ns != "bookinfo" || sa != "sa" {
		t.Errorf("ParseServiceAccount: %s %s", ns, sa)
	}
	if ns, sa := ParseServiceAccount("other/sa", "bookinfo"); ns != "other" || sa != "sa" {
		t.Errorf("ParseServiceAccount: %s %s", ns, sa)
	}
}
