// Package leader runs straitd's singleton work — what must happen once per cluster, not once per
// replica: keeping the webhook configurations' CA bundles current, writing status conditions,
// writing the istio-ca-root-cert ConfigMaps — under a coordination.k8s.io Lease, with client-go's
// leaderelection. Every replica keeps serving xDS, webhooks and the CA; only the holder of the
// lease runs the work registered with Go, each function with a context that ends when the lease
// is lost. A replica that loses the lease stands again as a candidate.
//
// The default timings (DefaultLeaseDuration, DefaultRenewDeadline, DefaultRetryPeriod) make a
// candidate take over within about 12 s of the leader dying without a word (SIGKILL, a lost
// node): the lease runs out LeaseDuration after the candidate last saw it renewed, and candidates
// look every RetryPeriod to 2.2 RetryPeriods (client-go's jitter), so the worst case is
// LeaseDuration + 4.4 RetryPeriods. A leader that stops normally releases the lease, and a
// candidate takes over at its next look (within 2.2 RetryPeriods).
package leader

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"
)

// Default timings of the lease. Istio's istiod holds its leases 30 s; these are shorter so that a
// new leader takes over within 15 s of the old one dying (worst case 8 + 4.4 × 1 = 12.4 s). The
// cost is one lease update a second by the leader and one read every 1 to 2.2 s by each
// candidate.
const (
	DefaultLeaseDuration = 8 * time.Second
	DefaultRenewDeadline = 6 * time.Second
	DefaultRetryPeriod   = time.Second
)

// The leases straitd takes, in its own namespace. Their names are Strait's own, not istiod's, so
// that an istiod and a straitd side by side (a migration) never take each other's leases.
const (
	// StatusLease is shared by every revision: its holder writes the status conditions of the
	// Istio objects, which all revisions read, so that two revisions of different versions never
	// rewrite each other's conditions.
	StatusLease = "straitd-status-leader"
	// revisionLeasePrefix names the lease of one revision (RevisionLease).
	revisionLeasePrefix = "straitd-leader-"
)

// RevisionLease names the lease of a control-plane revision ("" is "default", as Istio names
// its per-revision leases): its holder keeps the revision's own webhook configurations' CA
// bundles current and writes the istio-ca-root-cert ConfigMaps of the revision's namespaces.
func RevisionLease(revision string) string {
	if revision == "" {
		revision = "default"
	}
	return revisionLeasePrefix + revision
}

// Timings of a lease; a zero field takes its default.
type Timings struct {
	// LeaseDuration is how long candidates wait, after they last saw the lease renewed, before
	// they take it.
	LeaseDuration time.Duration
	// RenewDeadline is how long the leader keeps trying to renew before it gives up leading
	// (shorter than LeaseDuration, so that it stops before a candidate may start).
	RenewDeadline time.Duration
	// RetryPeriod is how often the leader renews and candidates look.
	RetryPeriod time.Duration
}

// withDefaults fills in the zero fields.
func (t Timings) withDefaults() Timings {
	if t.LeaseDuration == 0 {
		t.LeaseDuration = DefaultLeaseDuration
	}
	if t.RenewDeadline == 0 {
		t.RenewDeadline = DefaultRenewDeadline
	}
	if t.RetryPeriod == 0 {
		t.RetryPeriod = DefaultRetryPeriod
	}
	return t
}

// Validate checks that the timings can work: positive, the renew deadline shorter than the
// lease, and longer than client-go's jittered retry period.
func (t Timings) Validate() error {
	t = t.withDefaults()
	switch {
	case t.LeaseDuration < time.Second || t.RenewDeadline <= 0 || t.RetryPeriod <= 0:
		return fmt.Errorf("leader election: the lease duration must be at least 1s, the renew deadline and retry period positive (got %v, %v, %v)",
			t.LeaseDuration, t.RenewDeadline, t.RetryPeriod)
	case t.RenewDeadline >= t.LeaseDuration:
		return fmt.Errorf("leader election: the renew deadline (%v) must be shorter than the lease duration (%v)", t.RenewDeadline, t.LeaseDuration)
	case float64(t.RenewDeadline) <= leaderelection.JitterFactor*float64(t.RetryPeriod):
		return fmt.Errorf("leader election: the renew deadline (%v) must be longer than %.1f retry periods (%v)",
			t.RenewDeadline, leaderelection.JitterFactor, t.RetryPeriod)
	}
	return nil
}

// Options configure an Elector.
type Options struct {
	// Namespace and Name locate the Lease (straitd's own namespace).
	Namespace, Name string
	// Identity names this replica in the lease (default: Identity()).
	Identity string
	Timings  Timings
	// Logger receives leadership changes (and client-go's election messages); nil means
	// slog.Default().
	Logger *slog.Logger
	// Metrics, when set, count this elector's leadership changes.
	Metrics *Metrics
}

// Identity returns the default identity of this replica: the pod's name (POD_NAME, set by `strait
// install`'s Deployment from the downward API), else the host name with a random suffix, so
// that two processes on one host never share an identity.
func Identity() string {
	if p := os.Getenv("POD_NAME"); p != "" {
		return p
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "straitd"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return h + "_" + hex.EncodeToString(b[:])
}

// task is singleton work registered with Go.
type task struct {
	name string
	run  func(ctx context.Context)
}

// Elector runs registered work while this replica holds its lease. It is safe for concurrent
// use.
type Elector struct {
	o      Options
	lec    leaderelection.LeaderElectionConfig // nil Lock: no lease, work always runs
	log    *slog.Logger
	mu     sync.Mutex
	tasks  []task
	term   context.Context // while leading: the context of this term's work
	wg     sync.WaitGroup  // this term's running work
	leader string          // last observed holder
}

// New returns an elector on the Lease o.Namespace/o.Name of the cluster cfg points at. It
// contacts nothing until Run.
func New(cfg *rest.Config, o Options) (*Elector, error) {
	if o.Namespace == "" || o.Name == "" {
		return nil, errors.New("leader election: the lease needs a namespace and a name")
	}
	if err := o.Timings.Validate(); err != nil {
		return nil, err
	}
	o.Timings = o.Timings.withDefaults()
	if o.Identity == "" {
		o.Identity = Identity()
	}
	e := newElector(o)
	cfg = rest.CopyConfig(cfg)
	cfg.Timeout = o.Timings.RenewDeadline // one request never outlives the renew deadline
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("leader election: kubernetes client: %w", err)
	}
	e.lec = leaderelection.LeaderElectionConfig{
		Lock: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: o.Namespace, Name: o.Name},
			Client:     client.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: o.Identity},
		},
		LeaseDuration: o.Timings.LeaseDuration,
		RenewDeadline: o.Timings.RenewDeadline,
		RetryPeriod:   o.Timings.RetryPeriod,
		// A replica that stops normally (a rolling update, SIGTERM) hands the lease over at once.
		// Its work sees its context end at the same moment and stops while the release travels
		// to the API server, a candidate looks at most once a RetryPeriod, and the work is
		// idempotent (writes skipped when already there): no harmful overlap.
		ReleaseOnCancel: true,
		Name:            o.Name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: e.startTerm,
			OnStoppedLeading: e.endTerm,
			OnNewLeader:      e.observe,
		},
	}
	return e, nil
}

// Always returns an elector without a lease: its work runs for as long as Run runs (one replica,
// or straitd without Kubernetes).
func Always(log *slog.Logger) *Elector {
	return newElector(Options{Name: "none", Identity: "this replica", Logger: log})
}

func newElector(o Options) *Elector {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Elector{o: o, log: o.Logger.With("component", "leader-election", "lease", o.Namespace+"/"+o.Name, "identity", o.Identity)}
}

// Go registers singleton work: f runs, with a context that ends when this replica stops leading,
// each time it becomes the leader (at once when it leads now). f should return soon after its
// context ends; it may run again in a later term.
func (e *Elector) Go(name string, f func(ctx context.Context)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	t := task{name, f}
	e.tasks = append(e.tasks, t)
	if e.term != nil {
		e.start(e.term, t)
	}
}

// start runs t in the current term; e.mu is held.
func (e *Elector) start(ctx context.Context, t task) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		t.run(ctx)
	}()
}

// Leading reports whether this replica runs the singleton work now.
func (e *Elector) Leading() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.term != nil
}

// Leader returns the identity of the leader last observed ("" before any).
func (e *Elector) Leader() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leader
}

// Identity returns this replica's identity in the lease.
func (e *Elector) Identity() string { return e.o.Identity }

// Run takes part in the election until ctx ends: it runs the work while leading, stops it when
// the lease is lost and stands again. It returns once the work has stopped (and, for a leader,
// the lease was released).
func (e *Elector) Run(ctx context.Context) {
	if e.lec.Lock == nil {
		e.startTerm(ctx)
		<-ctx.Done()
		e.endTerm()
		return
	}
	lctx := klog.NewContext(ctx, logr.FromSlogHandler(e.log.Handler()))
	e.log.Info("standing for leader election", "leaseDuration", e.o.Timings.LeaseDuration,
		"renewDeadline", e.o.Timings.RenewDeadline, "retryPeriod", e.o.Timings.RetryPeriod)
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(e.lec)
		if err != nil { // the configuration was validated by New
			e.log.Error("leader election", "error", err)
			return
		}
		le.Run(lctx) // returns when the lease is lost or ctx ends
		if ctx.Err() == nil {
			e.log.Warn("lost the lease: standing again as a candidate")
		}
	}
}

// startTerm starts the work of a term that ctx bounds (client-go calls it in a goroutine, which
// may run after the term already ended).
func (e *Elector) startTerm(ctx context.Context) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if ctx.Err() != nil {
		return
	}
	e.term = ctx
	e.leader = e.o.Identity
	for _, t := range e.tasks {
		e.start(ctx, t)
	}
	if e.lec.Lock != nil {
		e.log.Info("became the leader: running the singleton work", "work", len(e.tasks))
	}
	e.o.Metrics.record(e.o.Name, true)
}

// endTerm waits for the term's work to stop (its context has ended). client-go calls it whenever
// its Run returns, leading or not.
func (e *Elector) endTerm() {
	e.mu.Lock()
	leading := e.term != nil
	e.term = nil
	e.mu.Unlock()
	e.wg.Wait()
	if leading {
		e.o.Metrics.record(e.o.Name, false)
		if e.lec.Lock != nil {
			e.log.Info("stopped leading: the singleton work stopped")
		}
	}
}

// observe notes a new leader.
func (e *Elector) observe(identity string) {
	e.mu.Lock()
	e.leader = identity
	e.mu.Unlock()
	if identity != e.o.Identity {
		e.log.Info("new leader observed", "leader", identity)
	}
}

// Metrics are the leader election's metrics, shared by a replica's electors.
type Metrics struct {
	leading     *prometheus.GaugeVec
	transitions *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg (nil: not registered):
// strait_leader_election_leading{lease} (1 while this replica leads) and
// strait_leader_election_transitions_total{lease,event} (event "acquired" or "lost").
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		leading: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "strait_leader_election_leading",
			Help: "1 while this straitd replica holds the lease and runs its singleton work, else 0.",
		}, []string{"lease"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_leader_election_transitions_total",
			Help: "Times this straitd replica acquired or lost the lease (event acquired|lost).",
		}, []string{"lease", "event"}),
	}
	if reg == nil {
		return m, nil
	}
	if err := errors.Join(reg.Register(m.leading), reg.Register(m.transitions)); err != nil {
		return nil, fmt.Errorf("registering leader election metrics: %w", err)
	}
	return m, nil
}

// record counts a change of leadership of lease; m may be nil.
func (m *Metrics) record(lease string, leading bool) {
	if m == nil {
		return
	}
	if leading {
		m.leading.WithLabelValues(lease).Set(1)
		m.transitions.WithLabelValues(lease, "acquired").Inc()
		return
	}
	m.leading.WithLabelValues(lease).Set(0)
	m.transitions.WithLabelValues(lease, "lost").Inc()
}
