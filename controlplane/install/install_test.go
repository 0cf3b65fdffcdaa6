package install

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/leader"
)

const testCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: virtualservices.networking.istio.io
spec:
  group: networking.istio.io
  names: {kind: VirtualService, plural: virtualservices, singular: virtualservice, listKind: VirtualServiceList}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
`

func opts() Options {
	return Options{ControlPlaneImage: "strait/straitd:test", ProxyImage: "strait/proxy:test", Mesh: config.DefaultMeshConfig(),
		IngressGateway: true, CRDs: [][]byte{[]byte(testCRD)}}
}

func kinds(objs []runtime.Object) []string {
	var k []string
	for _, o := range objs {
		k = append(k, o.GetObjectKind().GroupVersionKind().Kind)
	}
	return k
}

func TestManifests(t *testing.T) {
	objs, err := Manifests(opts())
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(kinds(objs), ",")
	want := "Namespace,CustomResourceDefinition,ServiceAccount,ConfigMap,ClusterRole,ClusterRoleBinding,Role,RoleBinding,Service,Deployment,PodDisruptionBudget," +
		"MutatingWebhookConfiguration,ValidatingWebhookConfiguration,ServiceAccount,Deployment,Service"
	if got != want {
		t.Errorf("objects:\n%s\nwant\n%s", got, want)
	}
	y, err := YAML(objs)
	if err != nil {
		t.Fatal(err)
	}
	// Every document is valid YAML with apiVersion, kind and name.
	docs := bytes.Split(y, []byte("---\n"))[1:]
	if len(docs) != len(objs) {
		t.Fatalf("%d documents for %d objects", len(docs), len(objs))
	}
	for _, d := range docs {
		var m struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(d, &m); err != nil || m.APIVersion == "" || m.Kind == "" || m.Metadata.Name == "" {
			t.Errorf("document without apiVersion, kind or name (%v):\n%s", err, d)
		}
	}
	dep := objs[9].(*appsv1.Deployment)
	if *dep.Spec.Replicas != 2 || dep.Name != "istiod" || dep.Namespace != "istio-system" {
		t.Errorf("straitd deployment %s/%s replicas %d", dep.Namespace, dep.Name, *dep.Spec.Replicas)
	}
	if dep.Spec.Template.Annotations["sidecar.istio.io/inject"] != "false" {
		t.Error("straitd's own pods would get a sidecar")
	}
	mw := objs[11].(*admissionregistrationv1.MutatingWebhookConfiguration)
	if mw.Name != "istio-sidecar-injector" || len(mw.Webhooks) != 2 || *mw.Webhooks[0].ClientConfig.Service.Path != "/inject" {
		t.Errorf("injector webhook: %+v", mw)
	}
}

// TestRevision: a canary control plane shares no name with the default one, installs no
// namespace, and selects only its revision's namespaces and pods.
func TestRevision(t *testing.T) {
	o := opts()
	o.Revision = "canary"
	objs, err := Manifests(o)
	if err != nil {
		t.Fatal(err)
	}
	def, _ := Manifests(opts())
	names := map[string]bool{}
	for _, d := range def {
		if m, ok := d.(interface{ GetName() string }); ok {
			names[d.GetObjectKind().GroupVersionKind().Kind+"/"+m.GetName()] = true
		}
	}
	for _, obj := range objs {
		k := obj.GetObjectKind().GroupVersionKind().Kind
		m := obj.(interface{ GetName() string })
		if k == "Namespace" {
			t.Error("a revision installs the namespace again")
		}
		if k != "CustomResourceDefinition" && names[k+"/"+m.GetName()] {
			t.Errorf("%s/%s is shared with the default revision", k, m.GetName())
		}
		if mw, ok := obj.(*admissionregistrationv1.MutatingWebhookConfiguration); ok {
			for _, h := range mw.Webhooks {
				s, _ := yaml.Marshal(h.NamespaceSelector)
				o, _ := yaml.Marshal(h.ObjectSelector)
				if !strings.Contains(string(s)+string(o), "canary") {
					t.Errorf("webhook %s does not select the canary revision", h.Name)
				}
			}
		}
	}
	for _, bad := range []string{"Canary", "-x", strings.Repeat("a", 64)} {
		o.Revision = bad
		if _, err := Manifests(o); err == nil {
			t.Errorf("revision %q accepted", bad)
		}
	}
	o.Revision = ""
	o.CRDs = [][]byte{[]byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")}
	if _, err := Manifests(o); err == nil || !strings.Contains(err.Error(), "CustomResourceDefinition") {
		t.Errorf("a non-CRD document: %v", err)
	}
}

// TestRoleIsLeasesOnly checks straitd's namespaced Role: its two leases by name (get, update),
// create on leases, nothing else — no Secret writes.
func TestRoleIsLeasesOnly(t *testing.T) {
	for _, rev := range []string{"", "canary"} {
		o := opts()
		o.Revision = rev
		objs, err := Manifests(o)
		if err != nil {
			t.Fatal(err)
		}
		var role *rbacv1.Role
		for _, obj := range objs {
			if r, ok := obj.(*rbacv1.Role); ok {
				role = r
			}
		}
		want := []rbacv1.PolicyRule{
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "update"},
				ResourceNames: []string{leader.RevisionLease(rev), leader.StatusLease}},
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"create"}},
		}
		if role == nil || !reflect.DeepEqual(role.Rules, want) {
			t.Errorf("revision %q: Role %+v, want rules %+v", rev, role, want)
		}
	}
}
