package controlplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/strait-mesh/strait/controlplane/config/kube"
	"github.com/strait-mesh/strait/internal/node"
	"github.com/strait-mesh/strait/internal/procstat"
	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/internal/testenv/kubeenv"
)

// ScaleEnv names the environment variable that runs TestKubernetesScale:
// "SERVICES,PODS,PROXIES[,CHANGES]", e.g. "1000,5000,1000" (issue 9's benchmark).
const scaleEnv = "STRAIT_KUBE_SCALE"

// TestKubernetesScale is a benchmark, not a check: straitd (the real binary) reads SERVICES
// Services and PODS ready Pods (and the EndpointSlices the real controller manager derives)
// from a real kube-apiserver and serves PROXIES simulated sidecars over Delta ADS (every type,
// wildcard, as strait-proxy subscribes). It reports straitd's memory and CPU, and, over CHANGES
// Pods that become ready one after the other, the time from each Pod's ready status being
// written to its endpoint being in every proxy's EDS. Skipped unless STRAIT_KUBE_SCALE is set;
// everything is bounded by the test's deadline.
//
//	STRAIT_KUBE_SCALE=1000,5000,1000 go test -run TestKubernetesScale -timeout 60m -v ./controlplane/
func TestKubernetesScale(t *testing.T) {
	spec := os.Getenv(scaleEnv)
	if spec == "" {
		t.Skip("set " + scaleEnv + "=SERVICES,PODS,PROXIES[,CHANGES] (e.g. 1000,5000,1000) to run the Kubernetes scale benchmark")
	}
	var n [4]int
	n[3] = 20
	for i, f := range strings.Split(spec, ",") {
		v, err := strconv.Atoi(f)
		if i >= len(n) || err != nil || v < 1 {
			t.Fatalf("%s=%q: want SERVICES,PODS,PROXIES[,CHANGES], positive numbers", scaleEnv, spec)
		}
		n[i] = v
	}
	services, pods, proxies, changes := n[0], n[1], n[2], n[3]
	if pods < services || changes > services {
		t.Fatalf("%s: want PODS >= SERVICES >= CHANGES", scaleEnv)
	}
	deadline, ok := t.Deadline()
	if !ok {
		deadline = time.Now().Add(time.Hour)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline.Add(-30*time.Second))
	defer cancel()

	bin := testenv.Binaries(t)
	c := kubeenv.Start(t, kubeenv.Options{ControllerManager: true, ControllerManagerArgs: []string{
		"--kube-api-qps=1000", "--kube-api-burst=2000", "--concurrent-service-endpoint-syncs=20"}})
	cfg := *c.Config
	cfg.QPS, cfg.Burst = 2000, 4000
	cs := kubernetes.NewForConfigOrDie(&cfg)
	if err := kube.InstallCRDs(ctx, c.Config); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	w := scaleWorld{services: services, pods: pods, changes: changes}
	w.create(t, ctx, cs)
	t.Logf("created %d Services and %d Pods (%d ready) in %v", services, pods, pods-changes, time.Since(start).Round(time.Millisecond))
	waitSlices(t, ctx, cs, pods-changes)
	t.Logf("EndpointSlices hold %d ready endpoints after %v", pods-changes, time.Since(start).Round(time.Millisecond))

	xds := testenv.FreePort(t)
	dir := t.TempDir()
	sd := testenv.Start(t, "straitd", nil, filepath.Join(bin, "straitd"), "--kubeconfig", c.Kubeconfig,
		"--kube-write-status=false", "--data-dir", dir, "--xds-listen", "127.0.0.1:"+strconv.Itoa(xds),
		"--http-listen", "127.0.0.1:"+strconv.Itoa(testenv.FreePort(t)),
		"--mesh-address", "127.0.0.1:"+strconv.Itoa(testenv.FreePort(t)), "--log-level", "warn")
	pid := sd.Pid()
	testenv.WaitFor(t, "straitd's xDS port", time.Minute, func() bool {
		conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(xds), time.Second)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
	cpu0 := procstat.CPUSeconds(pid)

	// The proxies: each watches the clusters of the services whose pods become ready later.
	watch := map[string]bool{}
	for k := range changes {
		watch[w.cluster(k)] = true
	}
	fleet := make([]*scaleSidecar, proxies)
	connectStart := time.Now()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	// The ramp: 50 proxies at a time connect and sync before the next ones start.
	for i := 0; i < proxies; i += 50 {
		batch := fleet[i:min(i+50, proxies)]
		for j := range batch {
			batch[j] = newScaleSidecar(i+j, watch)
			wg.Add(1)
			go func(p *scaleSidecar) {
				defer wg.Done()
				p.run(ctx, "127.0.0.1:"+strconv.Itoa(xds))
			}(batch[j])
		}
		for _, p := range batch {
			select {
			case <-p.synced:
			case err := <-p.failed:
				t.Fatalf("proxy %d: %v\nstraitd: %s", p.n, err, tailString(sd.Output(), 2000))
			case <-ctx.Done():
				t.Fatalf("proxies not synced by the deadline\nstraitd: %s", tailString(sd.Output(), 2000))
			}
		}
	}
	syncTime := time.Since(connectStart)
	cpuSync := procstat.CPUSeconds(pid) - cpu0
	rssSync, hwmSync := mib(procstat.Status(pid, "VmRSS")), mib(procstat.Status(pid, "VmHWM"))
	t.Logf("%d proxies connected and synced in %v; straitd RSS %.0f MiB (peak %.0f MiB), CPU %.1f s since start",
		proxies, syncTime.Round(time.Millisecond), rssSync, hwmSync, cpuSync)

	var lat []time.Duration
	cpu1 := procstat.CPUSeconds(pid)
	for k := range changes {
		t0 := time.Now()
		w.setReady(t, ctx, cs, k, true)
		key := w.cluster(k) + "|" + w.ip(w.heldPod(k))
		var worst time.Duration
		for _, p := range fleet {
			for {
				at, ok := p.seen(key)
				if ok {
					worst = max(worst, at.Sub(t0))
					break
				}
				select {
				case err := <-p.failed:
					t.Fatalf("proxy %d: %v", p.n, err)
				case <-ctx.Done():
					t.Fatalf("change %d: endpoint %s not in proxy %d by the deadline", k, key, p.n)
				case <-time.After(10 * time.Millisecond):
				}
			}
		}
		lat = append(lat, worst)
	}
	cpuChanges := procstat.CPUSeconds(pid) - cpu1
	rss, hwm := mib(procstat.Status(pid, "VmRSS")), mib(procstat.Status(pid, "VmHWM"))
	slices.Sort(lat)
	pct := func(p int) time.Duration { return lat[min(len(lat)-1, (len(lat)*p+99)/100-1)] }
	t.Logf("pod ready → endpoint in all %d proxies, %d changes: p50 %v, p90 %v, p99 %v, max %v; straitd CPU %.2f s for the changes",
		proxies, changes, pct(50).Round(time.Millisecond), pct(90).Round(time.Millisecond), pct(99).Round(time.Millisecond),
		lat[len(lat)-1].Round(time.Millisecond), cpuChanges)
	t.Logf("straitd RSS %.0f MiB, peak %.0f MiB", rss, hwm)
	var bytes int64
	for _, p := range fleet {
		bytes += p.bytes.Load()
	}
	t.Logf("xDS received by all proxies: %.1f MiB (%.0f KiB per proxy)", float64(bytes)/(1<<20), float64(bytes)/1024/float64(proxies))
}

// scaleWorld is the benchmark's Kubernetes objects: Services svc-I in namespaces ns-(I%10),
// each with ports 80 (http), 9090 (grpc) and 5432 (tcp), and pods/services Pods per Service on
// ten Nodes. The first pod of each of the first CHANGES Services starts not ready.
type scaleWorld struct {
	services, pods, changes int
}

func (w scaleWorld) ns(svc int) string { return "ns-" + strconv.Itoa(svc%10) }

func (w scaleWorld) cluster(svc int) string {
	return "outbound|80||svc-" + strconv.Itoa(svc) + "." + w.ns(svc) + ".svc.cluster.local"
}

// service returns the Service of pod k (pods are spread round robin).
func (w scaleWorld) service(k int) int { return k % w.services }

// heldPod is the pod of service svc that starts not ready (svc < changes).
func (w scaleWorld) heldPod(svc int) int { return svc }

// ip returns pod k's address: 198.19.0.0/17, data only (no traffic is sent to it).
func (w scaleWorld) ip(k int) string {
	return fmt.Sprintf("198.19.%d.%d", k/250, k%250+1)
}

func (w scaleWorld) create(t *testing.T, ctx context.Context, cs kubernetes.Interface) {
	t.Helper()
	for i := range 10 {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns-" + strconv.Itoa(i)}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-" + strconv.Itoa(i),
			Labels: map[string]string{"topology.kubernetes.io/region": "r1", "topology.kubernetes.io/zone": "z" + strconv.Itoa(i%3)}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	grpcProto := "grpc"
	parallel(t, ctx, w.services, func(i int) error {
		_, err := cs.CoreV1().Services(w.ns(i)).Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "svc-" + strconv.Itoa(i)},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "svc-" + strconv.Itoa(i)}, Ports: []corev1.ServicePort{
				{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)},
				{Name: "grpc", Port: 9090, AppProtocol: &grpcProto},
				{Name: "tcp-db", Port: 5432},
			}},
		}, metav1.CreateOptions{})
		return err
	})
	parallel(t, ctx, w.pods, func(k int) error {
		svc := w.service(k)
		name := "svc-" + strconv.Itoa(svc) + "-" + strconv.Itoa(k/w.services)
		pod, err := cs.CoreV1().Pods(w.ns(svc)).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "svc-" + strconv.Itoa(svc), "version": "v1"}},
			Spec: corev1.PodSpec{NodeName: "node-" + strconv.Itoa(k%10), AutomountServiceAccountToken: new(bool),
				Containers: []corev1.Container{{Name: "app", Image: "app", Ports: []corev1.ContainerPort{
					{ContainerPort: 8080}, {ContainerPort: 9090}, {ContainerPort: 5432}}}}},
		}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		ready := !(svc < w.changes && k == w.heldPod(svc))
		return podStatus(ctx, cs, pod, w.ip(k), ready)
	})
}

// setReady marks the held pod of service svc ready (or not).
func (w scaleWorld) setReady(t *testing.T, ctx context.Context, cs kubernetes.Interface, svc int, ready bool) {
	t.Helper()
	k := w.heldPod(svc)
	pod, err := cs.CoreV1().Pods(w.ns(svc)).Get(ctx, "svc-"+strconv.Itoa(svc)+"-"+strconv.Itoa(k/w.services), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := podStatus(ctx, cs, pod, w.ip(k), ready); err != nil {
		t.Fatal(err)
	}
}

// podStatus writes a running pod's status, as a kubelet does.
func podStatus(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod, ip string, ready bool) error {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: status}, {Type: corev1.ContainersReady, Status: status}}}
	_, err := cs.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
	return err
}

// parallel runs f(0..n-1) on 32 goroutines and fails the test on the first error.
func parallel(t *testing.T, ctx context.Context, n int, f func(i int) error) {
	t.Helper()
	var next atomic.Int64
	errs := make(chan error, 32)
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := errors.Join(ctx.Err(), <-errs); err != nil {
		t.Fatal(err)
	}
}

// waitSlices waits until the EndpointSlices hold want ready endpoints in all.
func waitSlices(t *testing.T, ctx context.Context, cs kubernetes.Interface, want int) {
	t.Helper()
	for {
		list, err := cs.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ready := 0
		for _, s := range list.Items {
			if s.AddressType != discoveryv1.AddressTypeIPv4 {
				continue
			}
			for _, e := range s.Endpoints {
				if e.Conditions.Ready != nil && *e.Conditions.Ready {
					ready++
				}
			}
		}
		if ready >= want {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("EndpointSlices hold %d of %d ready endpoints at the deadline", ready, want)
		case <-time.After(time.Second):
		}
	}
}

// scaleSidecar is a simulated sidecar: a Delta ADS stream subscribed to every type (wildcard),
// acknowledging every response, recording when each watched cluster's endpoints first held each
// healthy address.
type scaleSidecar struct {
	n      int
	node   *corev3.Node
	watch  map[string]bool
	synced chan struct{}
	failed chan error
	bytes  atomic.Int64

	mu    sync.Mutex
	got   map[string]bool
	first map[string]time.Time // "cluster|ip" → first seen
	once  sync.Once
}

func newScaleSidecar(n int, watch map[string]bool) *scaleSidecar {
	ip := fmt.Sprintf("198.19.%d.%d", 128+n/250, n%250+1)
	ns := "ns-" + strconv.Itoa(n%10)
	return &scaleSidecar{n: n, watch: watch, synced: make(chan struct{}), failed: make(chan error, 1),
		got: map[string]bool{}, first: map[string]time.Time{},
		node: &corev3.Node{
			Id:             node.NewID(node.Sidecar, ip, "client-"+strconv.Itoa(n), ns).String(),
			ClientFeatures: []string{node.FeatureVHDS},
			Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
				node.MetaNamespace:   structpb.NewStringValue(ns),
				node.MetaInstanceIPs: structpb.NewStringValue(ip),
				node.MetaLabels: structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
					"app": structpb.NewStringValue("client-" + strconv.Itoa(n%50))}}),
			}},
		}}
}

var scaleTypes = []string{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType, resource.VirtualHostType}

func (p *scaleSidecar) run(ctx context.Context, addr string) {
	if err := p.stream(ctx, addr); err != nil && ctx.Err() == nil {
		p.failed <- err
	}
}

func (p *scaleSidecar) stream(ctx context.Context, addr string) error {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("dialing: %w", err)
	}
	defer cc.Close()
	st, err := discovery.NewAggregatedDiscoveryServiceClient(cc).DeltaAggregatedResources(ctx)
	if err != nil {
		return fmt.Errorf("opening stream: %w", err)
	}
	for i, typ := range scaleTypes {
		req := &discovery.DeltaDiscoveryRequest{TypeUrl: typ}
		if i == 0 {
			req.Node = p.node
		}
		if err := st.Send(req); err != nil {
			return fmt.Errorf("subscribing: %w", err)
		}
	}
	for {
		resp, err := st.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("receiving: %w", err)
		}
		p.bytes.Add(int64(proto.Size(resp)))
		if resp.GetTypeUrl() == resource.EndpointType {
			if err := p.endpoints(resp); err != nil {
				return err
			}
		}
		if err := st.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}); err != nil {
			return fmt.Errorf("acking: %w", err)
		}
		p.mu.Lock()
		p.got[resp.GetTypeUrl()] = true
		all := len(p.got) >= 4 // VHDS may send nothing
		p.mu.Unlock()
		if all {
			p.once.Do(func() { close(p.synced) })
		}
	}
}

// endpoints records the healthy addresses of the watched clusters in an EDS response.
func (p *scaleSidecar) endpoints(resp *discovery.DeltaDiscoveryResponse) error {
	now := time.Now()
	for _, r := range resp.GetResources() {
		if !p.watch[r.GetName()] {
			continue
		}
		var cla endpointv3.ClusterLoadAssignment
		if err := r.GetResource().UnmarshalTo(&cla); err != nil {
			return fmt.Errorf("decoding %s: %w", r.GetName(), err)
		}
		p.mu.Lock()
		for _, l := range cla.GetEndpoints() {
			for _, e := range l.GetLbEndpoints() {
				if s := e.GetHealthStatus(); s != corev3.HealthStatus_UNKNOWN && s != corev3.HealthStatus_HEALTHY {
					continue
				}
				key := r.GetName() + "|" + e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress()
				if _, ok := p.first[key]; !ok {
					p.first[key] = now
				}
			}
		}
		p.mu.Unlock()
	}
	return nil
}

func (p *scaleSidecar) seen(key string) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	at, ok := p.first[key]
	return at, ok
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

func tailString(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
