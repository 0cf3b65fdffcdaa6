package kubelet

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/strait-mesh/strait/internal/netns"
)

// podWorker runs one pod from admission to its removal.
type podWorker struct {
	k      *Kubelet
	ctx    context.Context // ends when the pod is gone or the kubelet stops: kill everything
	cancel context.CancelFunc
	// updated is signalled when a newer version of the pod arrives; dirty when the status
	// changed.
	updated, dirty chan struct{}
	// exited is signalled when a container exits.
	exited chan struct{}

	mu          sync.Mutex
	pod         *corev1.Pod
	ns          *netns.NS
	veth        string
	ip          netip.Addr
	dir         string
	vols        map[string]string
	startTime   metav1.Time
	initialized bool
	phase       corev1.PodPhase // Succeeded or Failed once the pod is done, else ""
	reason, msg string
	inits       []*container
	mains       []*container
	statusDone  chan struct{}
}

func newPodWorker(k *Kubelet, pod *corev1.Pod) *podWorker {
	ctx, cancel := context.WithCancel(k.ctx)
	w := &podWorker{k: k, ctx: ctx, cancel: cancel, pod: pod.DeepCopy(),
		updated: make(chan struct{}, 1), dirty: make(chan struct{}, 1), exited: make(chan struct{}, 1), statusDone: make(chan struct{})}
	for _, c := range pod.Spec.InitContainers {
		w.inits = append(w.inits, &container{w: w, spec: c, sidecar: isSidecar(c), init: !isSidecar(c)})
	}
	for _, c := range pod.Spec.Containers {
		w.mains = append(w.mains, &container{w: w, spec: c})
	}
	return w
}

// update hands the worker a newer version of its pod.
func (w *podWorker) update(pod *corev1.Pod) {
	w.mu.Lock()
	w.pod = pod.DeepCopy()
	if w.ip.IsValid() { // the status round trip may not have brought it back yet
		w.setIP()
	}
	w.mu.Unlock()
	notify(w.updated)
}

func (w *podWorker) latest() *corev1.Pod {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pod
}

func (w *podWorker) netnsName() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ns == nil {
		return ""
	}
	return w.ns.Name
}

// changed asks for a status update.
func (w *podWorker) changed() { notify(w.dirty) }

func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// deleting reports whether the pod is being deleted (it has a deletion timestamp).
func (w *podWorker) deleting() bool { return w.latest().DeletionTimestamp != nil }

// run is the pod's life: admission, sandbox, volumes, init containers, sidecars, containers,
// then completion or deletion.
func (w *podWorker) run() {
	go w.statusLoop()
	defer func() {
		w.teardown()
		w.changed()
		w.cancelStatus()
	}()
	pod := w.latest()
	w.mu.Lock()
	w.startTime = metav1.Now()
	w.dir = filepath.Join(w.k.dir, "pods", pod.Namespace+"_"+pod.Name)
	w.mu.Unlock()
	if err := os.MkdirAll(w.dir, 0o755); err != nil {
		w.fail("CreatePodSandboxError", err.Error())
		w.awaitDeletion()
		return
	}
	if err := w.k.pullImages(w.ctx, pod); err != nil {
		w.k.event(pod, corev1.EventTypeWarning, "Failed", err.Error())
		w.fail("ErrImagePull", err.Error())
		w.awaitDeletion()
		return
	}
	if err := w.k.admit(pod); err != nil {
		w.k.event(pod, corev1.EventTypeWarning, "UnsupportedByTestKubelet", err.Error())
		w.fail("UnsupportedByTestKubelet", err.Error())
		w.awaitDeletion()
		return
	}
	if err := w.sandbox(); err != nil {
		w.k.event(pod, corev1.EventTypeWarning, "FailedCreatePodSandBox", err.Error())
		w.fail("CreatePodSandboxError", err.Error())
		w.awaitDeletion()
		return
	}
	w.changed()
	if !w.mountVolumes() {
		w.awaitDeletion()
		return
	}
	for _, c := range w.inits {
		if !w.runInit(c) {
			w.awaitDeletion()
			return
		}
	}
	w.mu.Lock()
	w.initialized = true
	w.mu.Unlock()
	w.changed()
	for _, c := range w.mains {
		c.supervise()
	}
	for {
		if w.deleting() {
			w.terminate()
			return
		}
		if done, ok := w.mainsDone(); done {
			w.stopSidecars(time.Now().Add(w.gracePeriod()))
			w.finish(ok)
			w.awaitDeletion()
			return
		}
		select {
		case <-w.updated:
		case <-w.exited:
		case <-w.ctx.Done():
			w.kill()
			return
		}
	}
}

// mainsDone reports whether every main container has exited for good, and whether all with 0.
func (w *podWorker) mainsDone() (done, ok bool) {
	ok = true
	for _, c := range w.mains {
		final, code := c.finalState()
		if !final {
			return false, false
		}
		if code != 0 {
			ok = false
		}
	}
	return true, ok
}

// sandbox creates the pod's network namespace on the bridge with its address and writes its
// resolv.conf.
func (w *podWorker) sandbox() error {
	pod := w.latest()
	ip, err := w.k.allocateIP()
	if err != nil {
		return err
	}
	name := w.k.nextNetns()
	ns, err := netns.Add(name)
	if err != nil {
		w.k.releaseIP(ip)
		return err
	}
	veth := "kv" + shortHash(name)
	br := netns.Bridge{Name: w.k.opts.Bridge, Gateway: netip.PrefixFrom(w.k.Address, w.k.opts.PodCIDR.Bits())}
	if err := netns.Attach(ns, br, veth, ip); err != nil {
		_ = ns.Delete()
		w.k.releaseIP(ip)
		return err
	}
	if err := os.WriteFile(filepath.Join(w.dir, "resolv.conf"), []byte(w.k.resolvConf(pod.Namespace)), 0o644); err != nil {
		return err
	}
	// The kubelet's /etc/hosts, for the containers of pulled images (the others see the host's).
	hosts := fmt.Sprintf("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n%s\t%s\n", ip, pod.Name)
	if err := os.WriteFile(filepath.Join(w.dir, "hosts"), []byte(hosts), 0o644); err != nil {
		return err
	}
	w.mu.Lock()
	w.ns, w.veth, w.ip = ns, veth, ip
	w.setIP()
	w.mu.Unlock()
	return nil
}

// setIP puts the pod's address in the worker's copy of the pod, for the downward API and the
// probes. w.mu is held.
func (w *podWorker) setIP() {
	w.pod.Status.PodIP = w.ip.String()
	w.pod.Status.PodIPs = []corev1.PodIP{{IP: w.ip.String()}}
	w.pod.Status.HostIP = w.k.Address.String()
}

// teardown removes the network namespace and frees the address.
func (w *podWorker) teardown() {
	w.mu.Lock()
	ns, veth, ip := w.ns, w.veth, w.ip
	w.ns = nil
	w.mu.Unlock()
	if ns == nil {
		return
	}
	_ = netns.DeleteLink(veth)
	_ = ns.Delete()
	w.k.releaseIP(ip)
}

// mountVolumes prepares the volumes, retrying while a ConfigMap, Secret or token is not available
// yet (as the kubelet waits for them); false when the pod is deleted meanwhile.
func (w *podWorker) mountVolumes() bool {
	reported := ""
	for {
		vols, err := w.k.prepareVolumes(w.ctx, w.latest(), w.dir)
		if err == nil {
			w.mu.Lock()
			w.vols = vols
			w.mu.Unlock()
			return true
		}
		if err.Error() != reported {
			reported = err.Error()
			w.k.event(w.latest(), corev1.EventTypeWarning, "FailedMount", err.Error())
		}
		if !w.sleep(500 * time.Millisecond) {
			return false
		}
	}
}

// sleep waits d, or less when the pod is being deleted or killed; false then.
func (w *podWorker) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		if w.deleting() {
			return false
		}
		select {
		case <-t.C:
			return true
		case <-w.updated:
		case <-w.ctx.Done():
			return false
		}
	}
}

// runInit runs an init container: a sidecar is started and left running once started (startup
// probe passed); another runs to completion, again after a failure unless the pod's
// restartPolicy is Never (the pod then fails). False when the pod cannot go on.
func (w *podWorker) runInit(c *container) bool {
	if c.sidecar {
		c.supervise()
		for !c.isStarted() {
			if final, _ := c.finalState(); final {
				return false
			}
			if !w.sleep(100 * time.Millisecond) {
				return false
			}
		}
		return true
	}
	for attempt := 0; ; attempt++ {
		code, err := c.runOnce()
		if w.deleting() || w.ctx.Err() != nil {
			return false
		}
		if err == nil && code == 0 {
			return true
		}
		if w.latest().Spec.RestartPolicy == corev1.RestartPolicyNever {
			msg := fmt.Sprintf("init container %s exited with code %d", c.spec.Name, code)
			if err != nil {
				msg = fmt.Sprintf("init container %s: %v", c.spec.Name, err)
			}
			w.fail("InitContainerFailed", msg)
			return false
		}
		if !w.sleep(w.k.backoff(attempt)) {
			return false
		}
	}
}

// backoff is the wait before restart number n (from 0): 1 s doubling, capped.
func (k *Kubelet) backoff(n int) time.Duration {
	d := time.Second << min(n, 10)
	return min(d, k.opts.MaxRestartBackoff)
}

// gracePeriod is the pod's termination grace period: the deletion's, else the spec's, else 30 s.
func (w *podWorker) gracePeriod() time.Duration {
	pod := w.latest()
	if pod.DeletionGracePeriodSeconds != nil {
		return time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
	}
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		return time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	}
	return 30 * time.Second
}

// terminate stops the pod for its deletion: each container's preStop sleep hook, then SIGTERM to
// the containers, then, once they have exited, to the sidecars in reverse order; SIGKILL to
// whatever runs at the end of the grace period (which the hooks count in, as the kubelet's do).
// Then the pod is removed from the API server.
func (w *podWorker) terminate() {
	deadline := time.Now().Add(w.gracePeriod())
	var wg sync.WaitGroup
	for _, c := range w.mains {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ps := preStop(c.spec); ps != nil && ps.Sleep != nil {
				select {
				case <-time.After(min(time.Duration(ps.Sleep.Seconds)*time.Second, time.Until(deadline))):
				case <-w.ctx.Done():
				}
			}
			c.stop(deadline)
		}()
	}
	wg.Wait()
	w.stopSidecars(deadline)
	w.teardown()
	pod := w.latest()
	zero := int64(0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := w.k.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero,
		Preconditions: &metav1.Preconditions{UID: &pod.UID}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		w.k.event(pod, corev1.EventTypeWarning, "FailedDelete", err.Error())
	}
}

// stopSidecars stops the native sidecars in reverse order.
func (w *podWorker) stopSidecars(deadline time.Time) {
	for i := len(w.inits) - 1; i >= 0; i-- {
		if w.inits[i].sidecar {
			w.inits[i].stop(deadline)
		}
	}
}

// kill stops everything at once (the pod is gone, or the test ends).
func (w *podWorker) kill() {
	deadline := time.Now().Add(2 * time.Second)
	var wg sync.WaitGroup
	for _, c := range append(append([]*container{}, w.inits...), w.mains...) {
		wg.Add(1)
		go func() { defer wg.Done(); c.stop(deadline) }()
	}
	wg.Wait()
}

// awaitDeletion waits for the pod's deletion (or the end), then terminates it.
func (w *podWorker) awaitDeletion() {
	w.teardown()
	w.changed()
	for !w.deleting() {
		select {
		case <-w.updated:
		case <-w.ctx.Done():
			w.kill()
			return
		}
	}
	w.terminate()
}

// fail ends the pod in phase Failed.
func (w *podWorker) fail(reason, msg string) {
	w.mu.Lock()
	w.phase, w.reason, w.msg = corev1.PodFailed, reason, msg
	w.mu.Unlock()
	w.kill()
	w.changed()
}

// finish ends the pod in phase Succeeded (all containers exited 0) or Failed.
func (w *podWorker) finish(ok bool) {
	w.mu.Lock()
	w.phase = corev1.PodFailed
	if ok {
		w.phase = corev1.PodSucceeded
	}
	w.mu.Unlock()
	w.changed()
}

// statusLoop writes the pod's status whenever it changed, until the worker ends.
func (w *podWorker) statusLoop() {
	for {
		select {
		case <-w.dirty:
		case <-w.statusDone:
			w.writeStatus()
			return
		}
		w.writeStatus()
	}
}

func (w *podWorker) cancelStatus() { close(w.statusDone) }

// writeStatus puts the current status on the latest version of the pod.
func (w *podWorker) writeStatus() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pods := w.k.client.CoreV1().Pods(w.latest().Namespace)
	for attempt := 0; attempt < 5; attempt++ {
		cur, err := pods.Get(ctx, w.latest().Name, metav1.GetOptions{})
		if err != nil || cur.UID != w.latest().UID {
			return
		}
		cur.Status = w.status(cur.Status)
		if _, err = pods.UpdateStatus(ctx, cur, metav1.UpdateOptions{}); err == nil || !apierrors.IsConflict(err) {
			return
		}
	}
}

// status computes the pod's status from its containers.
func (w *podWorker) status(old corev1.PodStatus) corev1.PodStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := metav1.Now()
	s := corev1.PodStatus{Phase: corev1.PodPending, HostIP: w.k.Address.String(), HostIPs: []corev1.HostIP{{IP: w.k.Address.String()}},
		StartTime: &w.startTime, QOSClass: old.QOSClass, Reason: w.reason, Message: w.msg}
	if w.ip.IsValid() {
		s.PodIP = w.ip.String()
		s.PodIPs = []corev1.PodIP{{IP: s.PodIP}}
	}
	for _, c := range w.inits {
		s.InitContainerStatuses = append(s.InitContainerStatuses, c.status(w.initialized))
	}
	running, sidecarsReady, containersReady := false, true, true
	for _, c := range w.mains {
		cs := c.status(w.initialized)
		s.ContainerStatuses = append(s.ContainerStatuses, cs)
		running = running || cs.State.Running != nil
		containersReady = containersReady && cs.Ready
	}
	for _, c := range w.inits {
		if c.sidecar {
			sidecarsReady = sidecarsReady && c.isReady()
		}
	}
	switch {
	case w.phase != "":
		s.Phase = w.phase
	case w.initialized && (running || len(w.mains) > 0 && w.anyStarted()):
		s.Phase = corev1.PodRunning
	}
	cond := func(t corev1.PodConditionType, ok bool, reason string) corev1.PodCondition {
		st := corev1.ConditionFalse
		if ok {
			st, reason = corev1.ConditionTrue, ""
		}
		c := corev1.PodCondition{Type: t, Status: st, Reason: reason, LastTransitionTime: now}
		for _, o := range old.Conditions {
			if o.Type == t && o.Status == st {
				c.LastTransitionTime = o.LastTransitionTime
			}
		}
		return c
	}
	terminal := s.Phase == corev1.PodSucceeded || s.Phase == corev1.PodFailed
	ready := w.initialized && containersReady && sidecarsReady && !terminal
	initReason := "ContainersNotInitialized"
	if terminal && s.Phase == corev1.PodSucceeded {
		initReason = "PodCompleted"
	}
	s.Conditions = []corev1.PodCondition{
		cond(corev1.PodReadyToStartContainers, w.ns != nil, ""),
		cond(corev1.PodInitialized, w.initialized, initReason),
		cond(corev1.ContainersReady, w.initialized && containersReady && !terminal, "ContainersNotReady"),
		cond(corev1.PodReady, ready, "ContainersNotReady"),
		cond(corev1.PodScheduled, true, ""),
	}
	return s
}

func (w *podWorker) anyStarted() bool {
	for _, c := range w.mains {
		if c.everStarted() {
			return true
		}
	}
	return false
}

// containerID names a process as a container runtime would.
func containerID(pid int) string { return "strait-kubelet://" + strconv.Itoa(pid) }
