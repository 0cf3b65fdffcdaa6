package translate

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	"github.com/cespare/xxhash/v2"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/internal/vocab"
	"github.com/strait-mesh/strait/internal/workloadtable"
)

// annotationAutoRegisterGroup is the annotation auto-registration puts on a WorkloadEntry: the
// WorkloadGroup it was made from (controlplane/registry/autoregister.AnnotationGroup, which
// imports this package).
const annotationAutoRegisterGroup = "istio.io/autoRegistrationGroup"

// workloadTableKey identifies the workload table (one per snapshot, shared by every proxy).
type workloadTableKey struct{}

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
	r := snap.CacheValue(workloadTableKey{}, func() any {
		h := xxhash.New()
		var b [8]byte
		put := func(v uint64) {
			for i := range b {
				b[i] = byte(v >> (8 * i))
			}
			_, _ = h.Write(b[:])
		}
		put(snap.MeshHash())
		for _, k := range []config.Kind{config.WorkloadEntry, config.ServiceEntry} {
			for _, o := range snap.Configs[k] {
				put(snap.ObjectHash(o))
			}
		}
		return g.memo.get(snap.Version, workloadTableKey{}, h.Sum64(), func() any {
			t, report := buildWorkloadTable(snap)
			tec, err := workloadtable.Encode(t)
			if err != nil {
				return &workloadTableResult{err: err}
			}
			return &workloadTableResult{list: []types.Resource{tec}, report: report}
		})
	}).(*workloadTableResult)
	g.report(p, r.report)
	return r.list, r.err
}

// buildWorkloadTable lists the workloads the registry knows: every WorkloadEntry (auto-registered
// ones included) and every inline endpoint of a ServiceEntry, with their IP addresses (hostnames
// and unix sockets are not peer addresses) and identities. Labels follow Istio: the workload
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
	slices.SortFunc(t.Workloads, compareWorkloads)
	t.Workloads = slices.CompactFunc(t.Workloads, func(a, b workloadtable.Workload) bool { return compareWorkloads(a, b) == 0 })
	var report error
	if n := len(t.Workloads); n > workloadtable.MaxWorkloads {
		report = fmt.Errorf("workload table: %d workloads, at most %d: the metrics of proxies label the rest's traffic unknown", n, workloadtable.MaxWorkloads)
		t.Workloads = t.Workloads[:workloadtable.MaxWorkloads]
	}
	return t, report
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
	type both struct{ names, workloads *types.Resource }
	return snap.CacheValue(both{&names[0], &workloads[0]}, func() any {
		return concatLists(names, workloads)
	}).(*localList).list, nil
}
