package install

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"

	"github.com/strait-mesh/strait/controlplane/ca"
	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/config/kube/crds"
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
