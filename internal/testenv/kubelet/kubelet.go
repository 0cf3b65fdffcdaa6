// Package kubelet is a stand-in for the kubelet (and the scheduler) in integration tests, so that
// pods created in a real kube-apiserver (internal/testenv/kubeenv) actually run: the pod spec the
// API server stores, sidecar injection included, is what runs. It is test code only.
//
// Start registers a Node, binds every unscheduled pod to it (the scheduler's work, for a cluster
// of this one node), and runs each pod bound to it as processes on this machine:
//
//   - a network namespace per pod, with a veth on the node's bridge and an address from the node's
//     podCIDR (its first address is the bridge: the node's address and the cluster DNS);
//   - each container's image mapped to a built binary (Options.Images; any other image fails the
//     pod with a message naming it), its command and args composed as with an image whose
//     entrypoint is that binary, $(VAR) references expanded, env with downward-API fieldRefs;
//   - or, with Options.Pull, an image that is not mapped pulled from its registry (linux/GOARCH,
//     digests checked) and unpacked into a root file system of its own, which its containers run
//     chrooted in (with the volumes, resolv.conf, a kubelet /etc/hosts, /proc and the host's /dev
//     mounted in), its entrypoint and cmd composed with the container's command and args by
//     Kubernetes' rules, the executable found in that root file system (on the PATH for a bare
//     name), the image's env under the container's, its working directory;
//   - a mount namespace per container with its volume mounts bound in (emptyDir, ConfigMap, Secret,
//     projected service-account tokens requested with TokenRequest and bound to the pod) and a
//     resolv.conf naming the cluster DNS, run as its runAsUser/runAsGroup;
//   - init containers in order, native sidecars (init containers with restartPolicy Always) left
//     running once started (their startup probe passed), then the containers; httpGet and
//     tcpSocket probes from the node to the pod IP deciding startup, readiness and liveness;
//     restartPolicy followed, with a capped back-off;
//   - the pod's status (podIP, phase, conditions, container statuses) kept current, so the
//     controller manager's EndpointSlices follow readiness;
//   - deletion with graceful termination: SIGTERM to the containers, then to the sidecars in
//     reverse order, SIGKILL at the end of the grace period, the pod removed once all have exited.
//
// The cluster DNS answers NAME.NAMESPACE.svc.cluster.local with a Service's cluster IPs (or a
// headless Service's ready endpoints). There is no kube-proxy: a cluster IP is only reachable
// through a sidecar that intercepts it. The containers of mapped images see the host's files
// (mount points that do not exist on the host are created there as empty directories); those of
// pulled images share their image's root file system (one copy per image on the node, writable).
// readOnlyRootFilesystem, capabilities and resources are not enforced.
//
// Everything needs root (network and mount namespaces, iptables in the pods); Available says why
// not.
package kubelet

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/strait-mesh/strait/internal/netns"
)

// Options configure a node.
type Options struct {
	// NodeName is the Node's name (default strait-node-PID-N), unique on this machine: it names
	// the pods' network namespaces.
	NodeName string
	// PodCIDR is the node's pod range, a /24 or larger inside 198.18.0.0/15 that no other test
	// uses. Its first address is the bridge's (the node's address and its cluster DNS).
	PodCIDR netip.Prefix
	// Bridge is the name of the node's bridge (at most 15 characters; default derived from the
	// node name).
	Bridge string
	// Images maps container images to binaries. A pod with any other image fails, unless Pull is
	// set.
	Images map[string]Image
	// Pull, when set, makes the node pull the images Images does not map from their registries
	// and run their entrypoints (see PullOptions).
	Pull *PullOptions
	// Domain is the cluster's DNS domain (default cluster.local).
	Domain string
	// MaxProbePeriod caps probes' periodSeconds so that tests do not wait for Kubernetes' 10 s
	// default (default 1 s; probes only run more often, with the same thresholds).
	MaxProbePeriod time.Duration
	// MaxRestartBackoff caps the back-off between restarts of a container (default 5 s; the
	// kubelet's is 5 minutes).
	MaxRestartBackoff time.Duration
}

// Kubelet is a running node.
type Kubelet struct {
	// NodeName is the Node's name.
	NodeName string
	// Address is the node's address on its bridge, which pods reach (and the cluster DNS's).
	Address netip.Addr

	opts   Options
	client kubernetes.Interface
	dir    string
	ctx    context.Context
	cancel context.CancelFunc
	dns    *clusterDNS
	proxy  *serviceProxy
	images *imageStore // nil unless Options.Pull

	mu      sync.Mutex
	workers map[types.UID]*podWorker
	usedIPs map[netip.Addr]bool
	seq     int
	// created are the mount points the kubelet created on the host, in order; stop removes
	// those still empty.
	created []string
	wg      sync.WaitGroup
}

// nodes numbers the nodes this process starts, for their default names.
var nodes atomic.Int64

// Available reports why this process cannot run pods, or nil when it can.
func Available() error {
	if err := netns.Available(); err != nil {
		return err
	}
	for _, tool := range []string{"nsenter", "unshare", "setpriv", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found (Debian package util-linux)", tool)
		}
	}
	return nil
}

// Start registers the node, starts the cluster DNS and runs the pods bound to the node until the
// test ends; then it kills them and removes their namespaces, the bridge and the Node.
func Start(t testing.TB, cfg *rest.Config, opts Options) *Kubelet {
	t.Helper()
	if err := Available(); err != nil {
		t.Fatalf("kubelet: %v", err)
	}
	if opts.NodeName == "" {
		opts.NodeName = fmt.Sprintf("strait-node-%d-%d", os.Getpid(), nodes.Add(1))
	}
	if opts.Domain == "" {
		opts.Domain = "cluster.local"
	}
	if opts.MaxProbePeriod == 0 {
		opts.MaxProbePeriod = time.Second
	}
	if opts.MaxRestartBackoff == 0 {
		opts.MaxRestartBackoff = 5 * time.Second
	}
	if !opts.PodCIDR.IsValid() || !opts.PodCIDR.Addr().Is4() || opts.PodCIDR.Bits() > 28 {
		t.Fatalf("kubelet: PodCIDR %v: want an IPv4 prefix of at least 16 addresses", opts.PodCIDR)
	}
	opts.PodCIDR = opts.PodCIDR.Masked()
	if opts.Bridge == "" {
		opts.Bridge = "kb" + shortHash(opts.NodeName)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("kubelet: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	k := &Kubelet{NodeName: opts.NodeName, Address: opts.PodCIDR.Addr().Next(), opts: opts, client: client,
		dir: t.TempDir(), ctx: ctx, cancel: cancel, workers: map[types.UID]*podWorker{}, usedIPs: map[netip.Addr]bool{}}
	br := netns.Bridge{Name: opts.Bridge, Gateway: netip.PrefixFrom(k.Address, opts.PodCIDR.Bits())}
	if err := netns.EnsureBridge(br); err != nil {
		cancel()
		t.Fatalf("kubelet: %v", err)
	}
	t.Cleanup(func() { k.stop(t) })
	if opts.Pull != nil {
		if k.images, err = newImageStore(*opts.Pull); err != nil {
			t.Fatalf("kubelet: %v", err)
		}
	}

	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(k.Address, 53)))
	if err != nil {
		t.Fatalf("kubelet: cluster DNS: %v", err)
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	k.dns = &clusterDNS{conn: conn, domain: opts.Domain,
		services: factory.Core().V1().Services().Lister(), slices: factory.Discovery().V1().EndpointSlices().Lister()}
	apiserver, err := url.Parse(cfg.Host)
	if err != nil || apiserver.Host == "" {
		t.Fatalf("kubelet: API server address %q: %v", cfg.Host, err)
	}
	k.proxy = &serviceProxy{node: k.Address, bridge: opts.Bridge, chain: "KL-" + shortHash(opts.NodeName), apiserver: apiserver.Host,
		services: k.dns.services, slices: k.dns.slices}
	kick := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { notify(k.proxy.kick) },
		UpdateFunc: func(any, any) { notify(k.proxy.kick) },
		DeleteFunc: func(any) { notify(k.proxy.kick) },
	}
	for _, inf := range []cache.SharedIndexInformer{factory.Core().V1().Services().Informer(), factory.Discovery().V1().EndpointSlices().Informer()} {
		if _, err := inf.AddEventHandler(kick); err != nil {
			t.Fatalf("kubelet: %v", err)
		}
	}
	if err := k.proxy.start(); err != nil {
		t.Fatalf("kubelet: service proxy: %v", err)
	}
	podInformer := factory.Core().V1().Pods().Informer()
	if _, err := podInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { k.podChanged(obj) },
		UpdateFunc: func(_, obj any) { k.podChanged(obj) },
		DeleteFunc: k.podDeleted,
	}); err != nil {
		t.Fatalf("kubelet: %v", err)
	}
	factory.Start(ctx.Done())
	go k.dns.serve()

	if err := k.registerNode(ctx); err != nil {
		t.Fatalf("kubelet: %v", err)
	}
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			t.Fatalf("kubelet: %v informer did not sync", typ)
		}
	}
	return k
}

// registerNode creates the Node, ready, with the pod range and the bridge's address.
func (k *Kubelet) registerNode(ctx context.Context) error {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: k.NodeName, Labels: map[string]string{
			"kubernetes.io/hostname": k.NodeName, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}},
		Spec: corev1.NodeSpec{PodCIDR: k.opts.PodCIDR.String(), PodCIDRs: []string{k.opts.PodCIDR.String()}},
	}
	created, err := k.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("registering node %s: %w", k.NodeName, err)
	}
	now := metav1.Now()
	capacity := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("8"), corev1.ResourceMemory: resource.MustParse("16Gi"),
		corev1.ResourcePods: resource.MustParse("110")}
	created.Status = corev1.NodeStatus{
		Capacity: capacity, Allocatable: capacity,
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			Message: "strait test kubelet is ready", LastHeartbeatTime: now, LastTransitionTime: now}},
		Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: k.Address.String()}, {Type: corev1.NodeHostName, Address: k.NodeName}},
		NodeInfo:  corev1.NodeSystemInfo{KubeletVersion: "v1.37.2-strait-test", OperatingSystem: "linux", Architecture: "amd64"},
	}
	if _, err := k.client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("node %s status: %w", k.NodeName, err)
	}
	return nil
}

// podChanged binds an unscheduled pod to the node, and hands a pod bound here to its worker
// (starting one for a new pod).
func (k *Kubelet) podChanged(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	if pod.Spec.NodeName == "" {
		if pod.DeletionTimestamp == nil && (pod.Spec.SchedulerName == "" || pod.Spec.SchedulerName == corev1.DefaultSchedulerName) {
			go k.bind(pod)
		}
		return
	}
	if pod.Spec.NodeName != k.NodeName {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ctx.Err() != nil {
		return
	}
	w := k.workers[pod.UID]
	if w == nil {
		if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			return
		}
		w = newPodWorker(k, pod)
		k.workers[pod.UID] = w
		k.wg.Add(1)
		go func() {
			defer k.wg.Done()
			w.run()
		}()
		return
	}
	w.update(pod)
}

// podDeleted stops the worker of a pod that is gone from the API server.
func (k *Kubelet) podDeleted(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	k.mu.Lock()
	w := k.workers[pod.UID]
	delete(k.workers, pod.UID)
	k.mu.Unlock()
	if w != nil {
		w.cancel()
	}
}

// bind assigns a pod to this node (the scheduler's Binding).
func (k *Kubelet) bind(pod *corev1.Pod) {
	err := k.client.CoreV1().Pods(pod.Namespace).Bind(k.ctx, &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: k.NodeName},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) && k.ctx.Err() == nil {
		k.event(pod, corev1.EventTypeWarning, "FailedScheduling", err.Error())
	}
}

// event records an Event on a pod.
func (k *Kubelet) event(pod *corev1.Pod, typ, reason, msg string) {
	now := metav1.Now()
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{GenerateName: pod.Name + ".", Namespace: pod.Namespace},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name,
			UID: pod.UID, ResourceVersion: pod.ResourceVersion},
		Type: typ, Reason: reason, Message: msg, FirstTimestamp: now, LastTimestamp: now, Count: 1,
		Source: corev1.EventSource{Component: "kubelet", Host: k.NodeName},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = k.client.CoreV1().Events(pod.Namespace).Create(ctx, ev, metav1.CreateOptions{})
}

// allocateIP takes a free address of the pod range.
func (k *Kubelet) allocateIP() (netip.Addr, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for a := k.Address.Next(); k.opts.PodCIDR.Contains(a); a = a.Next() {
		if !k.opts.PodCIDR.Contains(a.Next()) {
			break // the broadcast address
		}
		if !k.usedIPs[a] {
			k.usedIPs[a] = true
			return a, nil
		}
	}
	return netip.Addr{}, errors.New("no free address in the node's pod range")
}

func (k *Kubelet) releaseIP(a netip.Addr) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.usedIPs, a)
}

// nextNetns returns a network namespace name no other pod of this machine has.
func (k *Kubelet) nextNetns() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.seq++
	return fmt.Sprintf("kl-%s-%d", shortHash(k.NodeName), k.seq)
}

// mountPoint makes sure a volume's mount path exists: the missing directories are created on the
// host (containers share its file system) and removed again, if still empty, when the kubelet
// stops.
func (k *Kubelet) mountPoint(target string) error {
	if !filepath.IsAbs(target) {
		return fmt.Errorf("mount path %q is not absolute", target)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	p := "/"
	for _, part := range strings.Split(strings.Trim(filepath.Clean(target), "/"), "/") {
		p = filepath.Join(p, part)
		if _, err := os.Lstat(p); err == nil {
			continue
		}
		if err := os.Mkdir(p, 0o755); err != nil && !os.IsExist(err) {
			return fmt.Errorf("creating mount point %s: %w", p, err)
		}
		k.created = append(k.created, p)
	}
	return nil
}

// resolvConf is a pod's /etc/resolv.conf (the kubelet's ClusterFirst DNS policy).
func (k *Kubelet) resolvConf(namespace string) string {
	d := k.opts.Domain
	return fmt.Sprintf("nameserver %s\nsearch %s.svc.%s svc.%s %s\noptions ndots:5\n", k.Address, namespace, d, d, d)
}

// Logs returns what a container of a pod has printed, over all its runs.
func (k *Kubelet) Logs(namespace, pod, container string) string {
	b, _ := os.ReadFile(filepath.Join(k.dir, "pods", namespace+"_"+pod, container+".log"))
	return string(b)
}

// PodNetns returns the network namespace of a running pod of this node ("" when it has none),
// for tests that dial from inside a pod (netns.NS{Name: ...}.Do).
func (k *Kubelet) PodNetns(namespace, pod string) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, w := range k.workers {
		if p := w.latest(); p.Namespace == namespace && p.Name == pod {
			return w.netnsName()
		}
	}
	return ""
}

// Signal sends sig to the running process of a container of a pod of this node, as a crash or
// an operator's kill would (SIGKILL: the container exits and restarts per the pod's
// restartPolicy, with the pod kept).
func (k *Kubelet) Signal(namespace, pod, name string, sig syscall.Signal) error {
	k.mu.Lock()
	var w *podWorker
	for _, pw := range k.workers {
		if p := pw.latest(); p.Namespace == namespace && p.Name == pod {
			w = pw
		}
	}
	k.mu.Unlock()
	if w == nil {
		return fmt.Errorf("kubelet: no pod %s/%s on node %s", namespace, pod, k.NodeName)
	}
	w.mu.Lock()
	cs := append(append([]*container{}, w.inits...), w.mains...)
	w.mu.Unlock()
	for _, c := range cs {
		if c.spec.Name != name {
			continue
		}
		c.mu.Lock()
		p := c.proc
		c.mu.Unlock()
		if p == nil {
			return fmt.Errorf("kubelet: container %s of pod %s/%s is not running", name, namespace, pod)
		}
		p.signal(sig)
		return nil
	}
	return fmt.Errorf("kubelet: pod %s/%s has no container %s", namespace, pod, name)
}

// stop kills every pod, removes their namespaces, the bridge and the Node, and, when the test
// failed, logs the end of every container's output.
func (k *Kubelet) stop(t testing.TB) {
	k.mu.Lock()
	k.cancel()
	workers := make([]*podWorker, 0, len(k.workers))
	for _, w := range k.workers {
		workers = append(workers, w)
	}
	k.mu.Unlock()
	for _, w := range workers {
		w.cancel()
	}
	k.wg.Wait()
	if k.dns != nil {
		k.dns.conn.Close()
	}
	if k.proxy != nil && k.proxy.done != nil {
		k.proxy.stop()
	}
	if err := netns.DeleteLink(k.opts.Bridge); err != nil {
		t.Errorf("kubelet: %v", err)
	}
	if k.images != nil {
		if err := k.images.remove(); err != nil {
			t.Errorf("kubelet: %v", err)
		}
	}
	for i := len(k.created) - 1; i >= 0; i-- {
		_ = os.Remove(k.created[i]) // only when empty: another test may use it
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = k.client.CoreV1().Nodes().Delete(ctx, k.NodeName, metav1.DeleteOptions{})
	if t.Failed() {
		k.dumpLogs(t)
	}
}

// dumpLogs logs the end of every container's output.
func (k *Kubelet) dumpLogs(t testing.TB) {
	files, _ := filepath.Glob(filepath.Join(k.dir, "pods", "*", "*.log"))
	sort.Strings(files)
	for _, f := range files {
		b, _ := os.ReadFile(f)
		s := string(b)
		if len(s) > 3000 {
			s = "..." + s[len(s)-3000:]
		}
		rel, _ := filepath.Rel(filepath.Join(k.dir, "pods"), f)
		t.Logf("kubelet: %s:\n%s", rel, strings.TrimRight(s, "\n"))
	}
}

// shortHash is 8 hex digits of FNV-32a, for interface and namespace names.
func shortHash(s string) string {
	h := fnv.New32a()
	h.Write([]byte(s))
	return fmt.Sprintf("%08x", h.Sum32())
}
