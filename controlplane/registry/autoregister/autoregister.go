// Package autoregister creates a WorkloadEntry for every proxy that connects with a WorkloadGroup
// reference (node metadata AUTO_REGISTER_GROUP) and removes it a grace period after the proxy
// disconnects, as Istio's WorkloadEntry auto-registration does. The entries are served as a
// config.Source so that the registry builds endpoints from them like any other WorkloadEntry.
//
// Wiring: pass Registry.OnConnect and Registry.OnDisconnect as the xDS server's connection hooks,
// give Lookup a function that finds WorkloadGroups in the current mesh snapshot, and add the
// Registry to the config sources.
package autoregister

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/translate"
	"github.com/strait-mesh/strait/internal/node"
)

// Annotations set on auto-registered entries, Istio's names.
const (
	AnnotationGroup       = "istio.io/autoRegistrationGroup"
	AnnotationController  = "istio.io/workloadController"
	AnnotationConnectedAt = "istio.io/connectedAt"
)

// Origin is the config.Object origin of auto-registered entries.
const Origin = "autoregister"

// DefaultGrace is how long an entry outlives its proxy's disconnection by default.
const DefaultGrace = 10 * time.Second

// Options configure a Registry. Lookup is required.
type Options struct {
	// Lookup finds a WorkloadGroup (an Object whose Spec is *networkingv1alpha3.WorkloadGroup) by
	// namespace and name, typically in the current mesh snapshot. It is called from OnConnect.
	Lookup func(namespace, name string) (*config.Object, bool)
	// ControlPlane identifies this control plane in the istio.io/workloadController annotation.
	ControlPlane string
	// Grace is how long an entry is kept after its last proxy disconnects (default 10 s); a proxy
	// that reconnects within it keeps its entry.
	Grace time.Duration
	// Logger receives registrations and refusals (default slog.Default()).
	Logger *slog.Logger
	// StateFile, when set, keeps the entries across restarts of the control plane, as Istio's
	// entries survive istiod's (they are Kubernetes objects): the entries are written there after
	// every change and restored by New, each with RestoreGrace for its proxy to reconnect. Without
	// it a restarted straitd would serve no endpoint of an auto-registered workload until that
	// workload's proxy reconnects, failing traffic that its proxies could still serve.
	StateFile string
	// RestoreGrace is how long a restored entry waits for its proxy (default: Grace, and at
	// least 30 s, the longest reconnect backoff of strait-proxy).
	RestoreGrace time.Duration

	// afterFunc schedules removals; tests replace it to fire timers by hand.
	afterFunc func(d time.Duration, f func()) (stop func() bool)
}

// Registry holds the auto-registered WorkloadEntries. It implements config.Source; its methods are
// safe for concurrent use.
type Registry struct {
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	entries  map[config.Key]*entry
	byProxy  map[string]config.Key // node ID → entry it holds
	refusals map[string]error      // node ID → why its registration was refused
	version  int64
	changed  chan struct{}
}

// entry is one auto-registered WorkloadEntry and the proxies holding it.
type entry struct {
	obj     *config.Object
	proxies map[string]struct{} // node IDs connected with this entry
	gen     int                 // bumps on every connect and disconnect; stale timers check it
	stop    func() bool         // pending removal, nil if none
}

var _ config.Source = (*Registry)(nil)

// New builds a Registry.
func New(opts Options) (*Registry, error) {
	if opts.Lookup == nil {
		return nil, errors.New("autoregister: Options.Lookup is required")
	}
	if opts.Grace <= 0 {
		opts.Grace = DefaultGrace
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.afterFunc == nil {
		opts.afterFunc = func(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }
	}
	if opts.RestoreGrace <= 0 {
		opts.RestoreGrace = max(opts.Grace, 30*time.Second)
	}
	r := &Registry{
		opts:     opts,
		log:      opts.Logger.With("component", "autoregister"),
		entries:  make(map[config.Key]*entry),
		byProxy:  make(map[string]config.Key),
		refusals: make(map[string]error),
		changed:  make(chan struct{}, 1),
	}
	if opts.StateFile != "" {
		r.restore()
	}
	return r, nil
}

// maxStateFile bounds the state file read back at start.
const maxStateFile = 64 << 20

// restore loads the entries of StateFile, each waiting RestoreGrace for its proxy. A missing file
// is a first start; an unreadable one is logged and ignored (the proxies re-register).
func (r *Registry) restore() {
	data, err := os.ReadFile(r.opts.StateFile)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err == nil && len(data) > maxStateFile {
		err = fmt.Errorf("%d bytes, more than %d", len(data), maxStateFile)
	}
	if err != nil {
		r.log.Warn("not restoring auto-registered workloads", "file", r.opts.StateFile, "err", err)
		return
	}
	objs, errs := config.Decode(r.opts.StateFile, data)
	for _, err := range errs {
		r.log.Warn("not restoring an auto-registered workload", "err", err)
	}
	for _, o := range objs {
		if o.Kind != config.WorkloadEntry {
			continue
		}
		o.Origin = Origin
		key := o.Key()
		r.entries[key] = &entry{obj: o, proxies: map[string]struct{}{},
			stop: r.opts.afterFunc(r.opts.RestoreGrace, func() { r.expire(key, 0) })}
		r.version++
	}
	if len(objs) > 0 {
		r.log.Info("restored auto-registered workloads; each waits for its proxy to reconnect",
			"entries", len(r.entries), "grace", r.opts.RestoreGrace)
	}
}

// persist writes the current entries to StateFile (a Kubernetes List, atomically), so that a
// restarted control plane serves them at once.
func (r *Registry) persist() {
	if r.opts.StateFile == "" {
		return
	}
	items := []json.RawMessage{}
	for _, o := range r.List() {
		b, err := config.MarshalJSON(o)
		if err != nil {
			r.log.Warn("not persisting an auto-registered workload", "entry", o.Key().String(), "err", err)
			continue
		}
		items = append(items, b)
	}
	b, err := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "List", "items": items})
	if err == nil {
		tmp := r.opts.StateFile + ".tmp"
		if err = os.WriteFile(tmp, b, 0o600); err == nil {
			err = os.Rename(tmp, r.opts.StateFile)
		}
	}
	if err != nil {
		r.log.Warn("persisting auto-registered workloads", "file", r.opts.StateFile, "err", err)
	}
}

// SnapshotLookup returns an Options.Lookup that finds WorkloadGroups in the snapshot current()
// returns (which may be nil before the first snapshot is built).
func SnapshotLookup(current func() *mesh.Snapshot) func(namespace, name string) (*config.Object, bool) {
	return func(namespace, name string) (*config.Object, bool) {
		snap := current()
		if snap == nil {
			return nil, false
		}
		for _, o := range snap.Configs[config.WorkloadGroup] {
			if o.Namespace == namespace && o.Name == name {
				return o, true
			}
		}
		return nil, false
	}
}

// EntryName is the name Istio gives the entry of a proxy: "<group>-<ip>[-<network>]" with '.' and
// ':' replaced by '-'.
func EntryName(group, ip, network string) string {
	name := group + "-" + ip
	if network != "" {
		name += "-" + network
	}
	return strings.NewReplacer(".", "-", ":", "-").Replace(name)
}

// OnConnect registers a connecting proxy that names a WorkloadGroup. Proxies without
// AUTO_REGISTER_GROUP are ignored; an unknown group or a proxy without an IP is logged and refused.
// It never blocks on the consumer of the Source.
func (r *Registry) OnConnect(p *translate.Proxy) {
	if p == nil || p.WorkloadGroup == "" {
		return
	}
	id := p.ID.String()
	obj, err := r.build(p)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.refusals[id] = err
		r.log.Warn("refusing auto-registration", "proxy", id, "err", err)
		return
	}
	delete(r.refusals, id)
	key := obj.Key()
	if old, ok := r.byProxy[id]; ok && old != key {
		r.release(id) // the proxy came back with another address or group
	}
	e := r.entries[key]
	if e == nil {
		e = &entry{proxies: make(map[string]struct{})}
		r.entries[key] = e
	}
	if e.stop != nil {
		e.stop()
		e.stop = nil
	}
	e.gen++
	e.proxies[id] = struct{}{}
	r.byProxy[id] = key
	r.version++
	obj.ResourceVersion = strconv.FormatInt(r.version, 10)
	if e.obj != nil {
		obj.CreationTimestamp = e.obj.CreationTimestamp
	}
	e.obj = obj
	r.log.Info("auto-registered workload", "entry", key.String(), "proxy", id, "address", obj.Spec.(*networkingv1alpha3.WorkloadEntry).GetAddress())
	r.notify()
}

// OnDisconnect starts the grace period of the proxy's entry; the entry is removed when it ends
// unless a proxy holding the entry (re)connected.
func (r *Registry) OnDisconnect(p *translate.Proxy) {
	if p == nil || p.WorkloadGroup == "" {
		return
	}
	id := p.ID.String()
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.refusals, id)
	r.release(id)
}

// release drops a proxy's hold on its entry and starts the entry's grace period when no proxy
// holds it any more. Called with r.mu held.
func (r *Registry) release(id string) {
	key, ok := r.byProxy[id]
	if !ok {
		return
	}
	delete(r.byProxy, id)
	e := r.entries[key]
	if e == nil {
		return
	}
	delete(e.proxies, id)
	e.gen++
	if len(e.proxies) > 0 {
		return
	}
	gen := e.gen
	e.stop = r.opts.afterFunc(r.opts.Grace, func() { r.expire(key, gen) })
	r.log.Debug("workload disconnected; entry kept for the grace period", "entry", key.String(), "grace", r.opts.Grace)
}

// expire removes an entry whose grace period ended, unless it was reconnected meanwhile.
func (r *Registry) expire(key config.Key, gen int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.entries[key]
	if e == nil || e.gen != gen || len(e.proxies) > 0 {
		return
	}
	delete(r.entries, key)
	r.version++
	r.log.Info("removed auto-registered workload after its grace period", "entry", key.String())
	r.notify()
}

// notify wakes Run; called with r.mu held.
func (r *Registry) notify() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// build makes the WorkloadEntry of a proxy from its group's template.
func (r *Registry) build(p *translate.Proxy) (*config.Object, error) {
	if len(p.IPs) == 0 {
		return nil, fmt.Errorf("proxy has no IP (node id or %s)", node.MetaInstanceIPs)
	}
	if p.Identity == "" {
		// Anyone who can reach an unauthenticated port could otherwise put an address of their
		// choice into a service's endpoints.
		return nil, fmt.Errorf("auto-registration into WorkloadGroup %s/%s needs a proxy authenticated by its mesh certificate (xDS on straitd's mesh port), not the plaintext xDS port",
			p.Namespace, p.WorkloadGroup)
	}
	g, ok := r.opts.Lookup(p.Namespace, p.WorkloadGroup)
	if !ok || g == nil {
		return nil, fmt.Errorf("WorkloadGroup %s/%s not found", p.Namespace, p.WorkloadGroup)
	}
	wg, ok := g.Spec.(*networkingv1alpha3.WorkloadGroup)
	if !ok {
		return nil, fmt.Errorf("WorkloadGroup %s/%s: spec is %T", p.Namespace, p.WorkloadGroup, g.Spec)
	}
	we := &networkingv1alpha3.WorkloadEntry{}
	if wg.GetTemplate() != nil {
		we = proto.Clone(wg.GetTemplate()).(*networkingv1alpha3.WorkloadEntry)
	}
	// The proxy's namespace and service account are those its certificate proved (the xDS
	// server binds them); the group's workloads must run as the group's service account.
	if sa := we.GetServiceAccount(); sa != "" && sa != p.ServiceAccount {
		return nil, fmt.Errorf("WorkloadGroup %s/%s runs as service account %q; proxy %s is %s",
			p.Namespace, p.WorkloadGroup, sa, p.ID.String(), p.Identity)
	}
	we.Address = p.IPs[0]
	labels := map[string]string{}
	maps.Copy(labels, wg.GetMetadata().GetLabels())
	maps.Copy(labels, we.GetLabels())
	maps.Copy(labels, p.Labels)
	we.Labels = labels
	network := metaString(p, node.MetaNetwork)
	if network != "" {
		we.Network = network
	}
	if l := p.Node.GetLocality(); l.GetRegion() != "" {
		we.Locality = strings.TrimRight(l.GetRegion()+"/"+l.GetZone()+"/"+l.GetSubZone(), "/")
	}
	if we.ServiceAccount == "" {
		we.ServiceAccount = p.ServiceAccount
	}
	annotations := map[string]string{}
	maps.Copy(annotations, wg.GetMetadata().GetAnnotations())
	annotations[AnnotationGroup] = p.WorkloadGroup
	annotations[AnnotationConnectedAt] = time.Now().UTC().Format(time.RFC3339Nano)
	if r.opts.ControlPlane != "" {
		annotations[AnnotationController] = r.opts.ControlPlane
	}
	return &config.Object{
		Kind:       config.WorkloadEntry,
		APIVersion: "networking.istio.io/v1",
		Meta: config.Meta{
			Name:              EntryName(p.WorkloadGroup, p.IPs[0], network),
			Namespace:         p.Namespace,
			Labels:            maps.Clone(labels),
			Annotations:       annotations,
			CreationTimestamp: time.Now().UTC(),
		},
		Spec:   we,
		Origin: Origin,
	}, nil
}

func metaString(p *translate.Proxy, key string) string {
	return p.Node.GetMetadata().GetFields()[key].GetStringValue()
}

// List returns the current entries sorted by namespace and name. Implements config.Source.
func (r *Registry) List() []*config.Object {
	r.mu.Lock()
	out := make([]*config.Object, 0, len(r.entries))
	for _, e := range r.entries {
		out = append(out, e.obj)
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b *config.Object) int {
		if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

// Errors returns why connected proxies could not be registered (unknown group, no IP). Implements
// config.Source.
func (r *Registry) Errors() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := slices.Sorted(maps.Keys(r.refusals))
	out := make([]error, 0, len(ids))
	for _, id := range ids {
		out = append(out, fmt.Errorf("auto-registration of proxy %s: %w", id, r.refusals[id]))
	}
	return out
}

// Run calls onChange after entries are added or removed, until ctx is done. Implements
// config.Source; it returns nil when ctx is cancelled.
func (r *Registry) Run(ctx context.Context, onChange func()) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.changed:
			r.persist()
			onChange()
		}
	}
}
