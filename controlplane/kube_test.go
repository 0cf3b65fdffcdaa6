package controlplane

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/strait-mesh/strait/controlplane/config/kube"
	"github.com/strait-mesh/strait/internal/node"
	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/internal/testenv/kubeenv"
)

func serviceEntry(name, host, ports string) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: %s, namespace: default}
spec:
  hosts: [%s]
  ports: %s
  resolution: DNS
`, name, host, ports)
}

// TestRunReadsKubernetes runs straitd with --kubeconfig against a real API server and follows a
// proxy's clusters over xDS: an object created before straitd starts is in the first response
// (the first snapshot waits for the sync), one created later is pushed, a refused update keeps
// the last good version and shows at /debug/configz, and a deletion removes the cluster.
func TestRunReadsKubernetes(t *testing.T) {
	c, ctx := kubeWithCRDs(t)
	objs := c.Objects(t)
	if _, err := objs.Create(ctx, serviceEntry("before", "before.example.com", "[{number: 443, name: tls, protocol: TLS}]")); err != nil {
		t.Fatal(err)
	}

	type addrs struct{ xds, http string }
	ready := make(chan addrs, 1)
	o := Options{Kubeconfig: c.Kubeconfig, XDSListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Ready:  func(x, h string) { ready <- addrs{x, h} }}
	r := testenv.Go(t, "straitd", 10*time.Second, func(ctx context.Context) error { return Run(ctx, o) })
	var a addrs
	select {
	case a = <-ready:
	case <-r.Done():
		t.Fatalf("Run: %v", r.Err())
	case <-ctx.Done():
		t.Fatal("straitd did not start")
	}

	cds := watchClusters(t, ctx, a.xds)
	before, after := "outbound|443||before.example.com", "outbound|443||after.example.com"
	if first := cds.next(t); !first[before] {
		t.Fatalf("first CDS response lacks %s: %v", before, first)
	}

	good := serviceEntry("after", "after.example.com", "[{number: 443, name: tls, protocol: TLS}]")
	if _, err := objs.Create(ctx, good); err != nil {
		t.Fatal(err)
	}
	cds.waitFor(t, after, true)

	// An endpoint that is no host name: the API server stores it, Strait refuses it.
	bad := serviceEntry("after", "after.example.com", "[{number: 443, name: tls, protocol: TLS}]\n  endpoints: [{address: bad_host!}]")
	if err := objs.Replace(ctx, bad); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the error at /debug/configz", func() bool {
		_, body := get(t, "http://"+a.http+"/debug/configz")
		var z configz
		if err := json.Unmarshal([]byte(body), &z); err != nil {
			t.Fatalf("configz: %v", err)
		}
		for _, e := range z.Errors {
			if strings.HasPrefix(e, "kubernetes: ServiceEntry default/after: spec.endpoints[0].address") {
				return true
			}
		}
		return false
	})
	if !cds.current[after] {
		t.Errorf("the last good %s is gone after a refused update", after)
	}

	if err := objs.Delete(ctx, good); err != nil {
		t.Fatal(err)
	}
	cds.waitFor(t, after, false)
}

// clusterWatch is a Delta CDS stream of one sidecar, with the cluster names it currently has.
type clusterWatch struct {
	stream  discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	current map[string]bool
}

// watchClusters opens a Delta CDS stream to addr as a sidecar in namespace default.
func watchClusters(t *testing.T, ctx context.Context, addr string) *clusterWatch {
	t.Helper()
	return &clusterWatch{stream: deltaStream(t, ctx, addr, resource.ClusterType), current: map[string]bool{}}
}

// deltaStream opens a Delta ADS stream to addr as a sidecar in namespace default and subscribes
// to every type given (all of its resources).
func deltaStream(t *testing.T, ctx context.Context, addr string, types ...string) discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	st, err := discovery.NewAggregatedDiscoveryServiceClient(cc).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id := node.NewID(node.Sidecar, "127.0.0.163", "app", "default")
	for _, typ := range types {
		if err := st.Send(&discovery.DeltaDiscoveryRequest{Node: &corev3.Node{Id: id.String()}, TypeUrl: typ}); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// next reads and acknowledges one response, and returns the clusters the proxy then has.
func (w *clusterWatch) next(t *testing.T) map[string]bool {
	t.Helper()
	resp, err := w.stream.Recv()
	if err != nil {
		t.Fatalf("CDS stream: %v", err)
	}
	for _, r := range resp.GetResources() {
		w.current[r.GetName()] = true
	}
	for _, n := range resp.GetRemovedResources() {
		delete(w.current, n)
	}
	if err := w.stream.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, ResponseNonce: resp.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	return w.current
}

// waitFor reads responses until the cluster is present (or absent); the stream's context bounds
// the wait.
func (w *clusterWatch) waitFor(t *testing.T, name string, present bool) {
	t.Helper()
	for w.current[name] != present {
		w.next(t)
	}
}

// kubeWithCRDs starts a real API server with Strait's CRDs installed and straitd's namespace
// (istio-system, where its leases live), and a context that ends with the test (at most 2
// minutes).
func kubeWithCRDs(t *testing.T) (*kubeenv.Cluster, context.Context) {
	t.Helper()
	c := kubeenv.Start(t, kubeenv.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	if err := kube.InstallCRDs(ctx, c.Config); err != nil {
		t.Fatal(err)
	}
	createNamespace(t, ctx, c, "istio-system")
	return c, ctx
}

// createNamespace creates namespace name.
func createNamespace(t *testing.T, ctx context.Context, c *kubeenv.Cluster, name string) {
	t.Helper()
	_, err := kubernetes.NewForConfigOrDie(c.Config).CoreV1().Namespaces().Create(ctx,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}
