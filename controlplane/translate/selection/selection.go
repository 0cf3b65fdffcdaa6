// Package selection decides which namespaced policies apply to a workload, with the rules Istio's
// workload-selected kinds share (AuthorizationPolicy, RequestAuthentication, EnvoyFilter,
// Telemetry, RateLimit): a policy in the mesh root namespace applies to every workload, one in
// the workload's namespace to that namespace's workloads, in both cases only when its selector
// (if any) matches the workload's labels. What differs per kind (which objects select by labels
// at all, EnvoyFilter's priority, Telemetry's one-per-level inheritance) is the caller's: it
// passes a Kind, or picks from what Select returns.
//
// The functions are pure and safe for concurrent use; they never modify their inputs.
package selection

import (
	"sort"

	"github.com/strait-mesh/strait/controlplane/config"
)

// Kind is how Select reads one kind's objects.
type Kind struct {
	// Selector returns the labels o's workload selector requires (none: every workload of its
	// namespace), and false when o does not select workloads by labels at all: another kind's
	// spec, or a policy attached by targetRef(s) to gateways and waypoints.
	Selector func(o *config.Object) (labels map[string]string, ok bool)
	// Priority, when set, orders the objects of one namespace before their age, lowest first
	// (EnvoyFilter's priority).
	Priority func(o *config.Object) int32
}

// Select returns the objects of objs that apply to a workload in namespace ns with labels:
// those in root or ns whose selector matches (see Matches). They are ordered the root
// namespace's first, then by k.Priority (if set), then oldest first, then by name.
func Select(objs []*config.Object, ns string, labels map[string]string, root string, k Kind) []*config.Object {
	var out []*config.Object
	for _, o := range objs {
		if o.Namespace != root && o.Namespace != ns {
			continue
		}
		if sel, ok := k.Selector(o); !ok || !Matches(sel, labels) {
			continue
		}
		out = append(out, o)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if ar, br := a.Namespace == root, b.Namespace == root; ar != br {
			return ar
		}
		if k.Priority != nil {
			if pa, pb := k.Priority(a), k.Priority(b); pa != pb {
				return pa < pb
			}
		}
		if !a.CreationTimestamp.Equal(b.CreationTimestamp) {
			return a.CreationTimestamp.Before(b.CreationTimestamp)
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.Namespace < b.Namespace
	})
	return out
}

// Matches reports whether a selector's labels sel select a workload with labels, as a
// Kubernetes matchLabels selector does: every label of sel is present with the same value (an
// empty value requires the label, empty). An empty sel selects every workload.
func Matches(sel, labels map[string]string) bool {
	for k, v := range sel {
		if lv, ok := labels[k]; !ok || lv != v {
			return false
		}
	}
	return true
}
