package mesh

import (
	"fmt"

	"github.com/cespare/xxhash/v2"
	security "istio.io/api/security/v1beta1"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/registry"
)

// MTLSMode is the effective PeerAuthentication mode of one workload port: what its sidecar
// accepts on the inbound side, and whether clients may use mutual TLS to reach it.
type MTLSMode uint8

// The modes, as Istio's PeerAuthentication.MutualTLS.Mode without UNSET (which inherits).
const (
	// MTLSPermissive accepts mutual TLS and plaintext: Istio's default.
	MTLSPermissive MTLSMode = iota
	// MTLSStrict accepts mutual TLS only.
	MTLSStrict
	// MTLSDisable accepts plaintext only; clients do not use automatic mutual TLS.
	MTLSDisable
)

// String returns Istio's name of the mode.
func (m MTLSMode) String() string {
	switch m {
	case MTLSStrict:
		return "STRICT"
	case MTLSDisable:
		return "DISABLE"
	}
	return "PERMISSIVE"
}

// peerAuthnIndex holds PeerAuthentication objects: the mesh-wide policy (the oldest one in the
// root namespace without a selector) and, per other namespace, the namespace-wide policy (the
// oldest without a selector) and the workload policies (with a selector, oldest first).
// Policies with a selector in the root namespace are ignored, as Istio ignores them.
type peerAuthnIndex struct {
	mesh      *security.PeerAuthentication
	namespace map[string]*security.PeerAuthentication
	workload  map[string][]*security.PeerAuthentication
	hash      uint64 // of every policy's content, for cache keys; 0 when there are none
}

func newPeerAuthnIndex(s *Snapshot) (*peerAuthnIndex, []error) {
	idx := &peerAuthnIndex{namespace: map[string]*security.PeerAuthentication{}, workload: map[string][]*security.PeerAuthentication{}}
	root := s.RootNamespace()
	var errs []error
	h := xxhash.New()
	for _, o := range s.Configs[config.PeerAuthentication] { // oldest first
		pa, ok := o.Spec.(*security.PeerAuthentication)
		if !ok {
			errs = append(errs, fmt.Errorf("indexing peer authentication: %s: spec is %T", o.Key(), o.Spec))
			continue
		}
		fmt.Fprintf(h, "%s/%s@%d:%s;", o.Namespace, o.Name, o.CreationTimestamp.UnixNano(), pa.String())
		selector := len(pa.GetSelector().GetMatchLabels()) > 0
		switch {
		case o.Namespace == root && !selector:
			if idx.mesh == nil {
				idx.mesh = pa
			}
		case o.Namespace == root:
			// Istio ignores workload policies in the root namespace.
		case !selector:
			if idx.namespace[o.Namespace] == nil {
				idx.namespace[o.Namespace] = pa
			}
		default:
			idx.workload[o.Namespace] = append(idx.workload[o.Namespace], pa)
		}
	}
	if len(s.Configs[config.PeerAuthentication]) > 0 {
		idx.hash = h.Sum64() | 1
	}
	return idx, errs
}

// PeerAuthnHash is a hash of every PeerAuthentication in the snapshot (0 when there are none):
// output that depends on MTLS modes keys its caches with it.
func (s *Snapshot) PeerAuthnHash() uint64 { return s.peerAuthn.hash }

// MTLS returns the effective mode for a workload's port (the port the workload receives on, as
// portLevelMtls names it), composed as Istio does: the oldest matching workload policy of the
// workload's namespace (its port-level mode, else its own mode), else the namespace policy, else
// the mesh policy, else PERMISSIVE; UNSET at any level inherits from the next.
func (s *Snapshot) MTLS(w Workload, port uint32) MTLSMode {
	idx := s.peerAuthn
	mode := MTLSPermissive
	if m, ok := modeOf(idx.mesh.GetMtls()); ok {
		mode = m
	}
	if w.Namespace == s.RootNamespace() {
		return mode
	}
	if m, ok := modeOf(idx.namespace[w.Namespace].GetMtls()); ok {
		mode = m
	}
	for _, pa := range idx.workload[w.Namespace] {
		if !registry.LabelsMatch(pa.GetSelector().GetMatchLabels(), w.Labels) {
			continue
		}
		if m, ok := modeOf(pa.GetMtls()); ok {
			mode = m
		}
		if m, ok := modeOf(pa.GetPortLevelMtls()[port]); ok && port != 0 {
			mode = m
		}
		break
	}
	return mode
}

// modeOf converts a policy's mode; ok is false for UNSET or no setting (inherit).
func modeOf(m *security.PeerAuthentication_MutualTLS) (MTLSMode, bool) {
	switch m.GetMode() {
	case security.PeerAuthentication_MutualTLS_STRICT:
		return MTLSStrict, true
	case security.PeerAuthentication_MutualTLS_PERMISSIVE:
		return MTLSPermissive, true
	case security.PeerAuthentication_MutualTLS_DISABLE:
		return MTLSDisable, true
	}
	return MTLSPermissive, false
}
