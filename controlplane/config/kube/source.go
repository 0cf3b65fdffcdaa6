// Package kube is Strait's Kubernetes config source (straitd --kubeconfig): it watches the Istio
// custom resources of every kind Strait decodes (and the Secrets that can hold Gateway
// credentials: types kubernetes.io/tls and Opaque)
// through client-go informers, in all namespaces or a configured set, and serves them as
// config.Objects.
//
// Each object goes through the same strict decoder and validation as a file or `strait apply`
// (config.Load), so Kubernetes adds no second reading of Istio's API: an object the API server
// stored but Strait refuses keeps its last good version serving, and the error, naming the
// field, is reported by Errors (and so in straitd's log and /debug/configz). A deleted object
// goes away.
//
// The informers are dynamic (unstructured): the objects reach the decoder as the JSON the API
// server holds, exactly like a document of a file, without a typed client's own decoding in
// between.
package kube

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/config/kube/crds"
	"github.com/strait-mesh/strait/controlplane/config/validationmetrics"
)

// Origin is the config.Object Origin (and config.Error Origin) of what this source serves.
const Origin = "kubernetes"

// secretTypes are the types of the Secrets read: those that can hold Gateway credentials
// (config.SecretTypeTLS, and Opaque for Istio's generic cert/key/cacert layout). Service-account
// tokens, registry credentials and the like are never read.
var secretTypes = []string{config.SecretTypeTLS, config.SecretTypeOpaque}

// discoveryTimeout bounds each discovery request.
const discoveryTimeout = 30 * time.Second

// Options configure a Source. The zero value is usable.
type Options struct {
	// Logger receives sync results and newly found errors; nil means slog.Default().
	Logger *slog.Logger
	// Namespaces, when not empty, limits the source to these namespaces; by default it watches
	// all of them.
	Namespaces []string
	// Debounce is how long the source waits for more changes after an event before publishing
	// (default 100ms); MaxDelay bounds how long a stream of events can delay it (default 1s).
	Debounce, MaxDelay time.Duration
	// Validation, when set, counts objects as they are validated (galley_validation_*).
	Validation *validationmetrics.Counters
	// WriteStatus writes a status condition (ConditionType) on each object Strait refuses,
	// naming the fields, and turns it to "True" once the object is mended. It needs the
	// permission to patch the kinds' status subresources.
	WriteStatus bool
	// StatusRunner, when set, runs the status writer instead of Run: straitd hands it to its
	// leader election, so that only the replica holding the lease writes status (run is started
	// each time it becomes the leader, with a context that ends when it stops). The writes
	// queued meanwhile, the latest per object, are kept for a later term; a write that the
	// object already carries (the leader wrote it) is dropped from the queue.
	StatusRunner func(name string, run func(ctx context.Context))
}

// resource is one kind the source watches.
type resource struct {
	kind       config.Kind
	gvr        schema.GroupVersionResource
	apiVersion string // what the informer's objects carry, e.g. "networking.istio.io/v1"
	selector   string // field selector, "" for none
}

// entry is the state of one object: its last good version and its current errors.
type entry struct {
	good *config.Object
	errs []error
}

// Source serves the Istio objects of a Kubernetes cluster. It is safe for concurrent use; List
// and Errors may be called while Run is running.
type Source struct {
	client dynamic.Interface
	disc   discovery.DiscoveryInterface
	opts   Options
	log    *slog.Logger
	synced chan struct{}

	// pmu guards pending: the objects changed since the last publish (nil: deleted).
	pmu     sync.Mutex
	pending map[config.Key]*unstructured.Unstructured
	kick    chan struct{}

	state  map[config.Key]*entry                       // owned by Run's goroutine
	gvrs   map[config.Kind]schema.GroupVersionResource // custom resources' APIs, set by Run
	status *statusWriter                               // nil unless Options.WriteStatus

	mu      sync.RWMutex
	objs    []*config.Object
	errs    []error
	missing []error // kinds whose resource the API server does not serve
	started bool
}

var _ config.Source = (*Source)(nil)

// New returns a source reading the cluster cfg points at. It contacts nothing: Run starts the
// informers.
func New(cfg *rest.Config, opts Options) (*Source, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Debounce <= 0 {
		opts.Debounce = 100 * time.Millisecond
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = time.Second
	}
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	discCfg := rest.CopyConfig(cfg)
	discCfg.Timeout = discoveryTimeout
	disc, err := discovery.NewDiscoveryClientForConfig(discCfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes discovery client: %w", err)
	}
	var status *statusWriter
	if opts.WriteStatus {
		status = newStatusWriter(client, opts.Logger.With("source", Origin))
		if opts.StatusRunner != nil {
			opts.StatusRunner("status conditions", status.run)
		}
	}
	return &Source{
		status:  status,
		gvrs:    map[config.Kind]schema.GroupVersionResource{},
		client:  client,
		disc:    disc,
		opts:    opts,
		log:     opts.Logger.With("source", Origin),
		synced:  make(chan struct{}),
		pending: map[config.Key]*unstructured.Unstructured{},
		kick:    make(chan struct{}, 1),
		state:   map[config.Key]*entry{},
	}, nil
}

// List returns the accepted objects sorted by kind, namespace and name. The slice and the objects
// are shared: do not modify them.
func (s *Source) List() []*config.Object {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.objs
}

// Errors returns the current errors: objects that do not decode or validate (each a
// *config.Error naming the object and the field) and kinds the API server does not serve.
func (s *Source) Errors() []error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return append(append([]error(nil), s.missing...), s.errs...)
}

// Synced is closed once Run has read every watched kind from the API server and published it.
// straitd waits for it before serving its first snapshot, so that proxies never get a mesh
// without its Kubernetes config.
func (s *Source) Synced() <-chan struct{} { return s.synced }

// Run discovers which kinds the API server serves (trying again while it cannot be reached),
// starts an informer for each (per namespace
// when Options.Namespaces is set), publishes the objects once all have synced, and then
// publishes changes (debounced), calling onChange after each publish that changed the accepted
// objects or the errors. It returns nil when ctx is done.
func (s *Source) Run(ctx context.Context, onChange func()) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("kubernetes config source: Run called twice")
	}
	s.started = true
	s.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var resources []resource
	var missing []error
	for wait := time.Second; ; wait = min(2*wait, 30*time.Second) {
		var err error
		if resources, missing, err = s.discover(); err == nil {
			break
		}
		// The API server may not be up yet: keep trying, as the informers would.
		s.log.Warn("kubernetes discovery failed; retrying", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
	for _, e := range missing {
		s.log.Warn("kind not read", "err", e)
	}
	s.mu.Lock()
	s.missing = missing
	s.mu.Unlock()
	for _, r := range resources {
		if r.kind != config.Secret { // no status subresource
			s.gvrs[r.kind] = r.gvr
		}
	}
	if s.status != nil && s.opts.StatusRunner == nil {
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.status.run(ctx)
		}()
		defer func() { cancel(); <-done }()
	}

	namespaces := s.opts.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{""} // metav1.NamespaceAll
	}
	var syncs []cache.InformerSynced
	var factories []dynamicinformer.DynamicSharedInformerFactory
	for _, r := range resources {
		for _, ns := range namespaces {
			r := r
			f := dynamicinformer.NewFilteredDynamicSharedInformerFactory(s.client, 0, ns, func(o *metav1.ListOptions) {
				o.FieldSelector = r.selector
			})
			inf := f.ForResource(r.gvr).Informer()
			reg, err := inf.AddEventHandler(s.handler(r))
			if err != nil {
				return fmt.Errorf("watching %s: %w", r.gvr.Resource, err)
			}
			syncs = append(syncs, reg.HasSynced)
			factories = append(factories, f)
		}
	}
	for _, f := range factories {
		f.Start(ctx.Done())
	}
	defer func() {
		cancel() // Shutdown waits for the informers, which stop with ctx
		for _, f := range factories {
			f.Shutdown()
		}
	}()
	start := time.Now()
	if !cache.WaitForCacheSync(ctx.Done(), syncs...) {
		return nil // ctx done
	}
	s.publish()
	close(s.synced)
	s.log.Info("kubernetes config synced", "kinds", len(resources), "namespaces", strings.Join(s.opts.Namespaces, ","),
		"objects", len(s.List()), "errors", len(s.Errors()), "took", time.Since(start).Round(time.Millisecond))
	if onChange != nil {
		onChange()
	}

	var (
		timer  *time.Timer
		timerC <-chan time.Time
		first  time.Time
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.kick:
			now := time.Now()
			if timer == nil {
				first = now
				timer = time.NewTimer(s.opts.Debounce)
				timerC = timer.C
				continue
			}
			wait := min(s.opts.Debounce, max(s.opts.MaxDelay-now.Sub(first), 0))
			timer.Reset(wait)
		case <-timerC:
			timer, timerC = nil, nil
			if s.publish() && onChange != nil {
				onChange()
			}
		}
	}
}

// discover returns the kinds to watch and an error for each kind the API server does not serve
// (its CRD is not installed).
func (s *Source) discover() ([]resource, []error, error) {
	defs, err := crds.Resources()
	if err != nil {
		return nil, nil, err
	}
	var want []resource
	for _, typ := range secretTypes {
		want = append(want, resource{kind: config.Secret, gvr: schema.GroupVersionResource{Version: "v1", Resource: "secrets"},
			apiVersion: "v1", selector: "type=" + typ})
	}
	for _, d := range defs {
		// The version the decoder prefers, which the CRD serves (checked by the crds tests).
		v := strings.TrimPrefix(config.DefaultAPIVersionFor(d.Kind), d.Group+"/")
		want = append(want, resource{kind: d.Kind, gvr: schema.GroupVersionResource{Group: d.Group, Version: v, Resource: d.Plural},
			apiVersion: d.Group + "/" + v})
	}
	var out []resource
	var missing []error
	served := map[string]map[string]bool{} // by group/version
	for _, r := range want {
		gv := r.gvr.GroupVersion().String()
		if served[gv] == nil {
			served[gv] = map[string]bool{}
			list, err := s.disc.ServerResourcesForGroupVersion(gv)
			if err != nil && !apierrors.IsNotFound(err) {
				return nil, nil, fmt.Errorf("discovering %s: %w", gv, err)
			}
			if list != nil {
				for _, ar := range list.APIResources {
					served[gv][ar.Name] = true
				}
			}
		}
		if !served[gv][r.gvr.Resource] {
			missing = append(missing, &config.Error{Origin: Origin, Kind: r.kind,
				Msg: fmt.Sprintf("the API server does not serve %s %s (is its CustomResourceDefinition installed?): %s objects are not read", gv, r.gvr.Resource, r.kind)})
			continue
		}
		out = append(out, r)
	}
	return out, missing, nil
}

// handler queues the informer's events for r.
func (s *Source) handler(r resource) cache.ResourceEventHandler {
	queue := func(obj any, deleted bool) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj, deleted = d.Obj, true
		}
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return
		}
		k := config.Key{Kind: r.kind, Namespace: u.GetNamespace(), Name: u.GetName()}
		s.pmu.Lock()
		if deleted {
			s.pending[k] = nil
		} else {
			if u.GetAPIVersion() == "" {
				u = &unstructured.Unstructured{Object: shallowCopy(u.Object)}
				u.SetAPIVersion(r.apiVersion)
				u.SetKind(string(r.kind))
			}
			s.pending[k] = u
		}
		s.pmu.Unlock()
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { queue(obj, false) },
		UpdateFunc: func(_, obj any) { queue(obj, false) },
		DeleteFunc: func(obj any) { queue(obj, true) },
	}
}

// publish decodes the pending objects and publishes the result, reporting whether the accepted
// objects or the errors changed.
func (s *Source) publish() bool {
	s.pmu.Lock()
	pending := s.pending
	s.pending = map[config.Key]*unstructured.Unstructured{}
	s.pmu.Unlock()
	if len(pending) == 0 {
		return false
	}
	changed := false
	var newErrs []error
	for k, u := range pending {
		old := s.state[k]
		if u == nil {
			if old != nil {
				delete(s.state, k)
				changed = true
			}
			if s.status != nil {
				s.status.forget(k)
			}
			continue
		}
		if old != nil && old.good != nil && old.errs == nil && old.good.ResourceVersion == u.GetResourceVersion() {
			continue // a resync or a relist of what serves
		}
		obj, errs := s.decode(k, u)
		if gvr, ok := s.gvrs[k.Kind]; ok && s.status != nil {
			s.status.update(k, gvr, u, errs)
		}
		e := &entry{errs: errs}
		if old != nil {
			e.good = old.good // last known good
		}
		if obj != nil {
			e.good = obj
		}
		s.state[k] = e
		newErrs = append(newErrs, errs...)
		changed = true
	}
	if !changed {
		return false
	}
	for _, e := range newErrs {
		s.log.Warn("rejected config", "err", e)
	}
	objs := make([]*config.Object, 0, len(s.state))
	var errs []error
	for _, e := range s.state {
		if e.good != nil {
			objs = append(objs, e.good)
		}
		errs = append(errs, e.errs...)
	}
	slices.SortFunc(objs, func(a, b *config.Object) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	slices.SortStableFunc(errs, func(a, b error) int { return cmp.Compare(a.Error(), b.Error()) })
	s.mu.Lock()
	s.objs, s.errs = objs, errs
	s.mu.Unlock()
	return true
}

// decode runs an object through the strict decoder and validation. Its errors name the object
// and the field; they carry no line (the API server's JSON is nobody's file).
func (s *Source) decode(k config.Key, u *unstructured.Unstructured) (*config.Object, []error) {
	js, err := json.Marshal(u.Object)
	if err != nil {
		return nil, []error{&config.Error{Origin: Origin, Kind: k.Kind, Namespace: k.Namespace, Name: k.Name, Msg: fmt.Sprintf("encoding object: %v", err)}}
	}
	objs, errs := config.Load(Origin, js)
	s.opts.Validation.Record(objs, errs)
	for _, e := range errs {
		var ce *config.Error
		if errors.As(e, &ce) {
			ce.Doc, ce.Line = 0, 0
			if ce.Name == "" {
				ce.Kind, ce.Namespace, ce.Name = k.Kind, k.Namespace, k.Name
			}
		}
	}
	if len(errs) > 0 || len(objs) != 1 {
		if len(errs) == 0 {
			errs = []error{&config.Error{Origin: Origin, Kind: k.Kind, Namespace: k.Namespace, Name: k.Name, Msg: "not one object"}}
		}
		return nil, errs
	}
	o := objs[0]
	if o.Key() != k {
		return nil, []error{&config.Error{Origin: Origin, Kind: k.Kind, Namespace: k.Namespace, Name: k.Name,
			Msg: fmt.Sprintf("decoded as %s", o.Key())}}
	}
	return o, nil
}

// shallowCopy copies the top level of an object, so that apiVersion and kind can be set without
// touching the informer's cached object.
func shallowCopy(m map[string]any) map[string]any {
	out := make(map[string]any, len(m)+2)
	for k, v := range m {
		out[k] = v
	}
	return out
}
