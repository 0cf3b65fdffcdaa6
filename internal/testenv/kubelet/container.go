package kubelet

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// container is one container of a pod and its runs.
type container struct {
	w       *podWorker
	spec    corev1.Container
	init    bool // a plain init container: runs to completion
	sidecar bool // a native sidecar: an init container with restartPolicy Always

	mu          sync.Mutex
	proc        *process
	supervising bool
	stopping    bool
	stopCh      chan struct{} // closed when stop is asked
	superDone   chan struct{} // closed when the supervision loop has returned
	started     bool          // the current run's startup probe passed (or it has none)
	ready       bool
	everRan     bool
	final       bool // exited and will not run again
	restarts    int32
	startedAt   metav1.Time
	lastTerm    *corev1.ContainerStateTerminated
	startErr    string
}

// start starts one run of the container.
func (c *container) start() (*process, error) {
	w := c.w
	pod := w.latest()
	l, err := w.k.launch(c.spec)
	if err != nil {
		return nil, err
	}
	argv := l.argv
	env, vars, err := environment(pod, c.spec, w.k.proxy.env(), l.env)
	if err != nil {
		return nil, err
	}
	for i := range argv[1:] {
		argv[i+1] = expand(argv[i+1], vars)
	}
	w.mu.Lock()
	vols, dir, ns := w.vols, w.dir, w.ns
	w.mu.Unlock()
	if ns == nil {
		return nil, fmt.Errorf("the pod has no network namespace")
	}
	mounts := append(mountArgs(c.spec, vols), filepath.Join(dir, "resolv.conf"), "/etc/resolv.conf", "ro")
	if l.root != "" {
		mounts = append(mounts, filepath.Join(dir, "hosts"), "/etc/hosts", "ro", "proc", "/proc", "proc", "/dev", "/dev", "rbind")
		for i := 1; i < len(mounts); i += 3 {
			target, err := chrootMountPoint(l.root, mounts[i], mounts[i-1], mounts[i+1])
			if err != nil {
				return nil, err
			}
			mounts[i] = target
		}
	} else {
		for i := 1; i < len(mounts); i += 3 {
			if err := w.k.mountPoint(mounts[i]); err != nil {
				return nil, err
			}
		}
	}
	uid, gid := runAs(pod, c.spec)
	return startProcess(ns.Path(), mounts, uid, gid, env, argv, l.dir, l.root, filepath.Join(dir, c.spec.Name+".log"))
}

// began records a started run.
func (c *container) began(p *process) {
	c.mu.Lock()
	c.proc, c.everRan, c.startedAt, c.startErr = p, true, metav1.Now(), ""
	c.started, c.ready = false, false
	c.mu.Unlock()
	c.w.changed()
}

// ended records a run's exit (code), final when the container will not run again.
func (c *container) ended(code int, startErr error, final bool) {
	now := metav1.Now()
	reason := "Completed"
	if code != 0 {
		reason = "Error"
	}
	c.mu.Lock()
	t := &corev1.ContainerStateTerminated{ExitCode: int32(code), Reason: reason, StartedAt: c.startedAt, FinishedAt: now}
	if startErr != nil {
		t.Reason, t.Message, c.startErr = "StartError", startErr.Error(), startErr.Error()
	}
	c.proc, c.lastTerm, c.final, c.started, c.ready = nil, t, final, false, false
	c.mu.Unlock()
	notify(c.w.exited)
	c.w.changed()
}

// markFinal records that the container, waiting to restart, will not run again.
func (c *container) markFinal() {
	c.mu.Lock()
	c.final = true
	c.mu.Unlock()
	notify(c.w.exited)
	c.w.changed()
}

// runOnce runs a plain init container to its end and returns its exit code.
func (c *container) runOnce() (int, error) {
	p, err := c.start()
	if err != nil {
		c.ended(128, err, false)
		return 128, err
	}
	c.began(p)
	for running := true; running; {
		select {
		case <-p.done:
			running = false
		case <-c.w.updated:
			if c.w.deleting() { // the pod is being deleted: stop it within the grace period
				p.stop(time.Now().Add(c.w.gracePeriod()), c.w.ctx.Done())
			}
		case <-c.w.ctx.Done():
			p.stop(time.Now(), nil)
		}
	}
	c.ended(p.exitCode, nil, p.exitCode == 0)
	return p.exitCode, nil
}

// supervise runs the container in the background, restarting it as its restart policy says, with
// its probes, until it stops for good or stop is called.
func (c *container) supervise() {
	c.mu.Lock()
	c.supervising, c.stopCh, c.superDone = true, make(chan struct{}), make(chan struct{})
	stopCh, superDone := c.stopCh, c.superDone
	c.mu.Unlock()
	go func() {
		defer close(superDone)
		for n := 0; ; n++ {
			p, err := c.start()
			code := 128
			if err == nil {
				c.began(p)
				probeCtx, cancel := context.WithCancel(c.w.ctx)
				go c.probe(probeCtx, p)
				<-p.done
				cancel()
				code = p.exitCode
			}
			c.mu.Lock()
			stopping := c.stopping
			c.mu.Unlock()
			again := !stopping && c.restartAfter(code)
			c.ended(code, err, !again)
			if !again {
				return
			}
			select {
			case <-time.After(c.w.k.backoff(n)):
			case <-stopCh:
				c.markFinal()
				return
			case <-c.w.ctx.Done():
				c.markFinal()
				return
			}
			c.mu.Lock()
			c.restarts++
			c.mu.Unlock()
		}
	}()
}

// restartAfter applies the restart policy to an exit with code.
func (c *container) restartAfter(code int) bool {
	if c.sidecar {
		return true
	}
	switch c.w.latest().Spec.RestartPolicy {
	case corev1.RestartPolicyNever:
		return false
	case corev1.RestartPolicyOnFailure:
		return code != 0
	}
	return true
}

// probe runs the startup probe until it passes (restarting the container when it fails its
// threshold), then the readiness and liveness probes for the rest of the run.
func (c *container) probe(ctx context.Context, p *process) {
	ip := c.w.latest().Status.PodIP
	max := c.w.k.opts.MaxProbePeriod
	if sp := c.spec.StartupProbe; sp != nil {
		if !c.probeLoop(ctx, sp, ip, timing(sp, max), func(ok bool) bool { return !ok }, func() {
			p.stop(time.Now().Add(c.w.gracePeriod()), c.w.ctx.Done())
		}) {
			return
		}
	}
	c.mu.Lock()
	c.started = true
	c.ready = c.spec.ReadinessProbe == nil
	c.mu.Unlock()
	c.w.changed()
	if lp := c.spec.LivenessProbe; lp != nil {
		go c.probeLoop(ctx, lp, ip, timing(lp, max), func(bool) bool { return true }, func() {
			p.stop(time.Now().Add(c.w.gracePeriod()), c.w.ctx.Done())
		})
	}
	if rp := c.spec.ReadinessProbe; rp != nil {
		c.probeLoop(ctx, rp, ip, timing(rp, max), func(ok bool) bool {
			c.mu.Lock()
			changed := c.ready != ok
			c.ready = ok
			c.mu.Unlock()
			if changed {
				c.w.changed()
			}
			return true
		}, nil)
	}
}

// probeLoop runs a probe every period and calls result with true after success-threshold
// successes in a row and false after failure-threshold failures in a row; it goes on while result
// returns true. When failure is set, failing the threshold calls it and ends the loop. It reports
// whether the probe passed.
func (c *container) probeLoop(ctx context.Context, p *corev1.Probe, ip string, t probeTiming, result func(ok bool) bool, failure func()) bool {
	if t.initialDelay > 0 {
		select {
		case <-time.After(t.initialDelay):
		case <-ctx.Done():
			return false
		}
	}
	succ, fails := 0, 0
	for {
		if err := runProbe(ctx, p, ip, c.spec); err == nil {
			succ, fails = succ+1, 0
			if succ >= t.success && !result(true) {
				return true
			}
		} else {
			succ, fails = 0, fails+1
			if fails >= t.failure {
				if failure != nil {
					failure()
					return false
				}
				if !result(false) {
					return false
				}
			}
		}
		select {
		case <-time.After(t.period):
		case <-ctx.Done():
			return false
		}
	}
}

// stop ends the container: SIGTERM, SIGKILL at deadline; no restart follows.
func (c *container) stop(deadline time.Time) {
	c.mu.Lock()
	c.stopping = true
	p, stopCh, superDone := c.proc, c.stopCh, c.superDone
	if stopCh != nil {
		select {
		case <-stopCh:
		default:
			close(stopCh)
		}
	}
	c.mu.Unlock()
	if p != nil {
		p.stop(deadline, c.w.ctx.Done()) // the test ends: no grace
	}
	if superDone != nil {
		<-superDone
	}
}

func (c *container) isStarted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.started
}

func (c *container) isReady() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ready
}

func (c *container) everStarted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.everRan
}

// finalState reports whether the container has exited for good, and its last exit code.
func (c *container) finalState() (bool, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.final || c.lastTerm == nil {
		return false, 0
	}
	return true, int(c.lastTerm.ExitCode)
}

// status is the container's status; initialized says whether the pod's init containers are done.
func (c *container) status(initialized bool) corev1.ContainerStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	started := c.started
	cs := corev1.ContainerStatus{Name: c.spec.Name, Image: c.spec.Image, ImageID: c.w.k.imageID(c.spec.Image),
		RestartCount: c.restarts, Ready: c.ready, Started: &started}
	switch {
	case c.proc != nil:
		cs.ContainerID = containerID(c.proc.cmd.Process.Pid)
		cs.State.Running = &corev1.ContainerStateRunning{StartedAt: c.startedAt}
		if c.lastTerm != nil {
			cs.LastTerminationState.Terminated = c.lastTerm
		}
	case c.lastTerm != nil && c.final:
		cs.State.Terminated = c.lastTerm
		cs.Ready = c.init && c.lastTerm.ExitCode == 0
	case c.lastTerm != nil:
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: c.startErr}
		cs.LastTerminationState.Terminated = c.lastTerm
	case !initialized && !c.init && !c.sidecar:
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "PodInitializing"}
	default:
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
	}
	return cs
}
