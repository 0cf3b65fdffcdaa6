package kube

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	networking "istio.io/api/networking/v1alpha3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/registry"
	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/internal/testenv/kubeenv"
)

// TestRegistry runs the registry against a real API server with the EndpointSlice controller,
// limited to namespace "default": a headless Service and an ExternalName one appear, a Service of
// another namespace does not, endpoints carry the system namespace's network (istio-system,
// outside the limit) unless their Pod names its own, and a terminating Pod (deleted, held by a
// finalizer) leaves the endpoints while its object still exists. A Service with named target
// ports has no endpoint on a port its Pod lacks, and, through registry.Build, also selects a
// WorkloadEntry until its selector changes; relabelling the system namespace moves the endpoints
// to the new network.
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
	// The system namespace (outside the registry's namespaces) names the default network.
	must(cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "istio-system",
		Labels: map[string]string{LabelNetwork: "net-1"}}}, metav1.CreateOptions{}))
	for _, ns := range []string{"default", "other"} {
		must(cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "db"},
			Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app": "db"},
				Ports: []corev1.ServicePort{{Name: "tcp-db", Port: 5432}}}}, metav1.CreateOptions{}))
	}
	must(cs.CoreV1().Services("default").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "ext"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "api.example.com",
			Ports: []corev1.ServicePort{{Name: "https", Port: 443}}}}, metav1.CreateOptions{}))
	// reviews: its port http has the named target port web, which reviews-0 has, and tcp-admin
	// the named target port admin, which it lacks; its selector also selects WorkloadEntries.
	must(cs.CoreV1().Services("default").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "reviews"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "reviews"}, Ports: []corev1.ServicePort{
			{Name: "http", Port: 9080, TargetPort: intstr.FromString("web")},
			{Name: "tcp-admin", Port: 9999, TargetPort: intstr.FromString("admin")}}}}, metav1.CreateOptions{}))
	for i, name := range []string{"db-0", "db-1", "reviews-0"} {
		labels := map[string]string{"app": "db"}
		var ports []corev1.ContainerPort
		if name == "reviews-0" {
			labels = map[string]string{"app": "reviews", LabelNetwork: "net-2"}
			ports = []corev1.ContainerPort{{Name: "web", ContainerPort: 9081}}
		}
		must(cs.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Finalizers: []string{"strait.io/test"}},
			Spec: corev1.PodSpec{NodeName: "node-1", AutomountServiceAccountToken: new(bool),
				Containers: []corev1.Container{{Name: "app", Image: "app", Ports: ports}}},
		}, metav1.CreateOptions{}))
		pod, err := cs.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ip := []string{"198.18.209.11", "198.18.209.12", "198.18.209.13"}[i]
		pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
		must(cs.CoreV1().Pods("default").UpdateStatus(ctx, pod, metav1.UpdateOptions{}))
	}
	t.Cleanup(func() { // let the namespace's pods go
		for _, name := range []string{"db-0", "db-1", "reviews-0"} {
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
			out = append(out, we.GetAddress()+" "+we.GetLocality()+" "+we.GetNetwork())
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
			slices.Equal(addrs(db), []string{"198.18.209.11 r1/z1 net-1", "198.18.209.12 r1/z1 net-1"}) &&
			ext.GetResolution() == networking.ServiceEntry_DNS && ext.GetEndpoints()[0].GetAddress() == "api.example.com"
	})

	// Deleting db-1 makes it terminating (its finalizer holds it): it leaves the endpoints.
	if err := cs.CoreV1().Pods("default").Delete(ctx, "db-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil("the terminating pod out", func(m map[string]*networking.ServiceEntry) bool {
		db := m["default/service:db"]
		return db != nil && slices.Equal(addrs(db), []string{"198.18.209.11 r1/z1 net-1"})
	})

	// reviews-0: its own network; an endpoint on http (its web port) and none on tcp-admin. With a
	// WorkloadEntry from another source, registry.Build adds it to reviews as the selector says.
	vm := &config.Object{Kind: config.WorkloadEntry, Meta: config.Meta{Name: "vm", Namespace: "default"},
		Spec: &networking.WorkloadEntry{Address: "198.18.209.20", Labels: map[string]string{"app": "reviews"},
			Ports: map[string]uint32{"web": 7000, "admin": 7999}}}
	endpointsOf := func(host string) []string {
		services, eps, errs := registry.Build(append(slices.Clone(reg.List()), vm))
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		var out []string
		for _, s := range services {
			if s.Hostname == host {
				for _, e := range eps[s.Key()] {
					out = append(out, fmt.Sprintf("%s %s:%d %s", e.ServicePortName, e.Address, e.Port, e.Network))
				}
			}
		}
		sort.Strings(out)
		return out
	}
	waitUntil("reviews-0 and the WorkloadEntry behind reviews", func(m map[string]*networking.ServiceEntry) bool {
		return slices.Equal(endpointsOf("reviews.default.svc.cluster.local"), []string{"http 198.18.209.13:9081 net-2",
			"http 198.18.209.20:7000 ", "tcp-admin 198.18.209.20:7999 "})
	})

	// The system namespace's network changes: the endpoints follow.
	if _, err := cs.CoreV1().Namespaces().Patch(ctx, "istio-system", types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"`+LabelNetwork+`":"net-3"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil("the new default network", func(m map[string]*networking.ServiceEntry) bool {
		db := m["default/service:db"]
		return db != nil && slices.Equal(addrs(db), []string{"198.18.209.11 r1/z1 net-3"})
	})

	// The Service's selector changes: the WorkloadEntry is no longer selected.
	if _, err := cs.CoreV1().Services("default").Patch(ctx, "reviews", types.MergePatchType,
		[]byte(`{"spec":{"selector":{"app":"reviews-v2"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil("reviews selecting nothing", func(m map[string]*networking.ServiceEntry) bool {
		return len(endpointsOf("reviews.default.svc.cluster.local")) == 0
	})
}
