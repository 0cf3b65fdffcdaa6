package controlplane

import (
	"context"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/strait-mesh/strait/controlplane/config/kube"
	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/internal/testenv/kubeenv"
)

// TestRunKubernetesRegistry runs straitd against a real API server with the EndpointSlice
// controller: a Service and its Pods (created directly, their status set as a kubelet would)
// give reviews.default.svc.cluster.local:9080 its clusters, with subsets by the Pods' version
// label through a DestinationRule, and its endpoints over EDS; a Pod turning unready leaves
// EDS; deleting the Service removes its clusters.
func TestRunKubernetesRegistry(t *testing.T) {
	c := kubeenv.Start(t, kubeenv.Options{ControllerManager: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	if err := kube.InstallCRDs(ctx, c.Config); err != nil {
		t.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(c.Config)
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// The EndpointSlice controller skips pods whose node it does not know.
	must(cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}}, metav1.CreateOptions{}))
	must(cs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "bookinfo-reviews"}}, metav1.CreateOptions{}))
	must(cs.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "reviews"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "reviews"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 9080, TargetPort: intstr.FromString("web")}}},
	}, metav1.CreateOptions{}))
	ips := map[string]string{"v1": "198.18.209.1", "v2": "198.18.209.2"}
	for _, v := range []string{"v1", "v2"} {
		must(cs.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "reviews-" + v, Labels: map[string]string{"app": "reviews", "version": v}},
			Spec: corev1.PodSpec{NodeName: "node-1", ServiceAccountName: "bookinfo-reviews", AutomountServiceAccountToken: new(bool),
				Containers: []corev1.Container{{Name: "reviews", Image: "reviews",
					Ports: []corev1.ContainerPort{{Name: "web", ContainerPort: 9081}}}}},
		}, metav1.CreateOptions{}))
		setPodReady(t, ctx, cs, "reviews-"+v, ips[v], true)
	}
	if _, err := c.Objects(t).Create(ctx, `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`); err != nil {
		t.Fatal(err)
	}

	ready := make(chan string, 1)
	o := Options{Kubeconfig: c.Kubeconfig, XDSListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Ready:  func(x, _ string) { ready <- x }}
	r := testenv.Go(t, "straitd", 10*time.Second, func(ctx context.Context) error { return Run(ctx, o) })
	var addr string
	select {
	case addr = <-ready:
	case <-r.Done():
		t.Fatalf("Run: %v", r.Err())
	case <-ctx.Done():
		t.Fatal("straitd did not start")
	}

	const host = "reviews.default.svc.cluster.local"
	all, v1, v2 := "outbound|9080||"+host, "outbound|9080|v1|"+host, "outbound|9080|v2|"+host
	w := watchMesh(t, ctx, addr, all, v1, v2)
	w.waitUntil(t, "clusters and endpoints of both pods", func() bool {
		return w.clusters[all] && w.clusters[v1] && w.clusters[v2] &&
			slices.Equal(w.endpoints[all], []string{"198.18.209.1:9081", "198.18.209.2:9081"}) &&
			slices.Equal(w.endpoints[v1], []string{"198.18.209.1:9081"}) &&
			slices.Equal(w.endpoints[v2], []string{"198.18.209.2:9081"})
	})

	setPodReady(t, ctx, cs, "reviews-v2", ips["v2"], false)
	w.waitUntil(t, "the unready pod out of EDS", func() bool {
		return slices.Equal(w.endpoints[all], []string{"198.18.209.1:9081"}) && len(w.endpoints[v2]) == 0
	})

	if err := cs.CoreV1().Services("default").Delete(ctx, "reviews", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	w.waitUntil(t, "the deleted service's clusters gone", func() bool { return !w.clusters[all] && !w.clusters[v1] })
}

// setPodReady sets a pod's IP and its Ready condition, as a kubelet would.
func setPodReady(t *testing.T, ctx context.Context, cs kubernetes.Interface, name, ip string, ready bool) {
	t.Helper()
	pod, err := cs.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: status}, {Type: corev1.ContainersReady, Status: status}}}
	if _, err := cs.CoreV1().Pods("default").UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// meshWatch is a Delta ADS stream of one sidecar following its clusters and the endpoints of
// some of them.
type meshWatch struct {
	stream    discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	clusters  map[string]bool
	endpoints map[string][]string // cluster -> sorted healthy "ip:port"
}

// watchMesh opens a Delta ADS stream to addr as a sidecar in namespace default, subscribed to
// all clusters and to the endpoints of the named ones.
func watchMesh(t *testing.T, ctx context.Context, addr string, eds ...string) *meshWatch {
	t.Helper()
	st := deltaStream(t, ctx, addr, resource.ClusterType)
	if err := st.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNamesSubscribe: eds}); err != nil {
		t.Fatal(err)
	}
	return &meshWatch{stream: st, clusters: map[string]bool{}, endpoints: map[string][]string{}}
}

// waitUntil reads and acknowledges responses until cond holds; the stream's context bounds the
// wait.
func (w *meshWatch) waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		resp, err := w.stream.Recv()
		if err != nil {
			t.Fatalf("waiting for %s: %v (clusters %v, endpoints %v)", what, err, w.clusters, w.endpoints)
		}
		for _, r := range resp.GetResources() {
			switch resp.GetTypeUrl() {
			case resource.ClusterType:
				w.clusters[r.GetName()] = true
			case resource.EndpointType:
				var cla endpointv3.ClusterLoadAssignment
				if err := r.GetResource().UnmarshalTo(&cla); err != nil {
					t.Fatal(err)
				}
				var eps []string
				for _, l := range cla.GetEndpoints() {
					for _, e := range l.GetLbEndpoints() {
						if s := e.GetHealthStatus(); s != corev3.HealthStatus_UNKNOWN && s != corev3.HealthStatus_HEALTHY {
							continue
						}
						a := e.GetEndpoint().GetAddress().GetSocketAddress()
						eps = append(eps, net.JoinHostPort(a.GetAddress(), strconv.Itoa(int(a.GetPortValue()))))
					}
				}
				slices.Sort(eps)
				w.endpoints[r.GetName()] = eps
			}
		}
		for _, name := range resp.GetRemovedResources() {
			switch resp.GetTypeUrl() {
			case resource.ClusterType:
				delete(w.clusters, name)
			case resource.EndpointType:
				delete(w.endpoints, name)
			}
		}
		if err := w.stream.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}); err != nil {
			t.Fatal(err)
		}
	}
}
