package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/strait-mesh/strait/controlplane/leader"
	"github.com/strait-mesh/strait/internal/images"
	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/internal/testenv/kubeenv"
	"github.com/strait-mesh/strait/internal/testenv/kubelet"
)

// kubeJobEnv makes this test binary a Job's application (see init): it GETs the URL in the
// variable, retrying for up to 30 s while the answer is not a 200, and exits 0 once it is one,
// 1 otherwise.
const kubeJobEnv = "STRAIT_E2E_KUBE_JOB_URL"

func init() {
	url := os.Getenv(kubeJobEnv)
	if url == "" {
		return
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(url)
		if err != nil {
			fmt.Println("job:", err)
			continue
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
		fmt.Printf("job: %d %s\n", resp.StatusCode, body)
		if resp.StatusCode == http.StatusOK {
			os.Exit(0)
		}
	}
	os.Exit(1)
}

// Images of the Kubernetes tests' applications, mapped by the kubelet stand-in to binaries.
const (
	kubeBookstoreImage = "strait/bookstore:latest" // as in samples/bookstore/kube/bookstore.yaml
	kubeJobImage       = "strait/e2e-job:test"
)

// kubeMesh is a real API server and controller manager, a kubelet stand-in running the pods, and
// Strait installed with `strait install`: straitd (two replicas) and the ingress gateway run as
// pods of the stand-in, from the installed manifests.
type kubeMesh struct {
	cluster *kubeenv.Cluster
	client  kubernetes.Interface
	objs    *kubeenv.Objects
	node    *kubelet.Kubelet
	ctx     context.Context
}

// kubeRegistryAddr is the address of the in-test registry that the straitd and proxy images are
// pushed to, and that `strait install --registry` names.
const kubeRegistryAddr = "127.0.0.127"

// startKubeMesh starts it all; podCIDR is the node's pod range.
func startKubeMesh(t *testing.T, podCIDR string) *kubeMesh {
	t.Helper()
	skipShort(t)
	if err := kubelet.Available(); err != nil {
		if os.Getenv(kubeenv.RequireToolsEnv) != "" {
			t.Fatalf("kubelet stand-in: %v", err)
		}
		t.Skipf("skipping: %v", err)
	}
	cluster := kubeenv.Start(t, kubeenv.Options{ControllerManager: true})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	bin := testenv.Binaries(t)
	strait := func(args ...string) string {
		cmd := exec.CommandContext(ctx, filepath.Join(bin, "strait"), args...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("strait %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	// The images the manifests name (REGISTRY/straitd:VERSION, REGISTRY/proxy:VERSION) are built
	// from the test's binaries and pushed to an in-test registry, which the kubelet pulls them
	// from: the images themselves run.
	registry := startKubeRegistry(t)
	manifests := strait("install", "--dry-run", "--registry", registry)
	refs := map[string]string{}
	for _, m := range regexp.MustCompile(`image: (`+regexp.QuoteMeta(registry)+`/(straitd|proxy):\S+)`).FindAllStringSubmatch(manifests, -1) {
		refs[m[2]] = m[1]
	}
	if len(refs) != 2 {
		t.Fatalf("images in the manifests: %v", refs)
	}
	pushKubeImages(ctx, t, bin, refs)
	node := kubelet.Start(t, cluster.Config, kubelet.Options{PodCIDR: netip.MustParsePrefix(podCIDR), Images: map[string]kubelet.Image{
		kubeBookstoreImage: {Binary: filepath.Join(bin, "bookstore")},
		kubeJobImage:       {Binary: kubelet.TestBinaryCopy(t)},
	}, Pull: &kubelet.PullOptions{Insecure: true}})
	m := &kubeMesh{cluster: cluster, client: kubernetes.NewForConfigOrDie(cluster.Config), objs: cluster.Objects(t), node: node, ctx: ctx}
	t.Log(strait("install", "--kubeconfig", cluster.Kubeconfig, "--registry", registry))
	m.waitDeploymentsReady(t, "istio-system", 2*time.Minute)
	poll(t, 60*time.Second, "the webhooks' CA bundles", func() error {
		mw, err := m.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "istio-sidecar-injector", metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, w := range mw.Webhooks {
			if len(w.ClientConfig.CABundle) == 0 {
				return fmt.Errorf("webhook %s has no CA bundle", w.Name)
			}
		}
		return nil
	})
	return m
}

// startKubeRegistry serves an in-memory container registry on kubeRegistryAddr until the test
// ends, and returns its address (HOST:PORT).
func startKubeRegistry(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(kubeRegistryAddr, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// pushKubeImages builds the straitd and proxy images (refs: "straitd" and "proxy" to their
// references) from the binaries in bin for this machine's platform only, as tools/images builds
// them for every platform, and pushes them.
func pushKubeImages(ctx context.Context, t *testing.T, bin string, refs map[string]string) {
	t.Helper()
	start := time.Now()
	ca, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		ca = []byte("# no CA bundle on the test machine: the bookstore needs none\n")
	}
	reg := images.Registry{Insecure: true, Keychain: authn.NewMultiKeychain()}
	for repo, binary := range map[string]string{"straitd": "straitd", "proxy": "strait-proxy"} {
		idx, err := images.Build(images.Spec{Name: binary, Binaries: map[string]string{"linux/" + runtime.GOARCH: filepath.Join(bin, binary)},
			CACertificates: ca, User: "1337:1337", Version: "e2e"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := reg.Push(ctx, refs[repo], idx); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("built and pushed the straitd and proxy images in %v", time.Since(start).Round(time.Millisecond))
}

// poll checks cond every 250 ms until it returns nil, failing the test after timeout. It waits;
// it never asserts on time.
func poll(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// readFile reads a file of the repository (relative to e2e/).
func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// waitDeploymentsReady waits until every Deployment of namespace has all its replicas available.
func (m *kubeMesh) waitDeploymentsReady(t *testing.T, namespace string, timeout time.Duration) {
	t.Helper()
	poll(t, timeout, "Deployments in "+namespace+" available", func() error {
		list, err := m.client.AppsV1().Deployments(namespace).List(m.ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, d := range list.Items {
			if d.Spec.Replicas != nil && d.Status.AvailableReplicas < *d.Spec.Replicas {
				return fmt.Errorf("Deployment %s/%s: %d of %d available", namespace, d.Name, d.Status.AvailableReplicas, *d.Spec.Replicas)
			}
		}
		return nil
	})
}

// podIP returns the address of the (first) ready pod with the label selector.
func (m *kubeMesh) podIP(t *testing.T, namespace, selector string) string {
	t.Helper()
	list, err := m.client.CoreV1().Pods(namespace).List(m.ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range list.Items {
		if p.Status.PodIP != "" && p.DeletionTimestamp == nil {
			return p.Status.PodIP
		}
	}
	t.Fatalf("no pod %s in %s", selector, namespace)
	return ""
}

// versions GETs url and returns the bookstore's X-Bookstore-Versions header of a 200.
func versions(ctx context.Context, url string, header http.Header) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	return resp.Header.Get("X-Bookstore-Versions"), nil
}

// TestKubernetesBookstore runs the bookstore on Kubernetes as a user would: `strait install`
// (straitd's two replicas and the ingress gateway run as pods), the default namespace labelled
// istio-injection=enabled, the Deployments and Services of samples/bookstore/kube from plain
// YAML, the DestinationRules and Gateway of samples/bookstore/config as custom resources. The
// kubelet stand-in runs the pods as the API server stored them, injected by straitd's webhook:
// istio-init's iptables, strait-proxy as a native sidecar with its service-account token, the
// probes through the sidecar. The bookstore answers through the
// sidecars (web's pod address) and through the ingress gateway; samples/bookstore/scenarios'
// reviews-v1.yaml then sends every request to reviews v1. Last, a Job with an injected sidecar
// fetches ratings through the mesh and completes.
func TestKubernetesBookstore(t *testing.T) {
	m := startKubeMesh(t, "198.18.180.0/24")
	ns, err := m.client.CoreV1().Namespaces().Get(m.ctx, "default", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns.Labels["istio-injection"] = "enabled"
	if _, err := m.client.CoreV1().Namespaces().Update(m.ctx, ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"../samples/bookstore/config/destination-rules.yaml", "../samples/bookstore/config/gateway.yaml",
		"../samples/bookstore/kube/bookstore.yaml"} {
		if _, err := m.objs.Create(m.ctx, readFile(t, f)); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	m.waitDeploymentsReady(t, "default", 2*time.Minute)
	m.waitDeploymentsReady(t, "istio-system", time.Minute)

	pod, err := m.client.CoreV1().Pods("default").List(m.ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil || len(pod.Items) != 1 {
		t.Fatalf("web pods: %v %v", pod, err)
	}
	var inits []string
	for _, c := range pod.Items[0].Spec.InitContainers {
		inits = append(inits, c.Name)
	}
	if strings.Join(inits, ",") != "istio-init,istio-proxy" {
		t.Fatalf("the web pod was not injected: init containers %v", inits)
	}
	// istio-init ran chrooted in the proxy image, which has no iptables tools.
	if log := m.node.Logs("default", pod.Items[0].Name, "istio-init"); !strings.Contains(log, "backend nftables") {
		t.Errorf("istio-init did not take the nftables backend in the proxy image:\n%s", log)
	}

	web := "http://" + m.podIP(t, "default", "app=web") + ":9080/api/book/0"
	gateway := "http://" + m.podIP(t, "istio-system", "istio=ingressgateway") + ":8080/api/book/0"
	// Every version of reviews answers in turn (no route for reviews yet), through web's sidecar
	// and through the gateway.
	for _, url := range []string{web, gateway} {
		seen := map[string]bool{}
		poll(t, 60*time.Second, "every reviews version through "+url, func() error {
			v, err := versions(m.ctx, url, nil)
			if err != nil {
				return err
			}
			for _, want := range []string{"details=v1", "web=v1"} {
				if !strings.Contains(v, want) {
					return fmt.Errorf("versions %q lack %s", v, want)
				}
			}
			for _, r := range []string{"reviews=v1", "reviews=v2,", "reviews=v3"} {
				if strings.Contains(v, r) {
					seen[r] = true
				}
			}
			if strings.Contains(v, "reviews=v2") || strings.Contains(v, "reviews=v3") {
				if !strings.Contains(v, "ratings=v1") {
					return fmt.Errorf("versions %q: reviews v2/v3 without ratings", v)
				}
			}
			if len(seen) < 3 {
				return fmt.Errorf("seen %v so far", seen)
			}
			return nil
		})
	}

	// The same VirtualService as `strait apply -f samples/bookstore/scenarios/reviews-v1.yaml`.
	if _, err := m.objs.Create(m.ctx, readFile(t, "../samples/bookstore/scenarios/reviews-v1.yaml")); err != nil {
		t.Fatal(err)
	}
	poll(t, 30*time.Second, "reviews v1 only", func() error {
		for i := 0; i < 10; i++ {
			v, err := versions(m.ctx, gateway, nil)
			if err != nil {
				return err
			}
			if v != "details=v1,reviews=v1,web=v1" {
				return fmt.Errorf("request %d: versions %q", i, v)
			}
		}
		return nil
	})
	for i := 0; i < 30; i++ {
		if v, err := versions(m.ctx, gateway, nil); err != nil || v != "details=v1,reviews=v1,web=v1" {
			t.Fatalf("with reviews-v1.yaml, request %d: %q %v", i, v, err)
		}
	}

	t.Run("RollingUpdateUnderLoad", func(t *testing.T) {
		m.rollingUpdate(t, gateway)
	})

	t.Run("LeaderKilledUnderLoad", func(t *testing.T) {
		m.killLeader(t, gateway)
	})

	t.Run("JobWithSidecarCompletes", func(t *testing.T) {
		if _, err := m.objs.Create(m.ctx, `apiVersion: batch/v1
kind: Job
metadata: {name: fetch-ratings, namespace: default}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: fetch
        image: `+kubeJobImage+`
        env: [{name: `+kubeJobEnv+`, value: "http://ratings:9080/ratings/0"}]
`); err != nil {
			t.Fatal(err)
		}
		poll(t, 90*time.Second, "the Job's completion", func() error {
			j, err := m.client.BatchV1().Jobs("default").Get(m.ctx, "fetch-ratings", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if j.Status.Failed > 0 {
				t.Fatalf("the Job failed: %+v", j.Status)
			}
			if j.Status.Succeeded != 1 {
				return fmt.Errorf("Job status %+v", j.Status)
			}
			return nil
		})
		pods, err := m.client.CoreV1().Pods("default").List(m.ctx, metav1.ListOptions{LabelSelector: "job-name=fetch-ratings"})
		if err != nil || len(pods.Items) != 1 {
			t.Fatalf("the Job's pods: %v", err)
		}
		p := pods.Items[0]
		if len(p.Spec.InitContainers) != 2 || p.Spec.InitContainers[1].Name != "istio-proxy" || p.Status.Phase != corev1.PodSucceeded {
			t.Errorf("the Job's pod: init containers %d, phase %s", len(p.Spec.InitContainers), p.Status.Phase)
		}
		// ratings saw the Job's identity: the request went through both sidecars over mutual TLS.
		if logs := m.node.Logs("default", p.Name, "fetch"); !strings.Contains(logs, "job: 200") || !strings.Contains(logs, `"service": "ratings"`) ||
			!strings.Contains(logs, `"caller": "spiffe://cluster.local/ns/default/sa/default"`) {
			t.Errorf("the Job's output:\n%s", logs)
		}
	})
}

// rollingUpdate restarts reviews-v1 (as `kubectl rollout restart`) while a client sends requests
// through the ingress one after another, and checks that every answer is a 200 with reviews v1 in
// it: the old pod leaves load balancing before it stops serving.
func (m *kubeMesh) rollingUpdate(t *testing.T, url string) {
	deps := m.client.AppsV1().Deployments("default")
	old, err := m.client.CoreV1().Pods("default").List(m.ctx, metav1.ListOptions{LabelSelector: "app=reviews,version=v1"})
	if err != nil || len(old.Items) != 1 {
		t.Fatalf("reviews-v1 pods: %v", err)
	}
	type result struct {
		n      int
		failed []string
	}
	stop := make(chan struct{})
	done := make(chan result, 1)
	go func() {
		n, failed := steadyLoad(m.ctx, url, "details=v1,reviews=v1,web=v1", stop)
		done <- result{n, failed}
	}()
	d, err := deps.Get(m.ctx, "reviews-v1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Spec.Template.Annotations == nil {
		d.Spec.Template.Annotations = map[string]string{}
	}
	d.Spec.Template.Annotations["kubectl.kubernetes.io/restartedAt"] = time.Now().Format(time.RFC3339)
	if _, err := deps.Update(m.ctx, d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, 2*time.Minute, "the rollout of reviews-v1 and the old pod gone", func() error {
		d, err := deps.Get(m.ctx, "reviews-v1", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Status.ObservedGeneration < d.Generation || d.Status.UpdatedReplicas != 1 || d.Status.AvailableReplicas != 1 || d.Status.Replicas != 1 {
			return fmt.Errorf("rollout status %+v", d.Status)
		}
		if _, err := m.client.CoreV1().Pods("default").Get(m.ctx, old.Items[0].Name, metav1.GetOptions{}); err == nil {
			return fmt.Errorf("old pod %s still there", old.Items[0].Name)
		}
		return nil
	})
	// A few more requests reach the new pod alone.
	time.Sleep(time.Second)
	close(stop)
	r := <-done
	if len(r.failed) > 0 {
		t.Errorf("%d of %d requests failed during the rolling update; the first ones:\n%s", len(r.failed), r.n, strings.Join(r.failed[:min(len(r.failed), 10)], "\n"))
	}
	t.Logf("%d requests during the rolling update of reviews-v1", r.n)
}

// steadyLoad sends requests through url one after another until stop is closed (bounded: 20,000
// requests or 3 minutes) and returns how many it sent and the failures.
func steadyLoad(ctx context.Context, url, want string, stop <-chan struct{}) (n int, failed []string) {
	for deadline := time.Now().Add(3 * time.Minute); n < 20000 && time.Now().Before(deadline); n++ {
		select {
		case <-stop:
			return n, failed
		default:
		}
		if v, err := versions(ctx, url, nil); err != nil || v != want {
			failed = append(failed, fmt.Sprintf("request %d: %q %v", n, v, err))
		}
	}
	return n, failed
}

// killLeader freezes, then kills, the straitd replica that holds the revision's lease while
// requests flow through the ingress, and checks that none fails and that the other replica takes
// the singleton work over (the time is logged, not asserted: the lease timings bound it at
// 12.4 s, controlplane/leader).
func (m *kubeMesh) killLeader(t *testing.T, url string) {
	leases := m.client.CoordinationV1().Leases("istio-system")
	holder := func() string {
		l, err := leases.Get(m.ctx, leader.RevisionLease(""), metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}
	var old string
	poll(t, 30*time.Second, "a leader", func() error {
		if old = holder(); old == "" {
			return errors.New("no holder")
		}
		return nil
	})
	pods, err := m.client.CoreV1().Pods("istio-system").List(m.ctx, metav1.ListOptions{LabelSelector: "app=istiod"})
	if err != nil || len(pods.Items) != 2 {
		t.Fatalf("straitd pods: %d, %v", len(pods.Items), err)
	}
	found := false
	for _, p := range pods.Items {
		found = found || p.Name == old
	}
	if !found {
		t.Fatalf("the lease's holder %q is none of the straitd pods", old)
	}
	// Everything goes to reviews v1 (set by the earlier subtest), so every answer is known.
	want := "details=v1,reviews=v1,web=v1"
	stop := make(chan struct{})
	type result struct {
		n      int
		failed []string
	}
	done := make(chan result, 1)
	go func() {
		n, failed := steadyLoad(m.ctx, url, want, stop)
		done <- result{n, failed}
	}()
	time.Sleep(time.Second)
	// Frozen first (SIGSTOP, as a hung or cut-off leader): it neither renews nor releases the
	// lease, so the other replica must take it when it expires. Killed then: its container
	// restarts under the same identity (the pod's name) and must not take the lease back.
	killed := time.Now()
	if err := m.node.Signal("istio-system", old, "discovery", syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	poll(t, 60*time.Second, "the other replica holding the lease", func() error {
		if h := holder(); h == "" || h == old {
			return fmt.Errorf("holder %q", h)
		}
		return nil
	})
	takeover := time.Since(killed)
	if err := m.node.Signal("istio-system", old, "discovery", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The load runs on while the proxies that were connected to the killed replica reconnect.
	time.Sleep(3 * time.Second)
	if h := holder(); h == old {
		t.Errorf("the killed leader %s took the lease back after its restart", old)
	}
	close(stop)
	r := <-done
	if len(r.failed) > 0 {
		t.Errorf("%d of %d requests failed while the leader was killed; the first ones:\n%s", len(r.failed), r.n, strings.Join(r.failed[:min(len(r.failed), 10)], "\n"))
	}
	t.Logf("leader %s frozen: the lease moved to the other replica after %v; then killed; %d requests, %d failed", old, takeover.Round(time.Millisecond), r.n, len(r.failed))
}
