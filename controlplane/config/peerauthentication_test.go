package config

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	security "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
)

func TestKindGroupsAndVersions(t *testing.T) {
	for _, k := range Kinds {
		g, versions, def := GroupFor(k), APIVersionsFor(k), DefaultAPIVersionFor(k)
		if (g == "") != (k == Secret) || len(versions) == 0 || def != versions[0] {
			t.Errorf("%s: group %q, versions %v, default %q", k, g, versions, def)
		}
		for _, v := range versions {
			if apiGroup(v) != g || !validAPIVersion(v) {
				t.Errorf("%s: apiVersion %q is not of group %q or not in APIVersions", k, v, g)
			}
		}
	}
	if GroupFor(PeerAuthentication) != "security.istio.io" || DefaultAPIVersionFor(PeerAuthentication) != "security.istio.io/v1" {
		t.Errorf("PeerAuthentication: %q %q", GroupFor(PeerAuthentication), DefaultAPIVersionFor(PeerAuthentication))
	}
	if DefaultAPIVersionFor(VirtualService) != DefaultAPIVersion || GroupFor(Sidecar) != Group {
		t.Errorf("networking kinds: %q %q", DefaultAPIVersionFor(VirtualService), GroupFor(Sidecar))
	}
	if GroupFor("Pod") != "" || APIVersionsFor("Pod") != nil || DefaultAPIVersionFor("Pod") != "" {
		t.Error("unknown kind has a group or versions")
	}
	if _, ok := NewSpec(PeerAuthentication).(*security.PeerAuthentication); !ok {
		t.Errorf("NewSpec(PeerAuthentication) = %T", NewSpec(PeerAuthentication))
	}
}

// TestPeerAuthenticationObjects checks PeerAuthentication objects built in code, as a Source may
// hand them over: apiVersion per kind, rendering, and nil parts.
func TestPeerAuthenticationObjects(t *testing.T) {
	pa := &Object{Kind: PeerAuthentication, Meta: Meta{Name: "default", Namespace: "istio-system"}, Spec: &security.PeerAuthentication{
		Selector: &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"istio": "ingressgateway"}},
		Mtls:     &security.PeerAuthentication_MutualTLS{Mode: security.PeerAuthentication_MutualTLS_STRICT},
		PortLevelMtls: map[uint32]*security.PeerAuthentication_MutualTLS{
			8443: {Mode: security.PeerAuthentication_MutualTLS_DISABLE},
		},
	}}
	// A policy with a selector in the root namespace is valid, as in Istio.
	if err := Validate(pa); err != nil {
		t.Fatal(err)
	}
	out, err := MarshalYAML(pa)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n") {
		t.Errorf("rendered:\n%s", out)
	}
	back := mustDecode(t, string(out))
	if back.Kind != PeerAuthentication || back.APIVersion != "security.istio.io/v1" || Validate(back) != nil {
		t.Errorf("round trip: %+v", back)
	}

	for _, tc := range []struct {
		name       string
		apiVersion string
		spec       *security.PeerAuthentication
		field, msg string
	}{
		{"networking apiVersion", "networking.istio.io/v1", &security.PeerAuthentication{}, "apiVersion", `unsupported apiVersion "networking.istio.io/v1"`},
		{"mode out of range", "", &security.PeerAuthentication{Mtls: &security.PeerAuthentication_MutualTLS{Mode: 9}}, "spec.mtls.mode", "invalid mTLS mode 9"},
		{"nil port entry", "", &security.PeerAuthentication{
			Selector:      &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": "a"}},
			PortLevelMtls: map[uint32]*security.PeerAuthentication_MutualTLS{80: nil},
		}, `spec.portLevelMtls["80"]`, "must not be null"},
		{"port entry mode", "", &security.PeerAuthentication{
			Selector:      &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": "a"}},
			PortLevelMtls: map[uint32]*security.PeerAuthentication_MutualTLS{80: {Mode: -1}},
		}, `spec.portLevelMtls["80"].mode`, "invalid mTLS mode -1"},
		{"too many labels", "", &security.PeerAuthentication{Selector: &typev1beta1.WorkloadSelector{MatchLabels: manyLabels(maxSelectorLabels + 1)}},
			"spec.selector.matchLabels", "more than the limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := &Object{Kind: PeerAuthentication, APIVersion: tc.apiVersion, Meta: Meta{Name: "pa", Namespace: "ns"}, Spec: tc.spec}
			err := Validate(o)
			var found bool
			for _, e := range Errors(err) {
				var ce *Error
				if errors.As(e, &ce) && ce.Field == tc.field && strings.Contains(ce.Msg, tc.msg) {
					found = true
				}
			}
			if !found {
				t.Errorf("want an error at %q containing %q, got: %v", tc.field, tc.msg, err)
			}
		})
	}
	// A networking kind with a security apiVersion is refused too.
	vs := mustDecode(t, doc("VirtualService", "  hosts: [a]\n  http:\n  - route: [{destination: {host: a}}]\n"))
	vs.APIVersion = "security.istio.io/v1"
	if err := Validate(vs); err == nil || !strings.Contains(err.Error(), `apiVersion: unsupported apiVersion "security.istio.io/v1"`) {
		t.Errorf("VirtualService with a security apiVersion: %v", err)
	}
}

func manyLabels(n int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m["l"+strconv.Itoa(i)] = "v"
	}
	return m
}

// TestDecodeRefusesOtherKinds checks that a document that is not one of Kinds gets exactly one
// error saying why, however its other fields look, also inside a List.
func TestDecodeRefusesOtherKinds(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"wasm plugin", "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {name: a}\nspec: {url: oci://x}\n",
			"kind WasmPlugin (extensions.istio.io) is not supported yet"},
		{"proxy config", "apiVersion: networking.istio.io/v1beta1\nkind: ProxyConfig\nmetadata: {name: a}\nspec: {concurrency: 2}\n",
			"kind ProxyConfig (networking.istio.io) is not supported yet"},
		{"gateway api gateway", "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: a}\nspec: {gatewayClassName: istio, listeners: [{name: http, port: 80, protocol: HTTP}]}\n",
			"kind Gateway (gateway.networking.k8s.io) is not supported yet"},
		{"gateway api route", "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: HTTPRoute\nmetadata: {name: a}\nspec: {parentRefs: [{name: gw}]}\n",
			"kind HTTPRoute (gateway.networking.k8s.io) is not supported yet"},
		{"config map", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: ns, bogus: 1}\ndata: {a: b}\n",
			"f.yaml:1: object ns/a: kind ConfigMap (apiVersion v1) is not an Istio object; Strait reads only Istio configuration and Secrets: VirtualService, DestinationRule, ServiceEntry, WorkloadEntry, WorkloadGroup, Sidecar, Gateway, EnvoyFilter, PeerAuthentication, AuthorizationPolicy, RequestAuthentication, Telemetry, RateLimit, Secret"},
		{"deployment", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\nspec: {replicas: 1}\n",
			"kind Deployment (apiVersion apps/v1) is not an Istio object"},
		{"list item", `{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Service","metadata":{"name":"s"},"spec":{"ports":[{"port":80}]}}]}`,
			"f.yaml:1: object default/s: items[0]: kind Service (apiVersion v1) is not an Istio object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, errs := Decode("f.yaml", []byte(tc.doc))
			if len(objs) != 0 || len(errs) != 1 {
				t.Fatalf("got %d objects and errors %v, want one error", len(objs), errs)
			}
			if !strings.Contains(errs[0].Error(), tc.want) {
				t.Errorf("got  %v\nwant %s", errs[0], tc.want)
			}
		})
	}
	// Misspelt Istio kinds and Istio kinds with the wrong apiVersion keep their field-by-field
	// errors.
	_, errs := Decode("f.yaml", []byte("apiVersion: v1\nkind: Gateway\nmetadata: {name: a}\nspec: {servers: []}\n"))
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), `Gateway default/a: apiVersion: unsupported apiVersion "v1" (want one of networking.istio.io/v1,`) {
		t.Errorf("Gateway with apiVersion v1: %v", errs)
	}
	_, errs = Decode("f.yaml", []byte("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: a}\nspec: {mtls: {mode: STRICT}}\n"))
	if len(errs) != 0 {
		t.Errorf("PeerAuthentication: %v", errs)
	}
}
