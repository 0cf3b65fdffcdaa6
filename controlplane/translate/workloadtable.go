package translate

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	"github.com/cespare/xxhash/v2"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/internal/node"
	"github.com/strait-mesh/strait/internal/vocab"
	"github.com/strait-mesh/strait/internal/workloadtable"
)

// annotationAutoRegisterGroup is the annotation auto-registration puts on a WorkloadEntry: the
// WorkloadGroup it was made from (controlplane/registry/autoregister.AnnotationGroup, which
// imports this package).
const annotationAutoRegisterGroup = "istio.io/autoRegistrationGroup"

// workloadTableResult is a memoized workload table resource list, the error that prevents it,
// or a report (workloads left out beyond the limit).
type workloadTableResult struct {
	list   []types.Resource
	err    error
	report error
}

// workloadTable returns the ECDS resource list holding the mesh's workload table. Its scope is
// every workload, not the proxy's Sidecar scope: a Sidecar limits where a proxy may send, not
// who may call it, and the destination side must know its callers. So one table serves every
// proxy: it is built once per snapshot, carried over while WorkloadEntries, ServiceEntries and
// the mesh config are unchanged, and the xDS server sends it only when its content changes.
func (g *generator) workloadTable(snap *mesh.Snapshot, p *Proxy) ([]types.Resource, error) {
	r := workloadTableSlot.Get(snap.Cache(), struct{}{}, func() *workloadTableResult {
		h := xxhash.New()
		var b [8]byte
		put := func(v uint64) {
			for i := range b {
				b[i] = byte(v >> (8 * i))
			}
			_, _ = h.Write(b[:])
		}
		put(snap.MeshHash())
		put(hashWorkloads(connectedWorkloads(snap)))
		for _, k := range []config.Kind{config.WorkloadEntry, config.ServiceEntry} {
			for _, o := range snap.Configs[k] {
				put(snap.ObjectHash(o))
			}
		}
		return g.c.workloadTable.Get(snap.Version, struct{}{}, h.Sum64(), func() *workloadTableResult {
			t, report := buildWorkloadTable(snap)
			tc, err := workloadtable.Encode(t)
			if err != nil {
				return &workloadTableResult{err: err}
			}
			return &workloadTableResult{list: []types.Resource{&corev3.TypedExtensionConfig{Name: workloadtable.Name, TypedConfig: tc}}, report: report}
		})
	})
	g.report(p, r.report)
	return r.list, r.err
}

// buildWorkloadTable lists the workloads the registry knows: every WorkloadEntry (auto-registered
// ones included) and every inline endpoint of a ServiceEntry, with their IP addresses (hostnames
// and unix sockets are not peer addresses) and identities; then the authenticated connected
// proxies recorded in the snapshot (AttachConnectedWorkloads) that the registry does not list
// (see mergeConnected). Labels follow Istio: the workload
// name is the service.istio.io/workload-name label, else an auto-registered entry's
// WorkloadGroup, else the WorkloadEntry's name (an inline endpoint has none); app and version are
// those labels; canonical service and revision take Istio's fallbacks; the cluster is the
// topology.istio.io/cluster label. Identical entries are listed once. Beyond
// workloadtable.MaxWorkloads (sorted by namespace, name, first address) the rest are left out
// and reported.
func buildWorkloadTable(snap *mesh.Snapshot) (workloadtable.Table, error) {
	td := snap.Mesh.GetTrustDomain()
	if td == "" {
		td = mesh.DefaultDomainSuffix
	}
	t := workloadtable.Table{TrustDomains: []string{td}}
	for _, a := range snap.Mesh.GetTrustDomainAliases() {
		if len(t.TrustDomains) < workloadtable.MaxTrustDomains && a != "" && !slices.Contains(t.TrustDomains, a) {
			t.TrustDomains = append(t.TrustDomains, a)
		}
	}
	for _, o := range snap.Configs[config.WorkloadEntry] {
		we, ok := o.Spec.(*networking.WorkloadEntry)
		if !ok {
			continue
		}
		name := o.Name
		if g := o.Annotations[annotationAutoRegisterGroup]; g != "" {
			name = g
		}
		t.Workloads = append(t.Workloads, tableWorkload(we, name, o.Namespace))
	}
	for _, o := range snap.Configs[config.ServiceEntry] {
		se, ok := o.Spec.(*networking.ServiceEntry)
		if !ok || se.GetWorkloadSelector() != nil {
			continue
		}
		for _, we := range se.GetEndpoints() {
			t.Workloads = append(t.Workloads, tableWorkload(we, "", o.Namespace))
		}
	}
	t.Workloads = sortedUnique(t.Workloads)
	var report error
	if n := len(t.Workloads); n > workloadtable.MaxWorkloads {
		report = fmt.Errorf("workload table: %d workloads, at most %d: the metrics of proxies label the rest's traffic unknown", n, workloadtable.MaxWorkloads)
		t.Workloads = t.Workloads[:workloadtable.MaxWorkloads]
	}
	connected := mergeConnected(t.Workloads, connectedWorkloads(snap))
	if room := workloadtable.MaxWorkloads - len(t.Workloads); len(connected) > room {
		if report == nil {
			report = fmt.Errorf("workload table: %d connected proxies beyond %d workloads: the metrics of proxies label their traffic unknown",
				len(connected)-room, workloadtable.MaxWorkloads)
		}
		connected = connected[:room]
	}
	if len(connected) > 0 {
		t.Workloads = sortedUnique(append(t.Workloads, connected...))
	}
	return t, report
}

// sortedUnique sorts workloads (compareWorkloads) and lists identical entries once.
func sortedUnique(ws []workloadtable.Workload) []workloadtable.Workload {
	slices.SortFunc(ws, compareWorkloads)
	return slices.CompactFunc(ws, func(a, b workloadtable.Workload) bool { return compareWorkloads(a, b) == 0 })
}

// tableWorkload is the table entry of a WorkloadEntry (or inline endpoint) in namespace ns;
// name is its workload name unless the service.istio.io/workload-name label says another.
func tableWorkload(we *networking.WorkloadEntry, name, ns string) workloadtable.Workload {
	l := we.GetLabels()
	if n := l[workloadtable.LabelWorkloadName]; n != "" {
		name = n
	}
	w := workloadtable.Workload{
		Name:           name,
		Namespace:      ns,
		ServiceAccount: we.GetServiceAccount(),
		App:            l[workloadtable.LabelApp],
		Version:        l[workloadtable.LabelVersion],
		Cluster:        l[workloadtable.LabelCluster],
		Sidecar:        l[vocab.LabelTLSMode] == vocab.TLSModeIstio,
	}
	w.CanonicalService, w.CanonicalRevision = workloadtable.Canonical(l, name)
	if ip, err := netip.ParseAddr(we.GetAddress()); err == nil && !ip.IsUnspecified() {
		w.Addresses = []string{ip.String()}
	}
	return w
}

// compareWorkloads orders entries by namespace, name, address, then every other field.
func compareWorkloads(a, b workloadtable.Workload) int {
	if c := cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name),
		slices.Compare(a.Addresses, b.Addresses), cmp.Compare(a.ServiceAccount, b.ServiceAccount),
		cmp.Compare(a.App, b.App), cmp.Compare(a.Version, b.Version),
		cmp.Compare(a.CanonicalService, b.CanonicalService), cmp.Compare(a.CanonicalRevision, b.CanonicalRevision),
		cmp.Compare(a.Cluster, b.Cluster)); c != 0 {
		return c
	}
	switch {
	case a.Sidecar == b.Sidecar:
		return 0
	case !a.Sidecar:
		return -1
	}
	return 1
}

// extensionConfigs returns a proxy's ECDS list: the name table (when it captures DNS and sc,
// its scope, is set) and the workload table (when it asks for it). A combination of both is
// shared between proxies in the snapshot, so that the xDS server recognizes the list by
// identity. Callers set the list only when the proxy asked for either.
func (g *generator) extensionConfigs(snap *mesh.Snapshot, p *Proxy, sc *mesh.Scope) ([]types.Resource, error) {
	var names, workloads []types.Resource
	if p.DNSCapture && sc != nil {
		var err error
		if names, err = g.nameTable(snap, sc); err != nil {
			return nil, err
		}
	}
	if p.WorkloadTable {
		var err error
		if workloads, err = g.workloadTable(snap, p); err != nil {
			return nil, err
		}
	}
	switch {
	case len(workloads) == 0:
		return names, nil
	case len(names) == 0:
		return workloads, nil
	}
	return ecdsListSlot.Get(snap.Cache(), ecdsListKey{&names[0], &workloads[0]}, func() *localList {
		return concatLists(names, workloads)
	}).list, nil
}

// ecdsListKey identifies the ECDS list of a name table and a workload table, both lists shared
// by the proxies of the snapshot (the slot holds them, so the addresses stay theirs).
type ecdsListKey struct{ names, workloads *types.Resource }

// AttachConnectedWorkloads records in snap the workload table entries of the proxies connected
// when it was built (ConnectedWorkloads), so that its workload table lists them beside the
// registry's. The control plane calls it once per snapshot, before handing the snapshot to the
// xDS server or anyone else (the snapshot must not be read before); a second call does nothing.
// ws is kept and must not be modified afterwards.
func AttachConnectedWorkloads(snap *mesh.Snapshot, ws []workloadtable.Workload) {
	connectedWorkloadsSlot.Get(snap.Cache(), struct{}{}, func() []workloadtable.Workload { return ws })
}

// connectedWorkloads returns the entries AttachConnectedWorkloads recorded in snap; none when it
// was not called.
func connectedWorkloads(snap *mesh.Snapshot) []workloadtable.Workload {
	return connectedWorkloadsSlot.Get(snap.Cache(), struct{}{}, func() []workloadtable.Workload { return nil })
}

// ConnectedWorkloads returns the workload table entries of connected proxies, sorted as the table
// is, with an error for each proxy left out. Only proxies whose stream proved an identity (their
// Identity is set: namespace and service account are the client certificate's) are listed, as
// gateways (routers) and sidecars; an unauthenticated proxy (the plaintext development port)
// and a proxyless client are left out silently. An entry holds what the proxy's node declares
// within its proven identity, read as for a WorkloadEntry: the workload name is the label
// service.istio.io/workload-name, else the node's WORKLOAD_NAME (else its node ID's name);
// app, version, canonical service and revision take Istio's fallbacks; the cluster is the label
// topology.istio.io/cluster, else the node's CLUSTER_ID; the addresses are its instance IPs
// (workloadtable.MaxAddresses at most); Sidecar holds for a sidecar labelled
// security.istio.io/tlsMode=istio (never for a gateway, whose plaintext peers are outsiders).
// A proxy with a string longer than workloadtable.MaxValueLen is left out (proxies would refuse
// the table). The result depends only on the proxies' content, not their order.
func ConnectedWorkloads(ps []*Proxy) ([]workloadtable.Workload, []error) {
	var out []workloadtable.Workload
	var errs []error
	for _, p := range ps {
		if p == nil || p.Identity == "" || p.Proxyless || (p.Type != node.Sidecar && p.Type != node.Router) {
			continue
		}
		w := connectedWorkload(p)
		if err := checkWorkloadStrings(w); err != nil {
			errs = append(errs, fmt.Errorf("connected proxy %s left out of the workload table: %w", p.ID.String(), err))
			continue
		}
		out = append(out, w)
	}
	return sortedUnique(out), errs
}

// connectedWorkload is the table entry of an authenticated connected proxy (see
// ConnectedWorkloads).
func connectedWorkload(p *Proxy) workloadtable.Workload {
	l := p.Labels
	name := cmp.Or(l[workloadtable.LabelWorkloadName], p.WorkloadName, p.ID.Name)
	w := workloadtable.Workload{
		Name:           name,
		Namespace:      p.Namespace,
		ServiceAccount: p.ServiceAccount,
		App:            l[workloadtable.LabelApp],
		Version:        l[workloadtable.LabelVersion],
		Cluster:        cmp.Or(l[workloadtable.LabelCluster], p.Node.GetMetadata().GetFields()[node.MetaClusterID].GetStringValue()),
		Sidecar:        p.Type == node.Sidecar && l[vocab.LabelTLSMode] == vocab.TLSModeIstio,
	}
	w.CanonicalService, w.CanonicalRevision = workloadtable.Canonical(l, name)
	for _, s := range p.IPs {
		ip, err := netip.ParseAddr(s)
		if err != nil || ip.IsUnspecified() || len(w.Addresses) == workloadtable.MaxAddresses {
			continue
		}
		if a := ip.Unmap().String(); !slices.Contains(w.Addresses, a) {
			w.Addresses = append(w.Addresses, a)
		}
	}
	slices.Sort(w.Addresses)
	return w
}

// checkWorkloadStrings refuses an entry with a string longer than workloadtable.MaxValueLen.
func checkWorkloadStrings(w workloadtable.Workload) error {
	for _, f := range []struct{ name, v string }{{"name", w.Name}, {"namespace", w.Namespace},
		{"serviceAccount", w.ServiceAccount}, {"app", w.App}, {"version", w.Version},
		{"canonicalService", w.CanonicalService}, {"canonicalRevision", w.CanonicalRevision}, {"cluster", w.Cluster}} {
		if len(f.v) > workloadtable.MaxValueLen {
			return fmt.Errorf("%s: %d bytes, at most %d", f.name, len(f.v), workloadtable.MaxValueLen)
		}
	}
	return nil
}

// mergeConnected returns the connected proxies' entries the table adds to the registry's
// (sorted, compacted): the registry is the operator's word and wins. A proxy is otherwise
// registered, and left out, when the registry lists a workload of its identity at one of its
// addresses (an auto-registered proxy, a WorkloadEntry for a VM). An address the registry gives
// another identity, or that connected proxies of different identities claim, is removed from
// the connected entries (an identity cannot take over another's address); the entry stays,
// found by its identity.
func mergeConnected(registry, connected []workloadtable.Workload) []workloadtable.Workload {
	if len(connected) == 0 {
		return nil
	}
	type identity struct{ ns, sa string }
	owners := make(map[string][]identity) // address → registry identities at it
	for _, w := range registry {
		for _, a := range w.Addresses {
			owners[a] = append(owners[a], identity{w.Namespace, w.ServiceAccount})
		}
	}
	claims := make(map[string]identity) // address → the one identity of the connected proxies claiming it
	contested := make(map[string]bool)
	var out []workloadtable.Workload
	for _, w := range connected {
		id := identity{w.Namespace, w.ServiceAccount}
		registered := false
		for _, a := range w.Addresses {
			registered = registered || slices.Contains(owners[a], id)
			if c, ok := claims[a]; ok && c != id {
				contested[a] = true
			}
			claims[a] = id
		}
		if !registered {
			out = append(out, w)
		}
	}
	for i := range out {
		w := &out[i]
		w.Addresses = slices.DeleteFunc(slices.Clone(w.Addresses), func(a string) bool { return len(owners[a]) > 0 || contested[a] })
		if len(w.Addresses) == 0 {
			w.Addresses = nil
		}
	}
	return sortedUnique(out)
}

// hashWorkloads is a content hash of table entries, for the table's memo.
func hashWorkloads(ws []workloadtable.Workload) uint64 {
	h := xxhash.New()
	for _, w := range ws {
		for _, s := range []string{w.Name, w.Namespace, w.ServiceAccount, w.App, w.Version, w.CanonicalService, w.CanonicalRevision, w.Cluster} {
			_, _ = h.WriteString(s)
			_, _ = h.Write([]byte{0})
		}
		for _, a := range w.Addresses {
			_, _ = h.WriteString(a)
			_, _ = h.Write([]byte{1})
		}
		if w.Sidecar {
			_, _ = h.Write([]byte{2})
		}
		_, _ = h.Write([]byte{3})
	}
	return h.Sum64()
}
