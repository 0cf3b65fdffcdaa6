package describe

import (
	security "istio.io/api/security/v1beta1"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/registry"
	"github.com/strait-mesh/strait/controlplane/translate/authz"
)

// workloadPolicies returns what selects workload w: its Sidecar, its effective mTLS mode on
// each of ports (the ports it receives on; none: the workload as a whole), the
// PeerAuthentications composing it, and the AuthorizationPolicies and RequestAuthentications
// that apply to it, as translation selects them.
func workloadPolicies(snap *mesh.Snapshot, w mesh.Workload, ports []uint32) WorkloadPolicies {
	p := WorkloadPolicies{MTLS: []PortMode{}, PeerAuthentications: []string{}, AuthorizationPolicies: []PolicyInfo{}, RequestAuthentications: []string{}}
	if sc := snap.Sidecar(w); sc != nil {
		p.Sidecar = sc.Namespace + "/" + sc.Name
	}
	if len(ports) == 0 {
		p.MTLS = append(p.MTLS, PortMode{Mode: snap.MTLS(w, 0).String()})
	}
	for _, port := range ports {
		p.MTLS = append(p.MTLS, PortMode{Port: port, Mode: snap.MTLS(w, port).String()})
	}
	p.PeerAuthentications = appliedPeerAuthentications(snap, w)
	root := snap.RootNamespace()
	for _, o := range authz.Select(snap.Configs[config.AuthorizationPolicy], w.Namespace, w.Labels, root) {
		ap, ok := o.Spec.(*security.AuthorizationPolicy)
		if !ok {
			continue
		}
		info := PolicyInfo{Name: o.Name, Namespace: o.Namespace, Action: ap.GetAction().String(), Rules: len(ap.GetRules())}
		if ap.GetAction() == security.AuthorizationPolicy_CUSTOM {
			info.Provider = ap.GetProvider().GetName()
		}
		info.DryRun, _ = config.DryRun(o)
		p.AuthorizationPolicies = append(p.AuthorizationPolicies, info)
	}
	for _, o := range authz.SelectRequestAuthentication(snap.Configs[config.RequestAuthentication], w.Namespace, w.Labels, root) {
		p.RequestAuthentications = append(p.RequestAuthentications, o.Namespace+"/"+o.Name)
	}
	return p
}

// appliedPeerAuthentications names the PeerAuthentications that compose w's mode, as
// mesh.Snapshot.MTLS composes them: the mesh-wide policy (the oldest without a selector in the
// root namespace), the namespace policy (the oldest without a selector in w's namespace) and the
// oldest workload policy of w's namespace whose selector matches w.
func appliedPeerAuthentications(snap *mesh.Snapshot, w mesh.Workload) []string {
	root := snap.RootNamespace()
	var meshWide, nsWide, workload string
	for _, o := range snap.Configs[config.PeerAuthentication] {
		pa, ok := o.Spec.(*security.PeerAuthentication)
		if !ok {
			continue
		}
		sel := pa.GetSelector().GetMatchLabels()
		name := o.Namespace + "/" + o.Name
		switch {
		case o.Namespace == root && len(sel) == 0:
			if meshWide == "" {
				meshWide = name
			}
		case o.Namespace == root || o.Namespace != w.Namespace:
		case len(sel) == 0:
			if nsWide == "" {
				nsWide = name
			}
		case registry.LabelsMatch(sel, w.Labels):
			if workload == "" {
				workload = name
			}
		}
	}
	out := []string{}
	for _, n := range []string{meshWide, nsWide, workload} {
		if n != "" {
			out = append(out, n)
		}
	}
	return out
}
