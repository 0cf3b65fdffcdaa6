package install

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"

	"github.com/strait-mesh/strait/controlplane/ca"
	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/config/kube/crds"
	"github.com/strait-mesh/strait/controlplane/leader"
	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/internal/testenv/kubeenv"
)

func realCRDs() [][]byte {
	var out [][]byte
	for _, d := range crds.Documents() {
		out = append(out, []byte(d))
	}
	return out
}

// TestInstallOnKubernetes applies the printed manifests (`strait install --dry-run`) to a real
// kube-apiserver with a server-side dry run, then for real, twice (idempotent), then a canary
// revision beside it; the mesh CA Secret is created once and is a CA straitd accepts.
func TestInstallOnKubernetes(t *testing.T) {
	c := kubeenv.Start(t, kubeenv.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	o := Options{ControlPlaneImage: "strait/straitd:test", ProxyImage: "strait/proxy:test", Mesh: config.DefaultMeshConfig(),
		IngressGateway: true, CRDs: realCRDs()}
	objs, err := Manifests(o)
	if err != nil {
		t.Fatal(err)
	}
	printed, err := YAML(objs)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := kubeenv.Parse(string(printed))
	if err != nil {
		t.Fatal(err)
	}
	var fromYAML []runtime.Object
	for _, u := range parsed {
		fromYAML = append(fromYAML, u)
	}
	// A server-side dry run cannot create the namespace the other objects go into: create it
	// first, as `kubectl apply --dry-run=server` needs too.
	if err := Apply(ctx, c.Config, fromYAML[:1], false); err != nil {
		t.Fatal(err)
	}
	if err := Apply(ctx, c.Config, fromYAML, true); err != nil {
		t.Fatalf("server-side dry run of the printed manifests: %v", err)
	}
	cs := kubernetes.NewForConfigOrDie(c.Config)
	if _, err := cs.AppsV1().Deployments("istio-system").Get(ctx, "istiod", metav1.GetOptions{}); err == nil {
		t.Fatal("the dry run stored the straitd Deployment")
	}
	for i := 0; i < 2; i++ {
		if err := Apply(ctx, c.Config, objs, false); err != nil {
			t.Fatalf("apply %d: %v", i+1, err)
		}
	}
	dep, err := cs.AppsV1().Deployments("istio-system").Get(ctx, "istiod", metav1.GetOptions{})
	if err != nil || *dep.Spec.Replicas != 2 {
		t.Fatalf("straitd Deployment: %v %v", dep, err)
	}
	if _, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "istio-sidecar-injector", metav1.GetOptions{}); err != nil {
		t.Error(err)
	}

	created, err := EnsureCACerts(ctx, c.Config, "istio-system", "cluster.local")
	if err != nil || !created {
		t.Fatalf("cacerts: created %v, %v", created, err)
	}
	if again, err := EnsureCACerts(ctx, c.Config, "istio-system", "cluster.local"); err != nil || again {
		t.Errorf("a second install replaced the CA: %v %v", again, err)
	}
	sec, err := cs.CoreV1().Secrets("istio-system").Get(ctx, CACertsSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for k, v := range sec.Data {
		if err := os.WriteFile(filepath.Join(dir, k), v, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ca.New(ca.Options{TrustDomain: "cluster.local", PluginDir: dir}); err != nil {
		t.Errorf("straitd refuses the installed CA: %v", err)
	}

	o.Revision = "canary"
	canary, err := Manifests(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := Apply(ctx, c.Config, canary, false); err != nil {
		t.Fatalf("canary revision: %v", err)
	}
	if _, err := cs.AppsV1().Deployments("istio-system").Get(ctx, "istiod-canary", metav1.GetOptions{}); err != nil {
		t.Error(err)
	}
	// A bad object is refused by the API server with its reason.
	bad := []runtime.Object{objs[len(objs)-1].DeepCopyObject()}
	bad[0].(interface{ SetName(string) }).SetName("Not_A_Name")
	if err := Apply(ctx, c.Config, bad, true); err == nil || !strings.Contains(err.Error(), "Not_A_Name") {
		t.Errorf("an invalid name: %v", err)
	}
}

// TestUninstallOnKubernetes installs the default revision and a canary, with what straitd adds
// (its leases, a root-cert ConfigMap) and an object of someone else's with one of Strait's
// names; uninstalls the canary (the default one and the shared objects stay), then the default
// revision (the last: everything goes, but the namespace and the other's object), then again
// (nothing to do). A dry run removes nothing.
func TestUninstallOnKubernetes(t *testing.T) {
	c := kubeenv.Start(t, kubeenv.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cs := kubernetes.NewForConfigOrDie(c.Config)
	o := Options{ControlPlaneImage: "strait/straitd:test", ProxyImage: "strait/proxy:test", Mesh: config.DefaultMeshConfig(),
		IngressGateway: true, CRDs: realCRDs()}
	def, err := Manifests(o)
	if err != nil {
		t.Fatal(err)
	}
	o.Revision = "canary"
	canary, err := Manifests(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := Apply(ctx, c.Config, append(def, canary...), false); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureCACerts(ctx, c.Config, "istio-system", "cluster.local"); err != nil {
		t.Fatal(err)
	}
	// What straitd creates: its leases and the root-cert ConfigMaps.
	objs := c.Objects(t)
	for _, lease := range []string{leader.RevisionLease(""), leader.RevisionLease("canary"), leader.StatusLease} {
		if _, err := objs.Create(ctx, "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {name: "+lease+", namespace: istio-system}\nspec: {holderIdentity: straitd-a}\n"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := objs.Create(ctx, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio-ca-root-cert, namespace: default, labels: {istio.io/config: \"true\"}}\ndata: {root-cert.pem: x}\n"); err != nil {
		t.Fatal(err)
	}
	// Someone else's object with a name Strait uses: not Strait's, so kept.
	if _, err := objs.Create(ctx, "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: istiod-other, namespace: istio-system}\n"); err != nil {
		t.Fatal(err)
	}

	dry, err := Uninstall(ctx, c.Config, UninstallOptions{Purge: true, DryRun: true, CRDs: realCRDs()})
	if want := 2*(len(def)-1-len(o.CRDs)) + len(o.CRDs) + 5; err != nil || len(dry) != want { // + cacerts, 3 leases, 1 ConfigMap
		t.Fatalf("dry run: %d objects listed, %v", len(dry), err)
	}
	if _, err := cs.AppsV1().Deployments("istio-system").Get(ctx, "istiod", metav1.GetOptions{}); err != nil {
		t.Fatalf("the dry run removed straitd: %v", err)
	}

	removed, err := Uninstall(ctx, c.Config, UninstallOptions{Revision: "canary", CRDs: realCRDs()})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("canary: removed %d objects", len(removed))
	gone(t, ctx, c, canary[len(o.CRDs):], true) // its own objects; the CRDs are shared
	gone(t, ctx, c, def, false)
	if _, err := cs.CoordinationV1().Leases("istio-system").Get(ctx, leader.RevisionLease("canary"), metav1.GetOptions{}); err == nil {
		t.Error("the canary's lease is left")
	}
	if _, err := cs.CoreV1().Secrets("istio-system").Get(ctx, CACertsSecret, metav1.GetOptions{}); err != nil {
		t.Errorf("the shared CA went with the canary: %v", err)
	}

	removed, err = Uninstall(ctx, c.Config, UninstallOptions{CRDs: realCRDs()})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("default (the last): removed %d objects", len(removed))
	gone(t, ctx, c, def[1:], true) // all but the namespace
	if _, err := cs.CoreV1().Namespaces().Get(ctx, "istio-system", metav1.GetOptions{}); err != nil {
		t.Errorf("the namespace went: %v", err)
	}
	for _, check := range []struct {
		what string
		err  error
	}{
		{"Secret cacerts", get(cs.CoreV1().Secrets("istio-system").Get(ctx, CACertsSecret, metav1.GetOptions{}))},
		{"the status lease", get(cs.CoordinationV1().Leases("istio-system").Get(ctx, leader.StatusLease, metav1.GetOptions{}))},
		{"the default revision's lease", get(cs.CoordinationV1().Leases("istio-system").Get(ctx, leader.RevisionLease(""), metav1.GetOptions{}))},
		{"the root-cert ConfigMap", get(cs.CoreV1().ConfigMaps("default").Get(ctx, "istio-ca-root-cert", metav1.GetOptions{}))},
	} {
		if !apierrors.IsNotFound(check.err) {
			t.Errorf("%s is left: %v", check.what, check.err)
		}
	}
	if _, err := cs.CoreV1().ServiceAccounts("istio-system").Get(ctx, "istiod-other", metav1.GetOptions{}); err != nil {
		t.Errorf("someone else's ServiceAccount went: %v", err)
	}

	again, err := Uninstall(ctx, c.Config, UninstallOptions{Purge: true, CRDs: realCRDs()})
	if err != nil || len(again) != 0 {
		t.Errorf("a second uninstall: removed %v, %v", again, err)
	}

	// CRDs without Strait (Istio's, say): kept unless --purge.
	testenv.WaitFor(t, "the CRDs gone", time.Minute, func() bool {
		_, err := rcGet(t, ctx, c, def[1])
		return apierrors.IsNotFound(err)
	})
	if err := Apply(ctx, c.Config, def[1:1+len(o.CRDs)], false); err != nil {
		t.Fatal(err)
	}
	if removed, err := Uninstall(ctx, c.Config, UninstallOptions{CRDs: realCRDs()}); err != nil || len(removed) != 0 {
		t.Errorf("uninstall without Strait installed: removed %v, %v", removed, err)
	}
	if removed, err := Uninstall(ctx, c.Config, UninstallOptions{Purge: true, CRDs: realCRDs()}); err != nil || len(removed) != len(o.CRDs) {
		t.Errorf("--purge without Strait installed: removed %v, %v", removed, err)
	}
}

// rcGet reads obj from the API server.
func rcGet(t *testing.T, ctx context.Context, c *kubeenv.Cluster, obj runtime.Object) (*unstructured.Unstructured, error) {
	t.Helper()
	rc, err := newResources(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: m}
	api, err := rc.of(u)
	if err != nil {
		t.Fatal(err)
	}
	return api.Get(ctx, u.GetName(), metav1.GetOptions{})
}

// get keeps a Get's error.
func get[T any](_ T, err error) error { return err }

// gone checks that every object of objs is gone (or, with want false, still there). A CRD being
// deleted may linger while its objects go: it counts as gone once it has a deletion time.
func gone(t *testing.T, ctx context.Context, c *kubeenv.Cluster, objs []runtime.Object, want bool) {
	t.Helper()
	for _, obj := range objs {
		cur, err := rcGet(t, ctx, c, obj)
		u := obj.(metav1.Object)
		kind := obj.GetObjectKind().GroupVersionKind().Kind
		isGone := apierrors.IsNotFound(err) || (err == nil && cur.GetDeletionTimestamp() != nil)
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		if isGone != want {
			t.Errorf("%s %s/%s: gone %v, want %v", kind, u.GetNamespace(), u.GetName(), isGone, want)
		}
	}
}
