package config

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	networking "istio.io/api/networking/v1alpha3"
)

// decodeFile decodes and validates a testdata file, failing on any error.
func decodeFile(t *testing.T, path string) []*Object {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	objs, errs := Decode(path, data)
	for _, e := range errs {
		t.Errorf("decode: %v", e)
	}
	for _, o := range objs {
		if err := Validate(o); err != nil {
			t.Errorf("validate %s: %v", o.Key(), err)
		}
	}
	return objs
}

func TestDecodeGoodDocuments(t *testing.T) {
	files, _ := filepath.Glob("testdata/good/*")
	if len(files) == 0 {
		t.Fatal("no testdata")
	}
	kinds := map[Kind]bool{}
	versions := map[string]bool{}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			for _, o := range decodeFile(t, f) {
				kinds[o.Kind] = true
				versions[o.APIVersion] = true
				if o.Origin != f {
					t.Errorf("%s: origin %q, want %q", o.Key(), o.Origin, f)
				}
			}
		})
	}
	for _, k := range Kinds {
		if !kinds[k] {
			t.Errorf("no good document of kind %s", k)
		}
	}
	for _, v := range APIVersions {
		if !versions[v] {
			t.Errorf("no good document with apiVersion %s", v)
		}
	}
}

// TestRoundTrip checks that MarshalYAML and MarshalJSON output decodes to an equal object, for
// every good document (including every VirtualService HTTP field), except Secrets, whose output
// must be redacted instead.
func TestRoundTrip(t *testing.T) {
	files, _ := filepath.Glob("testdata/good/*")
	for _, f := range files {
		for _, o := range decodeFile(t, f) {
			for name, marshal := range map[string]func(*Object) ([]byte, error){"yaml": MarshalYAML, "json": MarshalJSON} {
				out, err := marshal(o)
				if err != nil {
					t.Fatalf("%s %s: %v", name, o.Key(), err)
				}
				if o.Kind == Secret {
					checkSecretRedacted(t, o, out, marshal)
					continue
				}
				back, errs := Decode("roundtrip", out)
				if len(errs) > 0 || len(back) != 1 {
					t.Fatalf("%s %s: decoding output: %v\n%s", name, o.Key(), errs, out)
				}
				b := back[0]
				if !proto.Equal(b.Spec, o.Spec) {
					t.Errorf("%s %s: spec changed in round trip:\n%s", name, o.Key(), out)
				}
				if b.Key() != o.Key() || b.APIVersion != o.APIVersion || len(b.Labels) != len(o.Labels) || len(b.Annotations) != len(o.Annotations) {
					t.Errorf("%s %s: metadata changed: %+v vs %+v", name, o.Key(), b.Meta, o.Meta)
				}
			}
		}
	}
}

func TestDecodeVirtualServiceFields(t *testing.T) {
	objs := decodeFile(t, "testdata/good/virtualservice-all.yaml")
	vs := objs[0].Spec.(*networking.VirtualService)
	r := vs.Http[0]
	if r.Timeout.AsDuration().String() != "10s" || r.Retries.PerTryTimeout.AsDuration().String() != "2s" {
		t.Errorf("durations: %v %v", r.Timeout, r.Retries.PerTryTimeout)
	}
	if r.Match[0].Headers["end-user"].GetExact() != "jason" || r.Match[0].Method.GetRegex() != "GET|POST" {
		t.Errorf("match: %v", r.Match[0])
	}
	if r.CorsPolicy.UnmatchedPreflights != networking.CorsPolicy_IGNORE || !r.CorsPolicy.AllowCredentials.GetValue() {
		t.Errorf("cors: %v", r.CorsPolicy)
	}
	if r.Fault.Abort.GetHttpStatus() != 503 || r.MirrorPercentage.GetValue() != 10.5 {
		t.Errorf("fault/mirror: %v %v", r.Fault, r.MirrorPercentage)
	}
	if vs.Http[3].Redirect.GetDerivePort() != networking.HTTPRedirect_FROM_PROTOCOL_DEFAULT {
		t.Errorf("derivePort: %v", vs.Http[3].Redirect)
	}
	if string(vs.Http[5].DirectResponse.Body.GetBytes()) != "hello" {
		t.Errorf("bytes body: %v", vs.Http[5].DirectResponse.Body)
	}
	if objs[0].Labels["app"] != "reviews" || objs[0].Namespace != "bookinfo" {
		t.Errorf("meta: %+v", objs[0].Meta)
	}
}

func TestDecodeDefaultsAndForms(t *testing.T) {
	in := `
# leading comment
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec: {servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]}
--- # separator with a comment
...
---
{"apiVersion": "networking.istio.io/v1alpha3", "kind": "Sidecar", "metadata": {"name": "s", "namespace": "x"}, "spec": {"egress": [{"hosts": ["*/*"]}]}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: dr}
spec:
  host: a
  traffic_policy: {load_balancer: {simple: 2}}
`
	objs, errs := Decode("forms.yaml", []byte(strings.ReplaceAll(in, "\n", "\r\n")))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if len(objs) != 3 {
		t.Fatalf("got %d objects", len(objs))
	}
	if objs[0].Namespace != "default" || objs[1].Namespace != "x" {
		t.Errorf("namespaces: %q %q", objs[0].Namespace, objs[1].Namespace)
	}
	dr := objs[2].Spec.(*networking.DestinationRule)
	if dr.TrafficPolicy.LoadBalancer.GetSimple() != networking.LoadBalancerSettings_RANDOM {
		t.Errorf("enum by number / proto names: %v", dr.TrafficPolicy)
	}
	if objs, errs := Decode("empty.yaml", []byte("\n# nothing\n---\n")); len(objs)+len(errs) != 0 {
		t.Errorf("empty input: %v %v", objs, errs)
	}
}

// TestDecodeBadDocuments checks that each bad document is rejected with an error naming the file,
// the object (or document) and the field.
func TestDecodeBadDocuments(t *testing.T) {
	const vsHead = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews, namespace: bookinfo}\n"
	const drHead = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews, namespace: bookinfo}\n"
	const vsObj = "VirtualService bookinfo/reviews"
	const drObj = "DestinationRule bookinfo/reviews"
	cases := []struct {
		name, doc, object, field, msg string
	}{
		{"unknown field deep", vsHead + "spec: {hosts: [a], http: [{route: [{destination: {hosst: a}}]}]}", vsObj, "spec.http[0].route[0].destination.hosst", `did you mean "host"`},
		{"unknown top-level spec field", vsHead + "spec: {hostz: [a]}", vsObj, "spec.hostz", "unknown field"},
		{"wrong type string for list", vsHead + "spec: {hosts: a}", vsObj, "spec.hosts", "expected an array"},
		{"wrong type object for string", vsHead + "spec: {hosts: [{a: b}]}", vsObj, "spec.hosts[0]", "expected a string"},
		{"wrong type weight", vsHead + "spec: {hosts: [a], http: [{route: [{destination: {host: a}, weight: ten}]}]}", vsObj, "spec.http[0].route[0].weight", "expected an integer"},
		{"int32 overflow", vsHead + "spec: {hosts: [a], http: [{route: [{destination: {host: a}, weight: 3000000000}]}]}", vsObj, "spec.http[0].route[0].weight", "out of range"},
		{"negative uint", vsHead + "spec: {hosts: [a], http: [{match: [{port: -1}], route: [{destination: {host: a}}]}]}", vsObj, "spec.http[0].match[0].port", "non-negative"},
		{"fractional int", vsHead + "spec: {hosts: [a], http: [{match: [{port: 80.5}], route: [{destination: {host: a}}]}]}", vsObj, "spec.http[0].match[0].port", "integer"},
		{"bad duration", vsHead + "spec: {hosts: [a], http: [{route: [{destination: {host: a}}], timeout: 10}]}", vsObj, "spec.http[0].timeout", "duration"},
		{"bad duration unit", vsHead + "spec: {hosts: [a], http: [{route: [{destination: {host: a}}], timeout: 1 minute}]}", vsObj, "spec.http[0].timeout", "invalid duration"},
		{"invalid enum", drHead + "spec: {host: a, trafficPolicy: {loadBalancer: {simple: FASTEST}}}", drObj, "spec.trafficPolicy.loadBalancer.simple", "invalid value \"FASTEST\""},
		{"invalid enum number", drHead + "spec: {host: a, trafficPolicy: {tls: {mode: 42}}}", drObj, "spec.trafficPolicy.tls.mode", "invalid value"},
		{"oneof twice", vsHead + "spec: {hosts: [a], http: [{match: [{uri: {exact: /a, prefix: /b}}], route: [{destination: {host: a}}]}]}", vsObj, "spec.http[0].match[0].uri.prefix", "only one of"},
		{"field twice by both names", drHead + "spec: {host: a, exportTo: [.], export_to: ['*']}", drObj, "spec.export_to", "field set twice"},
		{"bool as string", drHead + "spec: {host: a, trafficPolicy: {outlierDetection: {splitExternalLocalOriginErrors: 'yes'}}}", drObj, "spec.trafficPolicy.outlierDetection.splitExternalLocalOriginErrors", "expected a boolean"},
		{"wrapper wrong type", vsHead + "spec: {hosts: [a], http: [{route: [{destination: {host: a}}], corsPolicy: {allowCredentials: maybe}}]}", vsObj, "spec.http[0].corsPolicy.allowCredentials", "expected a boolean"},
		{"map value wrong type", vsHead + "spec: {hosts: [a], http: [{match: [{headers: {x: exact}}], route: [{destination: {host: a}}]}]}", vsObj, `spec.http[0].match[0].headers["x"]`, "expected an object"},
		{"bad base64", vsHead + "spec: {hosts: [a], http: [{directResponse: {status: 200, body: {bytes: '!!!'}}}]}", vsObj, "spec.http[0].directResponse.body.bytes", "base64"},
		{"null in list", vsHead + "spec: {hosts: [a, null], http: [{route: [{destination: {host: a}}]}]}", vsObj, "spec.hosts[1]", "null"},
		{"spec not an object", vsHead + "spec: [1, 2]", vsObj, "spec", "expected an object"},
		{"unknown top-level field", vsHead + "specs: {}", vsObj, "specs", "unknown field"},
		{"unknown metadata field", "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews, namespace: bookinfo, nmespace: x}\nspec: {}", vsObj, "metadata.nmespace", "unknown field"},
		{"bad apiVersion", "apiVersion: networking.istio.io/v2\nkind: VirtualService\nmetadata: {name: reviews, namespace: bookinfo}\nspec: {}", vsObj, "apiVersion", "unsupported apiVersion"},
		{"unknown kind", "apiVersion: networking.istio.io/v1\nkind: VirtualServic\nmetadata: {name: reviews}\nspec: {}", "object default/reviews", "kind", "unsupported kind"},
		{"missing name", "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {namespace: x}\nspec: {}", "Gateway (document 1)", "metadata.name", "name is required"},
		{"bad name", "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: Bad_Name}\nspec: {}", "Gateway (document 1)", "metadata.name", "DNS-1123"},
		{"bad namespace", "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: -x}\nspec: {}", "Gateway (document 1)", "metadata.namespace", "DNS-1123"},
		{"bad label", "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw, labels: {'a b': c}}\nspec: {}", "Gateway default/gw", `metadata.labels["a b"]`, "invalid label"},
		{"yaml syntax", "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw\n", "document 1", "", "parsing YAML"},
		{"not an object", "- a\n- b\n", "document 1", "", "expected an object"},
		{"duplicate yaml key", vsHead + "spec: {hosts: [a], hosts: [b]}", "document 1", "", "parsing YAML"},
		{"missing apiVersion", "kind: Gateway\nmetadata: {name: gw}\nspec: {}", "Gateway default/gw", "apiVersion", "apiVersion is required"},
		{"list item bad", `{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"networking.istio.io/v1","kind":"Gateway","metadata":{"name":"gw"},"spec":{"servers":[{"port":{"numbr":80}}]}}]}`, "Gateway default/gw", "items[0].spec.servers[0].port.numbr", "unknown field"},
		{"sidecar wrong nested type", "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: s}\nspec: {egress: [{hosts: ['./*'], port: 80}]}", "Sidecar default/s", "spec.egress[0].port", "expected an object"},
		{"service entry bad enum", "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: se}\nspec: {hosts: [a.com], resolution: DNSX}", "ServiceEntry default/se", "spec.resolution", "invalid value"},
		{"workload entry ports wrong type", "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: we}\nspec: {address: 1.2.3.4, ports: {http: eighty}}", "WorkloadEntry default/we", `spec.ports["http"]`, "integer"},
		{"peer authentication networking apiVersion", "apiVersion: networking.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: pa, namespace: ns}\nspec: {}", "PeerAuthentication ns/pa", "apiVersion", `unsupported apiVersion "networking.istio.io/v1" (want one of security.istio.io/v1, security.istio.io/v1beta1)`},
		{"virtual service security apiVersion", "apiVersion: security.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews, namespace: bookinfo}\nspec: {}", vsObj, "apiVersion", `unsupported apiVersion "security.istio.io/v1" (want one of networking.istio.io/v1, networking.istio.io/v1beta1, networking.istio.io/v1alpha3)`},
		{"peer authentication missing apiVersion", "kind: PeerAuthentication\nmetadata: {name: pa, namespace: ns}\nspec: {}", "PeerAuthentication ns/pa", "apiVersion", "apiVersion is required (one of security.istio.io/v1, security.istio.io/v1beta1)"},
		{"peer authentication bad mode", "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: pa, namespace: ns}\nspec: {mtls: {mode: STRICTER}}", "PeerAuthentication ns/pa", "spec.mtls.mode", `invalid value "STRICTER" for Mode (valid: UNSET, DISABLE, PERMISSIVE, STRICT)`},
		{"peer authentication bad mode number", "apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata: {name: pa, namespace: ns}\nspec: {mtls: {mode: 7}}", "PeerAuthentication ns/pa", "spec.mtls.mode", "invalid value 7"},
		{"peer authentication bad port mode", "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: pa, namespace: ns}\nspec: {selector: {matchLabels: {app: a}}, portLevelMtls: {8080: {mode: strict}}}", "PeerAuthentication ns/pa", `spec.portLevelMtls["8080"].mode`, `invalid value "strict"`},
		{"peer authentication port name", "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: pa, namespace: ns}\nspec: {selector: {matchLabels: {app: a}}, portLevelMtls: {http: {mode: STRICT}}}", "PeerAuthentication ns/pa", `spec.portLevelMtls["http"]`, "non-negative integer"},
		{"peer authentication negative port", "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: pa, namespace: ns}\nspec: {selector: {matchLabels: {app: a}}, portLevelMtls: {-80: {mode: STRICT}}}", "PeerAuthentication ns/pa", `spec.portLevelMtls["-80"]`, "non-negative integer"},
		{"peer authentication unknown field", "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: pa, namespace: ns}\nspec: {mtls: {mod: STRICT}}", "PeerAuthentication ns/pa", "spec.mtls.mod", `unknown field "mod" in MutualTLS (did you mean "mode"?)`},
		{"peer authentication selector wrong type", "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: pa, namespace: ns}\nspec: {selector: {matchLabels: [app]}}", "PeerAuthentication ns/pa", "spec.selector.matchLabels", "expected an object"},
		{"peer authentication workloadSelector", "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: pa, namespace: ns}\nspec: {workloadSelector: {labels: {app: a}}}", "PeerAuthentication ns/pa", "spec.workloadSelector", `unknown field "workloadSelector" in PeerAuthentication`},
		{"removed field", vsHead + "spec: {hosts: [a], http: [{appendHeaders: {a: b}, route: [{destination: {host: a}}]}]}", vsObj, "spec.http[0].appendHeaders", `unknown field "appendHeaders" in HTTPRoute: Istio removed this field from its API`},
		{"istio kind not supported yet", "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {name: t, namespace: ns}\nspec: {url: oci://x}", "object ns/t", "", "kind WasmPlugin (extensions.istio.io) is not supported yet"},
		{"telemetry unknown field", "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: t, namespace: ns}\nspec: {tracing: [{sampling: 10}]}", "Telemetry ns/t", "spec.tracing[0].sampling", `unknown field "sampling" in Tracing`},
		{"telemetry networking apiVersion", "apiVersion: networking.istio.io/v1\nkind: Telemetry\nmetadata: {name: t, namespace: ns}\nspec: {}", "Telemetry ns/t", "apiVersion", `unsupported apiVersion "networking.istio.io/v1" (want one of telemetry.istio.io/v1, telemetry.istio.io/v1alpha1)`},
		{"telemetry bad mode", "apiVersion: telemetry.istio.io/v1alpha1\nkind: Telemetry\nmetadata: {name: t, namespace: ns}\nspec: {accessLogging: [{match: {mode: BOTH}}]}", "Telemetry ns/t", "spec.accessLogging[0].match.mode", `invalid value "BOTH" for WorkloadMode`},
		{"authorization policy networking apiVersion", "apiVersion: networking.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: ap, namespace: ns}\nspec: {action: DENY, rules: [{}]}", "AuthorizationPolicy ns/ap", "apiVersion", `unsupported apiVersion "networking.istio.io/v1" (want one of security.istio.io/v1, security.istio.io/v1beta1)`},
		{"authorization policy bad action", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: ap, namespace: ns}\nspec: {action: REJECT}", "AuthorizationPolicy ns/ap", "spec.action", `invalid value "REJECT" for Action (valid: ALLOW, DENY, AUDIT, CUSTOM)`},
		{"authorization policy unknown field", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: ap, namespace: ns}\nspec: {rules: [{from: [{source: {principal: [a]}}]}]}", "AuthorizationPolicy ns/ap", "spec.rules[0].from[0].source.principal", `unknown field "principal" in Source (did you mean "principals"?)`},
		{"authorization policy port number", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: ap, namespace: ns}\nspec: {rules: [{to: [{operation: {ports: [80]}}]}]}", "AuthorizationPolicy ns/ap", "spec.rules[0].to[0].operation.ports[0]", "expected a string, got number"},
		{"request authentication unknown field", "apiVersion: security.istio.io/v1beta1\nkind: RequestAuthentication\nmetadata: {name: ra, namespace: ns}\nspec: {jwtRules: [{issuer: a, jwks_uri: 'https://a/k', jwksURI: 'https://a/k'}]}", "RequestAuthentication ns/ra", "spec.jwtRules[0].jwksURI", `unknown field "jwksURI" in JWTRule`},
		{"request authentication timeout", "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: ra, namespace: ns}\nspec: {jwtRules: [{issuer: a, timeout: apple}]}", "RequestAuthentication ns/ra", "spec.jwtRules[0].timeout", "duration"},
		{"request authentication null rule", "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: ra, namespace: ns}\nspec: {jwtRules: [null]}", "RequestAuthentication ns/ra", "spec.jwtRules[0]", "null is not allowed in a list"},
		{"gateway api gateway", "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: ns}\nspec: {gatewayClassName: istio, listeners: []}", "object ns/gw", "", "kind Gateway (gateway.networking.k8s.io) is not supported yet"},
		{"kubernetes object", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm, namespace: ns}\ndata: {a: b}", "object ns/cm", "", "kind ConfigMap (apiVersion v1) is not an Istio object; Strait reads only Istio configuration and Secrets: VirtualService, "},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			const file = "testdata/bad.yaml"
			objs, errs := Decode(file, []byte(tc.doc))
			if len(objs) != 0 {
				t.Errorf("bad document decoded to %d objects", len(objs))
			}
			if len(errs) == 0 {
				t.Fatal("no error")
			}
			var found bool
			for _, err := range errs {
				var ce *Error
				if !errors.As(err, &ce) {
					t.Fatalf("error %T is not *config.Error: %v", err, err)
				}
				msg := err.Error()
				// The line is the field's (these documents are short: the field is on one of them).
				lines := strings.Count(tc.doc, "\n") + 1
				if ce.Field == tc.field && strings.Contains(msg, tc.msg) && strings.Contains(msg, tc.object) &&
					strings.HasPrefix(msg, file+":"+strconv.Itoa(ce.Line)+": ") && ce.Line >= 1 && ce.Line <= lines {
					found = true
				}
			}
			if !found {
				t.Errorf("want an error naming %q, %q, field %q, containing %q; got:\n%v", file, tc.object, tc.field, tc.msg, errors.Join(errs...))
			}
		})
	}
}

// TestDecodeErrorLineIsTheField: an error names the line of the offending field, in a block-style
// document after another document, and the document's first line when the field is not found.
func TestDecodeErrorLineIsTheField(t *testing.T) {
	in := "# a comment\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: ns}\nspec:\n  selector: {istio: ingressgateway}\n  servers: []\n" +
		"---\n\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\n  namespace: ns\nspec:\n  hosts: [reviews]\n" +
		"  http:\n  - route:\n    - destination:\n        host: reviews\n      weihgt: 5\n    timeout: soon\n"
	_, errs := Decode("f.yaml", []byte(in))
	want := map[string]int{"spec.http[0].route[0].weihgt": 21, "spec.http[0].timeout": 22}
	for _, err := range errs {
		var ce *Error
		if !errors.As(err, &ce) {
			t.Fatalf("%T: %v", err, err)
		}
		if line, ok := want[ce.Field]; ok {
			if ce.Line != line {
				t.Errorf("%s: line %d, want %d (%v)", ce.Field, ce.Line, line, err)
			}
			delete(want, ce.Field)
		}
	}
	for f := range want {
		t.Errorf("no error for %s in %v", f, errors.Join(errs...))
	}
}

func TestDecodeKeepsGoodDocuments(t *testing.T) {
	in := "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: bad}\nspec: {nope: 1}\n---\n" +
		"apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: good}\nspec: {}\n"
	objs, errs := Decode("two.yaml", []byte(in))
	if len(objs) != 1 || objs[0].Name != "good" || len(errs) != 1 {
		t.Fatalf("objs %v errs %v", objs, errs)
	}
	if k, ok := errs[0].(*Error).Key(); !ok || k.Name != "bad" {
		t.Errorf("error key: %v %v", k, ok)
	}
}

func TestDecodeLimits(t *testing.T) {
	deep := "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec: " + strings.Repeat("[", 200) + strings.Repeat("]", 200)
	if _, errs := Decode("deep.yaml", []byte(deep)); len(errs) == 0 || !strings.Contains(errs[0].Error(), "deeper") {
		t.Errorf("deep: %v", errs)
	}
	block := "a:\n"
	for i := 1; i < 100; i++ {
		block += strings.Repeat(" ", i) + "a:\n"
	}
	if _, errs := Decode("deep2.yaml", []byte(block)); len(errs) == 0 || !strings.Contains(errs[0].Error(), "deeper") {
		t.Errorf("deep block: %v", errs)
	}
	many := strings.Repeat("a: 1\n---\n", MaxDocuments+1)
	if _, errs := Decode("many.yaml", []byte(many)); len(errs) != 1 || !strings.Contains(errs[0].Error(), "documents") {
		t.Errorf("many: %v", errs)
	}
	big := "a: \"" + strings.Repeat("x", MaxDocumentSize) + "\"\n"
	if _, errs := Decode("big.yaml", []byte(big)); len(errs) != 1 || !strings.Contains(errs[0].Error(), "bytes") {
		t.Errorf("big: %v", errs)
	}
	bomb := "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n" +
		"d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n" +
		"g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
	if _, errs := Decode("bomb.yaml", []byte(bomb)); len(errs) == 0 {
		t.Errorf("alias bomb accepted")
	}
}

func TestKindFor(t *testing.T) {
	for in, want := range map[string]Kind{
		"virtualservice": VirtualService, "VirtualServices": VirtualService, "vs": VirtualService, "VS": VirtualService,
		"dr": DestinationRule, "destinationrules.networking.istio.io": DestinationRule, "se": ServiceEntry,
		"we": WorkloadEntry, "wg": WorkloadGroup, "workloadgroups": WorkloadGroup, "sidecar": Sidecar,
		"gw": Gateway, "Gateway": Gateway, "serviceentries": ServiceEntry,
		"pa": PeerAuthentication, "PeerAuthentication": PeerAuthentication, "peerauthentications": PeerAuthentication,
		"peerauthentications.security.istio.io": PeerAuthentication, "PA.Security.Istio.IO": PeerAuthentication,
		"gateways.networking.istio.io": Gateway, "ap": AuthorizationPolicy, "AuthorizationPolicies": AuthorizationPolicy,
		"authorizationpolicies.security.istio.io": AuthorizationPolicy,
		"ra": RequestAuthentication, "requestauthentication": RequestAuthentication, "RequestAuthentications.security.istio.io": RequestAuthentication,
		"telemetry": Telemetry, "Telemetries": Telemetry, "telemetries.telemetry.istio.io": Telemetry,
	} {
		if got, ok := KindFor(in); !ok || got != want {
			t.Errorf("KindFor(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "pods", "v", "wasmplugin", "telemetries.security.istio.io", "authorizationpolicies.networking.istio.io", "peerauthentications.networking.istio.io", "virtualservices.security.istio.io", ".security.istio.io"} {
		if k, ok := KindFor(in); ok {
			t.Errorf("KindFor(%q) = %q, want not found", in, k)
		}
	}
	for _, k := range Kinds {
		if NewSpec(k) == nil {
			t.Errorf("NewSpec(%s) = nil", k)
		}
	}
	if NewSpec("Pod") != nil {
		t.Error("NewSpec(Pod) != nil")
	}
}

func TestLoadReportsDecodeAndValidationErrors(t *testing.T) {
	in := "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\nspec: {hosts: [a], htttp: []}\n---\n" +
		"apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: b}\nspec: {host: r, trafficPolicy: {portLevelSettings: [{port: {number: 70000}}]}}\n---\n" +
		"apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: c}\nspec: {servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]}\n"
	objs, errs := Load("mixed.yaml", []byte(in))
	if len(objs) != 1 || objs[0].Name != "c" {
		t.Fatalf("objects: %v", objs)
	}
	joined := errors.Join(errs...).Error()
	for _, want := range []string{"VirtualService default/a: spec.htttp", "DestinationRule default/b: spec.trafficPolicy.portLevelSettings[0].port.number"} {
		if !strings.Contains(joined, want) {
			t.Errorf("errors lack %q:\n%s", want, joined)
		}
	}
}

func TestDecodeErrorLines(t *testing.T) {
	in := "# header\n\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: a}\nspec: {nope: 1}\n---\n\n# comment\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: b}\nspec: {nope: 1}\n--- # end\nkind: [\n"
	_, errs := Decode("lines.yaml", []byte(in))
	// Each error names the line of its field (spec.nope), or where the document starts.
	want := []string{"lines.yaml:6: Gateway default/a: spec.nope:", "lines.yaml:13: Gateway default/b: spec.nope:", "lines.yaml:15: document 3: parsing YAML"}
	if len(errs) != len(want) {
		t.Fatalf("errors: %v", errs)
	}
	for i, w := range want {
		if !strings.HasPrefix(errs[i].Error(), w) {
			t.Errorf("error %d = %q, want prefix %q", i, errs[i], w)
		}
	}
}

// TestGoodDocumentsCoverEveryHTTPField makes sure the round-trip test data sets every field of
// HTTPRoute, HTTPMatchRequest, HTTPRetry, CorsPolicy, HTTPRedirect and HTTPRewrite at least once,
// so a field added to the API without test data fails here.
func TestGoodDocumentsCoverEveryHTTPField(t *testing.T) {
	seen := map[string]bool{}
	var visit func(m protoreflect.Message)
	visit = func(m protoreflect.Message) {
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			seen[string(m.Descriptor().Name())+"."+fd.JSONName()] = true
			switch {
			case fd.IsList() && fd.Message() != nil:
				for i := 0; i < v.List().Len(); i++ {
					visit(v.List().Get(i).Message())
				}
			case fd.IsMap() && fd.MapValue().Message() != nil:
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					visit(mv.Message())
					return true
				})
			case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
				visit(v.Message())
			}
			return true
		})
	}
	for _, o := range decodeFile(t, "testdata/good/virtualservice-all.yaml") {
		visit(o.Spec.ProtoReflect())
	}
	for _, m := range []proto.Message{&networking.VirtualService{}, &networking.HTTPRoute{}, &networking.HTTPMatchRequest{}, &networking.HTTPRetry{},
		&networking.CorsPolicy{}, &networking.HTTPRedirect{}, &networking.HTTPRewrite{}, &networking.HTTPRouteDestination{},
		&networking.HTTPFaultInjection_Delay{}, &networking.HTTPMirrorPolicy{}, &networking.Headers_HeaderOperations{}} {
		md := m.ProtoReflect().Descriptor()
		for i := 0; i < md.Fields().Len(); i++ {
			fd := md.Fields().Get(i)
			if name := string(md.Name()) + "." + fd.JSONName(); !seen[name] {
				if fd.Name() == "exponential_delay" {
					continue // not supported by Istio: rejected by validation
				}
				t.Errorf("no test data sets %s", name)
			}
		}
	}
}

// TestDecodeRemovedFieldWarning: websocketUpgrade, removed from Istio's API but still in Istio's
// own test data, is accepted with a warning that names the field and its line, and dropped; in
// a list item too. Other removed fields stay errors (TestDecodeBadDocuments).
func TestDecodeRemovedFieldWarning(t *testing.T) {
	doc := "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: ws, namespace: ns}\nspec:\n  hosts: [a]\n  http:\n  - websocket_upgrade: true\n    route: [{destination: {host: a}}]\n"
	objs, errs := Load("ws.yaml", []byte(doc))
	if len(errs) > 0 || len(objs) != 1 {
		t.Fatalf("objects %d, errors %v", len(objs), errs)
	}
	w := objs[0].Warnings
	want := `ws.yaml:7: VirtualService ns/ws: spec.http[0].websocket_upgrade: field "websocket_upgrade" of HTTPRoute is deprecated: Istio removed it from its API and ignores it (WebSocket upgrades are always allowed); delete it`
	if len(w) != 1 || w[0].Error() != want {
		t.Fatalf("warnings = %v, want %s", w, want)
	}
	b, err := MarshalJSON(objs[0])
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "websocket") {
		t.Errorf("the dropped field is stored:\n%s", b)
	}
	list := "apiVersion: v1\nkind: List\nitems:\n- apiVersion: networking.istio.io/v1\n  kind: VirtualService\n  metadata: {name: ws, namespace: ns}\n  spec: {hosts: [a], http: [{websocketUpgrade: true, route: [{destination: {host: a}}]}]}\n"
	if objs, errs = Decode("list.yaml", []byte(list)); len(errs) > 0 || len(objs) != 1 || len(objs[0].Warnings) != 1 {
		t.Errorf("in a List: %d objects, errors %v", len(objs), errs)
	}
}
