package kube

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	networking "istio.io/api/networking/v1alpha3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/internal/testenv/kubeenv"
)

// TestRegistry runs the registry against a real API server with the EndpointSlice controller,
// limited to namespace "default": a headless Service and an ExternalName one appear, a Service of
// another namespace does not, and a terminating Pod (deleted, held by a finalizer) leaves the
// endpoints while its object still exists.
func TestRegistry(t *testing.T) {
	c := kubeenv.Start(t, kubeenv.Options{ControllerManager: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	cs := kubernetes.NewForConfigOrDie(c.Config)
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1",
		Labels: map[string]string{LabelRegion: "r1", LabelZone: "z1"}}}, metav1.CreateOptions{}))
	must(cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "other"}}, metav1.CreateOptions{}))
	for _, ns := range []string{"default", "other"} {
		must(cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "db"},
			Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app": "db"},
				Ports: []corev1.ServicePort{{Name: "tcp-db", Port: 5432}}}}, metav1.CreateOptions{}))
	}
	must(cs.CoreV1().Services("default").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "ext"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "api.example.com",
			Ports: []corev1.ServicePort{{Name: "https", Port: 443}}}}, metav1.CreateOptions{}))
	for i, name := range []string{"db-0", "db-1"} {
		must(cs.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "db"}, Finalizers: []string{"strait.io/test"}},
			Spec: corev1.PodSpec{NodeName: "node-1", AutomountServiceAccountToken: new(bool),
				Containers: []corev1.Container{{Name: "db", Image: "db"}}},
		}, metav1.CreateOptions{}))
		pod, err := cs.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ip := []string{"198.18.209.11", "198.18.209.12"}[i]
		pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
		must(cs.CoreV1().Pods("default").UpdateStatus(ctx, pod, metav1.UpdateOptions{}))
	}
	t.Cleanup(func() { // let the namespace's pods go
		for _, name := range []string{"db-0", "db-1"} {
			_, _ = cs.CoreV1().Pods("default").Patch(context.Background(), name, "application/merge-patch+json",
				[]byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
		}
	})

	reg, err := New(c.Config, Options{Namespaces: []string{"default"}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	changed := make(chan struct{}, 1)
	testenv.Go(t, "registry", 10*time.Second, func(ctx context.Context) error {
		return reg.Run(ctx, func() {
			select {
			case changed <- struct{}{}:
			default:
			}
		})
	})
	waitUntil := func(what string, cond func(map[string]*networking.ServiceEntry) bool) {
		t.Helper()
		for {
			got := map[string]*networking.ServiceEntry{}
			for _, o := range reg.List() {
				if o.Kind != config.ServiceEntry || o.Origin == "" {
					t.Fatalf("object %s origin %q", o.Key(), o.Origin)
				}
				got[o.Namespace+"/"+o.Name] = o.Spec.(*networking.ServiceEntry)
			}
			if cond(got) {
				return
			}
			select {
			case <-changed:
			case <-ctx.Done():
				t.Fatalf("waiting for %s: have %v", what, got)
			}
		}
	}
	addrs := func(se *networking.ServiceEntry) []string {
		var out []string
		for _, we := range se.GetEndpoints() {
			out = append(out, we.GetAddress()+" "+we.GetLocality())
		}
		return out
	}
	waitUntil("both pods behind the headless service", func(m map[string]*networking.ServiceEntry) bool {
		db, ext := m["default/service:db"], m["default/service:ext"]
		for k := range m {
			if !strings.HasPrefix(k, "default/") {
				t.Fatalf("%s is outside the registry's namespaces", k)
			}
		}
		return db != nil && ext != nil &&
			db.GetResolution() == networking.ServiceEntry_NONE && db.GetHosts()[0] == "db.default.svc.cluster.local" &&
			slices.Equal(addrs(db), []string{"198.18.209.11 r1/z1", "198.18.209.12 r1/z1"}) &&
			ext.GetResolution() == networking.ServiceEntry_DNS && ext.GetEndpoints()[0].GetAddress() == "api.example.com"
	})

	// Deleting db-1 makes it terminating (its finalizer holds it): it leaves the endpoints.
	if err := cs.CoreV1().Pods("default").Delete(ctx, "db-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil("the terminating pod out", func(m map[string]*networking.ServiceEntry) bool {
		db := m["default/service:db"]
		return db != nil && slices.Equal(addrs(db), []string{"198.18.209.11 r1/z1"})
	})
}
