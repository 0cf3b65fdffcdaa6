package leader

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/internal/testenv/kubeenv"
)

func TestTimingsValidate(t *testing.T) {
	if err := (Timings{}).Validate(); err != nil {
		t.Errorf("the defaults: %v", err)
	}
	for _, tc := range []struct {
		t    Timings
		want string
	}{
		{Timings{LeaseDuration: 5 * time.Second, RenewDeadline: 5 * time.Second}, "shorter than the lease duration"},
		{Timings{RenewDeadline: 2 * time.Second, RetryPeriod: 2 * time.Second}, "longer than 1.2 retry periods"},
		{Timings{LeaseDuration: 500 * time.Millisecond}, "at least 1s"},
		{Timings{RetryPeriod: -time.Second}, "positive"},
	} {
		if err := tc.t.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.t, err, tc.want)
		}
	}
	t.Setenv("POD_NAME", "")
	if a, b := Identity(), Identity(); a == b {
		t.Errorf("two processes on one host share an identity: %q", a)
	}
	t.Setenv("POD_NAME", "istiod-7d9f-abcde")
	if got := Identity(); got != "istiod-7d9f-abcde" {
		t.Errorf("identity %q, want the pod's name", got)
	}
	if RevisionLease("") != "straitd-leader-default" || RevisionLease("canary") != "straitd-leader-canary" {
		t.Errorf("lease names: %q %q", RevisionLease(""), RevisionLease("canary"))
	}
}

func TestAlwaysRunsWork(t *testing.T) {
	e := Always(slog.New(slog.NewTextHandler(io.Discard, nil)))
	ran := make(chan context.Context, 2)
	e.Go("before", func(ctx context.Context) { ran <- ctx; <-ctx.Done() })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ctx) }()
	<-ran
	e.Go("after", func(ctx context.Context) { ran <- ctx; <-ctx.Done() })
	<-ran
	if !e.Leading() {
		t.Error("Always does not lead")
	}
	cancel()
	<-done
	if e.Leading() {
		t.Error("still leading after Run returned")
	}
}

// replica is one candidate of the test, with its work's state.
type replica struct {
	e       *Elector
	cancel  context.CancelFunc
	done    chan struct{}
	running atomic.Int32 // its singleton work running now
}

// TestElectionOnKubernetes runs two candidates for one Lease on a real API server: exactly one
// runs the work; when the leader dies without releasing the lease (as SIGKILL leaves it), the
// other takes over once the lease runs out; when a leader stops normally it releases the lease
// and the other takes over at once. The work never runs in both at the same time.
func TestElectionOnKubernetes(t *testing.T) {
	c := kubeenv.Start(t, kubeenv.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cs := kubernetes.NewForConfigOrDie(c.Config)
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "istio-system"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	metrics, err := NewMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	timings := Timings{LeaseDuration: 4 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 500 * time.Millisecond}
	var overlap atomic.Int32 // the most replicas ever running the work at once
	var total atomic.Int32
	var mu sync.Mutex
	// start runs a candidate; release false makes it die as SIGKILL does, without releasing the
	// lease.
	start := func(id string, release bool) *replica {
		e, err := New(c.Config, Options{Namespace: "istio-system", Name: RevisionLease(""), Identity: id, Timings: timings,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: metrics})
		if err != nil {
			t.Fatal(err)
		}
		e.lec.ReleaseOnCancel = release
		r := &replica{e: e, done: make(chan struct{})}
		e.Go("work", func(ctx context.Context) {
			r.running.Add(1)
			n := total.Add(1)
			mu.Lock()
			if n > overlap.Load() {
				overlap.Store(n)
			}
			mu.Unlock()
			<-ctx.Done()
			total.Add(-1)
			r.running.Add(-1)
		})
		rctx, rcancel := context.WithCancel(ctx)
		r.cancel = rcancel
		go func() { defer close(r.done); e.Run(rctx) }()
		t.Cleanup(func() { rcancel(); <-r.done })
		return r
	}
	leading := func(r *replica) bool { return r.running.Load() == 1 && r.e.Leading() }
	a := start("straitd-a", false)
	testenv.WaitFor(t, "a leads", 30*time.Second, func() bool { return leading(a) })
	b := start("straitd-b", true)
	testenv.WaitFor(t, "b sees a as the leader", 30*time.Second, func() bool { return b.e.Leader() == "straitd-a" })
	if leading(b) {
		t.Fatal("b leads beside a")
	}
	// Work registered while leading starts at once; in a follower it waits.
	late := make(chan string, 2)
	a.e.Go("late", func(ctx context.Context) { late <- "a"; <-ctx.Done() })
	b.e.Go("late", func(ctx context.Context) { late <- "b"; <-ctx.Done() })
	if got := <-late; got != "a" {
		t.Fatalf("late work ran in %s first", got)
	}

	// a dies: no release (what SIGKILL leaves behind).
	killed := time.Now()
	a.cancel()
	<-a.done
	testenv.WaitFor(t, "b takes over after a died", 60*time.Second, func() bool { return leading(b) })
	t.Logf("takeover after the leader died without releasing the lease (lease %v, retry %v): %v",
		timings.LeaseDuration, timings.RetryPeriod, time.Since(killed).Round(100*time.Millisecond))
	if got := <-late; got != "b" {
		t.Fatalf("late work of b: %s", got)
	}

	// b stops normally: it releases the lease and a new candidate takes it at once.
	a2 := start("straitd-a2", true)
	testenv.WaitFor(t, "a2 sees b as the leader", 30*time.Second, func() bool { return a2.e.Leader() == "straitd-b" })
	stopped := time.Now()
	b.cancel()
	<-b.done
	testenv.WaitFor(t, "a2 takes over after b released the lease", 60*time.Second, func() bool { return leading(a2) })
	t.Logf("takeover after the leader released the lease: %v", time.Since(stopped).Round(100*time.Millisecond))
	if n := overlap.Load(); n != 1 {
		t.Errorf("the work ran in %d replicas at once", n)
	}
	lease, err := cs.CoordinationV1().Leases("istio-system").Get(ctx, RevisionLease(""), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkLease(t, lease, "straitd-a2", 2)
}

func checkLease(t *testing.T, l *coordinationv1.Lease, holder string, transitions int32) {
	t.Helper()
	if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != holder {
		t.Errorf("lease holder %v, want %s", l.Spec.HolderIdentity, holder)
	}
	if l.Spec.LeaseTransitions == nil || *l.Spec.LeaseTransitions != transitions {
		t.Errorf("lease transitions %v, want %d", l.Spec.LeaseTransitions, transitions)
	}
}
