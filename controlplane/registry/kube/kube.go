// Package kube is Strait's Kubernetes service registry (straitd --kubeconfig): it watches
// Services, EndpointSlices, Pods and Nodes (for locality) through client-go informers, in all
// namespaces or a configured set, and the system namespace (for the default network), and
// serves each Service as a ServiceEntry config object (see Convert). The
// registry is a config.Source beside the config sources, so Kubernetes services join
// ServiceEntries and WorkloadEntries in the one service registry (controlplane/registry.Build)
// exactly as the other sources' objects do, and DestinationRule subsets select a Service's
// endpoints by their Pods' labels.
package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/strait-mesh/strait/controlplane/config"
)

// Origin is the config.Object Origin prefix of what the registry serves.
const Origin = "kubernetes-registry"

// Options configure a Registry. The zero value is usable.
type Options struct {
	// Logger receives sync results; nil means slog.Default().
	Logger *slog.Logger
	// Namespaces, when not empty, limits the registry to these namespaces (default all).
	Namespaces []string
	// Domain is the cluster DNS domain of the services' host names (default cluster.local).
	Domain string
	// SystemNamespace is the control plane's namespace (default istio-system): as in Istio, its
	// label topology.istio.io/network is the network of the endpoints whose Pod has none.
	SystemNamespace string
	// Debounce is how long the registry waits for more changes after an event before publishing
	// (default 100ms).
	Debounce time.Duration
	// Resync is the informers' resync period (default none).
	Resync time.Duration
}

// Registry serves a cluster's Services as ServiceEntry objects. It is safe for concurrent use;
// List and Errors may be called while Run is running.
type Registry struct {
	client kubernetes.Interface
	opts   Options
	log    *slog.Logger
	synced chan struct{}
	kick   chan struct{}

	mu      sync.RWMutex
	objs    []*config.Object
	started bool
}

var _ config.Source = (*Registry)(nil)

// New returns a registry reading the cluster cfg points at. It contacts nothing: Run starts the
// informers.
func New(cfg *rest.Config, opts Options) (*Registry, error) {
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes registry client: %w", err)
	}
	return NewForClient(client, opts), nil
}

// NewForClient returns a registry using client.
func NewForClient(client kubernetes.Interface, opts Options) *Registry {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Debounce <= 0 {
		opts.Debounce = 100 * time.Millisecond
	}
	if opts.Domain == "" {
		opts.Domain = "cluster.local"
	}
	if opts.SystemNamespace == "" {
		opts.SystemNamespace = "istio-system"
	}
	return &Registry{client: client, opts: opts, log: opts.Logger.With("source", Origin),
		synced: make(chan struct{}), kick: make(chan struct{}, 1)}
}

// List returns the Services as ServiceEntry objects, sorted by namespace and name. The slice and
// the objects are shared: do not modify them.
func (r *Registry) List() []*config.Object {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.objs
}

// Errors returns nothing: every Service converts. Implements config.Source.
func (r *Registry) Errors() []error { return nil }

// Synced is closed once Run has listed every watched resource and published the result.
func (r *Registry) Synced() <-chan struct{} { return r.synced }

// listers are one namespace's (or all namespaces') listers.
type listers struct {
	services interface {
		List(labels.Selector) ([]*corev1.Service, error)
	}
	slices interface {
		List(labels.Selector) ([]*discoveryv1.EndpointSlice, error)
	}
	pods interface {
		List(labels.Selector) ([]*corev1.Pod, error)
	}
}

// clusterListers are the cluster-scoped listers: the nodes, and the system namespace (a list
// of at most one).
type clusterListers struct {
	nodes interface {
		List(labels.Selector) ([]*corev1.Node, error)
	}
	system interface {
		List(labels.Selector) ([]*corev1.Namespace, error)
	}
}

// Run starts the informers, publishes the registry once they have synced and then after changes
// (debounced), calling onChange after each publish that changed the objects. It returns nil when
// ctx is done.
func (r *Registry) Run(ctx context.Context, onChange func()) error {
	r.mu.Lock()
	if r.started {
		r.mu.Unlock()
		return errors.New("kubernetes registry: Run called twice")
	}
	r.started = true
	r.mu.Unlock()

	namespaces := r.opts.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{corev1.NamespaceAll}
	}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { r.changed() },
		UpdateFunc: func(any, any) { r.changed() },
		DeleteFunc: func(any) { r.changed() },
	}
	var all []listers
	var hasSynced []cache.InformerSynced
	var factories []informers.SharedInformerFactory
	for _, ns := range namespaces {
		f := informers.NewSharedInformerFactoryWithOptions(r.client, r.opts.Resync, informers.WithNamespace(ns),
			informers.WithTransform(stripManagedFields))
		svc := f.Core().V1().Services()
		es := f.Discovery().V1().EndpointSlices()
		pod := f.Core().V1().Pods()
		for _, inf := range []cache.SharedIndexInformer{svc.Informer(), es.Informer(), pod.Informer()} {
			if _, err := inf.AddEventHandler(handler); err != nil {
				return fmt.Errorf("kubernetes registry: %w", err)
			}
			hasSynced = append(hasSynced, inf.HasSynced)
		}
		all = append(all, listers{services: svc.Lister(), slices: es.Lister(), pods: pod.Lister()})
		factories = append(factories, f)
	}
	// Nodes are cluster-scoped: one informer whatever the namespaces.
	nf := informers.NewSharedInformerFactoryWithOptions(r.client, r.opts.Resync, informers.WithTransform(stripManagedFields))
	nodeInf := nf.Core().V1().Nodes()
	if _, err := nodeInf.Informer().AddEventHandler(handler); err != nil {
		return fmt.Errorf("kubernetes registry: %w", err)
	}
	// The system namespace, for its network label: one informer on that name only.
	sf := informers.NewSharedInformerFactoryWithOptions(r.client, r.opts.Resync, informers.WithTransform(stripManagedFields),
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
			lo.FieldSelector = fields.OneTermEqualSelector("metadata.name", r.opts.SystemNamespace).String()
		}))
	nsInf := sf.Core().V1().Namespaces()
	if _, err := nsInf.Informer().AddEventHandler(handler); err != nil {
		return fmt.Errorf("kubernetes registry: %w", err)
	}
	hasSynced = append(hasSynced, nodeInf.Informer().HasSynced, nsInf.Informer().HasSynced)
	cluster := clusterListers{nodes: nodeInf.Lister(), system: nsInf.Lister()}
	factories = append(factories, nf, sf)
	for _, f := range factories {
		f.Start(ctx.Done())
	}
	defer func() {
		for _, f := range factories {
			f.Shutdown()
		}
	}()
	start := time.Now()
	if !cache.WaitForCacheSync(ctx.Done(), hasSynced...) {
		return nil
	}
	r.publish(all, cluster)
	close(r.synced)
	r.log.Info("kubernetes registry synced", "services", len(r.List()), "took", time.Since(start).Round(time.Millisecond))
	onChange()

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-r.kick:
			timer.Reset(r.opts.Debounce)
		case <-timer.C:
			if r.publish(all, cluster) {
				onChange()
			}
		}
	}
}

// changed is the informers' event handler: it asks Run to publish.
func (r *Registry) changed() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// publish converts the listers' contents and stores the result; it reports whether it changed.
func (r *Registry) publish(all []listers, cluster clusterListers) bool {
	var in Input
	in.Domain = r.opts.Domain
	var err error
	if in.Nodes, err = cluster.nodes.List(labels.Everything()); err != nil {
		r.log.Warn("kubernetes registry: listing nodes", "error", err)
	}
	system, err := cluster.system.List(labels.Everything())
	if err != nil {
		r.log.Warn("kubernetes registry: listing the system namespace", "error", err)
	}
	for _, ns := range system {
		if ns.Name == r.opts.SystemNamespace {
			in.Network = ns.Labels[LabelNetwork]
		}
	}
	for _, l := range all {
		svcs, err1 := l.services.List(labels.Everything())
		slices, err2 := l.slices.List(labels.Everything())
		pods, err3 := l.pods.List(labels.Everything())
		if err := errors.Join(err1, err2, err3); err != nil {
			r.log.Warn("kubernetes registry: listing", "error", err) // listers read memory: never expected
		}
		in.Services = append(in.Services, svcs...)
		in.EndpointSlices = append(in.EndpointSlices, slices...)
		in.Pods = append(in.Pods, pods...)
	}
	objs := Convert(in)
	r.mu.Lock()
	defer r.mu.Unlock()
	if sameObjects(r.objs, objs) {
		return false
	}
	r.objs = objs
	return true
}

// sameObjects reports whether two conversions are equal, so an event that changes nothing the
// registry uses (a pod's status heartbeat) costs no snapshot.
func sameObjects(a, b []*config.Object) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Namespace != b[i].Namespace ||
			!a[i].CreationTimestamp.Equal(b[i].CreationTimestamp) ||
			!reflect.DeepEqual(a[i].Labels, b[i].Labels) || !reflect.DeepEqual(a[i].Annotations, b[i].Annotations) ||
			!proto.Equal(a[i].Spec, b[i].Spec) {
			return false
		}
	}
	return true
}

// stripManagedFields drops what the registry never reads, to keep the informers' caches small.
func stripManagedFields(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	return obj, nil
}
