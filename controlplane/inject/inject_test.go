package inject

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/internal/appprobe"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func testConfig() Config {
	return Config{
		Image:          "strait/proxy:test",
		CAAddress:      "istiod.istio-system.svc:15012",
		TrustDomain:    "cluster.local",
		ClusterID:      "Kubernetes",
		Mesh:           config.DefaultMeshConfig(),
		NativeSidecars: true,
		Resources:      DefaultResources(),
	}
}

func readPod(t *testing.T, path string) *corev1.Pod {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var pod corev1.Pod
	if err := yaml.UnmarshalStrict(b, &pod); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &pod
}

// TestGolden: testdata/NAME.input.yaml (a pod as the API server hands it to the webhook) →
// testdata/NAME.golden.yaml (the injected pod). Regenerate with -update and read the diff.
func TestGolden(t *testing.T) {
	inputs, _ := filepath.Glob("testdata/*.input.yaml")
	if len(inputs) == 0 {
		t.Fatal("no golden cases")
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".input.yaml")
		t.Run(name, func(t *testing.T) {
			pod := readPod(t, in)
			before, _ := json.Marshal(pod)
			out, err := Inject(pod, "bookstore", testConfig())
			if err != nil {
				t.Fatal(err)
			}
			if after, _ := json.Marshal(pod); string(after) != string(before) {
				t.Error("Inject changed its input")
			}
			got, err := yaml.Marshal(out)
			if err != nil {
				t.Fatal(err)
			}
			golden := strings.TrimSuffix(in, ".input.yaml") + ".golden.yaml"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if string(got) != string(want) {
				t.Errorf("%s differs from the injection; run go test -update and review the diff.\ngot:\n%s", golden, got)
			}
			// Whatever the sidecar is given must be what it accepts.
			for _, c := range append(out.Spec.InitContainers, out.Spec.Containers...) {
				for _, e := range c.Env {
					if e.Name == "ISTIO_KUBE_APP_PROBERS" {
						if _, err := appprobe.Parse(e.Value); err != nil {
							t.Errorf("the injected probe table is refused by strait-proxy: %v", err)
						}
					}
				}
			}
		})
	}
}

// TestInjectedShape checks the properties the issue names on the default injection.
func TestInjectedShape(t *testing.T) {
	out, err := Inject(readPod(t, "testdata/reviews.input.yaml"), "bookstore", testConfig())
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Spec.InitContainers) != 2 || out.Spec.InitContainers[0].Name != InitContainer || out.Spec.InitContainers[1].Name != ProxyContainer {
		t.Fatalf("init containers: %v", names(out.Spec.InitContainers))
	}
	proxy := out.Spec.InitContainers[1]
	if proxy.RestartPolicy == nil || *proxy.RestartPolicy != corev1.ContainerRestartPolicyAlways || proxy.StartupProbe == nil {
		t.Error("the proxy is not a native sidecar with a startup probe")
	}
	if u := proxy.SecurityContext.RunAsUser; u == nil || *u != ProxyUID {
		t.Error("the proxy does not run as uid 1337")
	}
	app := out.Spec.Containers[0]
	if app.ReadinessProbe.HTTPGet == nil || app.ReadinessProbe.HTTPGet.Path != "/app-health/reviews/readyz" || app.ReadinessProbe.HTTPGet.Port.IntVal != StatusPort || app.ReadinessProbe.PeriodSeconds != 5 {
		t.Errorf("readiness probe not rewritten: %+v", app.ReadinessProbe)
	}
	if app.LivenessProbe.HTTPGet == nil || app.LivenessProbe.HTTPGet.Path != "/app-health/reviews/livez" {
		t.Errorf("TCP liveness probe not rewritten: %+v", app.LivenessProbe)
	}
	if app.StartupProbe.Exec == nil {
		t.Error("an exec probe was rewritten")
	}
	var table appprobe.Probers
	for _, e := range proxy.Env {
		if e.Name == "ISTIO_KUBE_APP_PROBERS" {
			table, err = appprobe.Parse(e.Value)
		}
	}
	if err != nil || table["/app-health/reviews/readyz"].HTTPGet.Port != 9080 || table["/app-health/reviews/livez"].TCPSocket.Port != 9080 {
		t.Errorf("probe table: %v %v", table, err)
	}
	if out.Annotations["prometheus.io/port"] != "15020" || !hasArg(proxy.Args, "--app-metrics-url=http://localhost:9080/metrics") {
		t.Errorf("metrics not merged: %v %v", out.Annotations, proxy.Args)
	}
	if out.Labels["service.istio.io/canonical-name"] != "reviews" || out.Labels["service.istio.io/canonical-revision"] != "v1" || out.Labels["security.istio.io/tlsMode"] != "istio" {
		t.Errorf("labels: %v", out.Labels)
	}
	var st Status
	if err := json.Unmarshal([]byte(out.Annotations[AnnotationStatus]), &st); err != nil || st.Revision != "default" || len(st.Volumes) != 3 {
		t.Errorf("status annotation %q: %v", out.Annotations[AnnotationStatus], err)
	}
	// Injecting an injected pod is refused by the policy.
	if d := Decide("bookstore", map[string]string{"istio-injection": "enabled"}, out, ""); d.Inject {
		t.Error("an injected pod would be injected again")
	}
}

func names(cs []corev1.Container) []string {
	var n []string
	for _, c := range cs {
		n = append(n, c.Name)
	}
	return n
}

func hasArg(args []string, a string) bool {
	for _, x := range args {
		if x == a {
			return true
		}
	}
	return false
}

// TestAnnotationErrors: an invalid or unsupported annotation refuses the pod, naming it.
func TestAnnotationErrors(t *testing.T) {
	for _, c := range []struct{ key, value, want string }{
		{"traffic.sidecar.istio.io/includeOutboundPorts", "443", "not supported by Strait yet"},
		{"traffic.sidecar.istio.io/kubevirtInterfaces", "net1", "not supported by Strait yet"},
		{"sidecar.istio.io/bootstrapOverride", "x", "not supported by Strait yet"},
		{"sidecar.istio.io/interceptionMode", "TPROXY", "only REDIRECT"},
		{"traffic.sidecar.istio.io/excludeInboundPorts", "80,http", "not a comma-separated list of ports"},
		{"traffic.sidecar.istio.io/excludeInboundPorts", "*", "not a comma-separated list of ports"},
		{"traffic.sidecar.istio.io/includeInboundPorts", "70000", "out of range"},
		{"traffic.sidecar.istio.io/excludeOutboundIPRanges", "10.0.0.0/33", "not a CIDR"},
		{"sidecar.istio.io/proxyCPU", "lots", "not a quantity"},
		{"sidecar.istio.io/proxyMemoryLimit", "1Mi", "below the request"},
		{"sidecar.istio.io/nativeSidecar", "maybe", "not true or false"},
		{"sidecar.istio.io/logLevel", "loud", "not a log level"},
		{"prometheus.io/port", "http", "not a port"},
		{"proxy.istio.io/config", "tracing: {sampling: 10}", "field tracing is not supported per pod"},
		{"proxy.istio.io/config", "holdApplicationUntilProxyStart: true", "decoding ProxyConfig"},
		{"proxy.istio.io/config", "terminationDrainDuration: -5s", "terminationDrainDuration"},
		{"proxy.istio.io/config", "proxyMetadata: {\"A B\": x}", "not an environment variable name"},
		{"proxy.istio.io/config", "a: [", "parsing YAML"},
	} {
		pod := readPod(t, "testdata/reviews.input.yaml")
		pod.Annotations[c.key] = c.value
		_, err := Inject(pod, "bookstore", testConfig())
		var ae *annotationError
		if err == nil || !errors.As(err, &ae) || ae.key != c.key || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %q: got %v, want an error naming it with %q", c.key, c.value, err, c.want)
		}
	}
}

// TestDecide is Istio's injection policy table ("Controlling the injection policy").
func TestDecide(t *testing.T) {
	pod := func(labels, ann map[string]string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: ann}}
	}
	en := map[string]string{"istio-injection": "enabled"}
	dis := map[string]string{"istio-injection": "disabled"}
	canaryNS := map[string]string{"istio.io/rev": "canary"}
	podTrue := map[string]string{LabelInject: "true"}
	podFalse := map[string]string{LabelInject: "false"}
	host := pod(nil, nil)
	host.Spec.HostNetwork = true
	for _, c := range []struct {
		name   string
		ns     string
		nsl    map[string]string
		pod    *corev1.Pod
		rev    string
		inject bool
	}{
		{"namespace enabled", "bookstore", en, pod(nil, nil), "", true},
		{"namespace enabled, pod false", "bookstore", en, pod(podFalse, nil), "", false},
		{"namespace enabled, legacy annotation false", "bookstore", en, pod(nil, podFalse), "", false},
		{"namespace disabled, pod true", "bookstore", dis, pod(podTrue, nil), "", false},
		{"no labels", "bookstore", nil, pod(nil, nil), "", false},
		{"pod true only", "bookstore", nil, pod(podTrue, nil), "", true},
		{"namespace revision matches", "bookstore", canaryNS, pod(nil, nil), "canary", true},
		{"namespace revision is another", "bookstore", canaryNS, pod(nil, nil), "", false},
		{"istio-injection wins over istio.io/rev", "bookstore", map[string]string{"istio-injection": "enabled", "istio.io/rev": "canary"}, pod(nil, nil), "", true},
		{"pod revision wins over the namespace's", "bookstore", canaryNS, pod(map[string]string{"istio.io/rev": "default"}, nil), "", true},
		{"namespace revision, pod false", "bookstore", canaryNS, pod(podFalse, nil), "canary", false},
		{"kube-system", "kube-system", en, pod(nil, nil), "", false},
		{"host network", "bookstore", en, host, "", false},
	} {
		if d := Decide(c.ns, c.nsl, c.pod, c.rev); d.Inject != c.inject {
			t.Errorf("%s: inject %v (%s), want %v", c.name, d.Inject, d.Reason, c.inject)
		}
	}
}

// TestWebhook sends AdmissionReviews as the API server does and applies the returned JSON
// patch to the pod's JSON: the result must be the injected pod.
func TestWebhook(t *testing.T) {
	wh := &Webhook{Config: testConfig(), Namespaces: func(_ context.Context, ns string) (map[string]string, error) {
		if ns == "bookstore" {
			return map[string]string{"istio-injection": "enabled"}, nil
		}
		return nil, nil
	}}
	pod := readPod(t, "testdata/reviews.input.yaml")
	raw, _ := json.Marshal(pod)
	req := &admissionv1.AdmissionRequest{UID: "u1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Namespace: "bookstore",
		Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw}}
	resp := wh.Review(context.Background(), req)
	if !resp.Allowed || resp.UID != "u1" || resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("response %+v", resp)
	}
	patched := applyPatch(t, raw, resp.Patch)
	want, _ := Inject(pod, "bookstore", testConfig())
	wantJSON, _ := json.Marshal(want)
	var a, b any
	json.Unmarshal(patched, &a)
	json.Unmarshal(wantJSON, &b)
	if ja, _ := json.Marshal(a); string(ja) != string(mustJSON(b)) {
		t.Errorf("patched pod differs from the injected pod:\n%s\n%s", ja, mustJSON(b))
	}

	// Another namespace without the label: allowed, untouched.
	req.Namespace = "other"
	if resp := wh.Review(context.Background(), req); !resp.Allowed || resp.Patch != nil {
		t.Errorf("uninjected namespace: %+v", resp)
	}
	// An unsupported annotation: refused with its name.
	pod.Annotations["traffic.sidecar.istio.io/includeOutboundPorts"] = "443"
	req.Namespace = "bookstore"
	req.Object.Raw, _ = json.Marshal(pod)
	if resp := wh.Review(context.Background(), req); resp.Allowed || !strings.Contains(resp.Result.Message, "includeOutboundPorts") {
		t.Errorf("unsupported annotation: %+v", resp)
	}
	// Not a pod, or not a create: allowed untouched.
	req.Kind.Kind = "Service"
	if resp := wh.Review(context.Background(), req); !resp.Allowed || resp.Patch != nil {
		t.Errorf("a Service: %+v", resp)
	}
	// Garbage in the object: refused, no panic.
	req.Kind.Kind, req.Object.Raw = "Pod", []byte(`{"spec":{"containers":"x"}}`)
	if resp := wh.Review(context.Background(), req); resp.Allowed {
		t.Error("an undecodable pod was allowed")
	}
}

func mustJSON(v any) []byte { b, _ := json.Marshal(v); return b }

// applyPatch applies the "add" operations at object paths that Patch emits (RFC 6902: add on
// an existing member replaces it).
func applyPatch(t *testing.T, doc, patch []byte) []byte {
	t.Helper()
	var d map[string]any
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatal(err)
	}
	var ops []struct {
		Op    string          `json:"op"`
		Path  string          `json:"path"`
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(patch, &ops); err != nil {
		t.Fatal(err)
	}
	for _, op := range ops {
		if op.Op != "add" {
			t.Fatalf("unexpected op %q", op.Op)
		}
		parts := strings.Split(strings.TrimPrefix(op.Path, "/"), "/")
		m := d
		for _, p := range parts[:len(parts)-1] {
			next, ok := m[p].(map[string]any)
			if !ok {
				t.Fatalf("path %s: %s is not an object", op.Path, p)
			}
			m = next
		}
		var v any
		json.Unmarshal(op.Value, &v)
		m[parts[len(parts)-1]] = v
	}
	out, _ := json.Marshal(d)
	return out
}

// TestOnDemandPerMeshAndPerWorkload: on-demand configuration (issue 13) is chosen for the whole
// mesh through MeshConfig defaultConfig.proxyMetadata and per workload through the pod's
// proxy.istio.io/config, which wins; both reach the proxy as ISTIO_META_ON_DEMAND, which
// strait-proxy reads to turn --on-demand on and to announce it to straitd.
func TestOnDemandPerMeshAndPerWorkload(t *testing.T) {
	env := func(c Config, annotation string) string {
		t.Helper()
		pod := readPod(t, "testdata/reviews.input.yaml")
		if annotation != "" {
			if pod.Annotations == nil {
				pod.Annotations = map[string]string{}
			}
			pod.Annotations["proxy.istio.io/config"] = annotation
		}
		out, err := Inject(pod, "bookstore", c)
		if err != nil {
			t.Fatal(err)
		}
		for _, ct := range out.Spec.InitContainers {
			if ct.Name != ProxyContainer {
				continue
			}
			for _, e := range ct.Env {
				if e.Name == "ISTIO_META_ON_DEMAND" {
					return e.Value
				}
			}
		}
		return ""
	}
	if got := env(testConfig(), ""); got != "" {
		t.Errorf("default: ISTIO_META_ON_DEMAND=%q, want unset (off by default)", got)
	}
	if got := env(testConfig(), `proxyMetadata: {ISTIO_META_ON_DEMAND: "true"}`); got != "true" {
		t.Errorf("per workload: ISTIO_META_ON_DEMAND=%q, want true", got)
	}
	mesh := testConfig()
	mesh.Mesh = config.DefaultMeshConfig()
	if mesh.Mesh.DefaultConfig.ProxyMetadata == nil {
		mesh.Mesh.DefaultConfig.ProxyMetadata = map[string]string{}
	}
	mesh.Mesh.DefaultConfig.ProxyMetadata["ISTIO_META_ON_DEMAND"] = "true"
	if got := env(mesh, ""); got != "true" {
		t.Errorf("per mesh: ISTIO_META_ON_DEMAND=%q, want true", got)
	}
	if got := env(mesh, `proxyMetadata: {ISTIO_META_ON_DEMAND: "false"}`); got != "false" {
		t.Errorf("per mesh, the workload opting out: ISTIO_META_ON_DEMAND=%q, want false", got)
	}
}
