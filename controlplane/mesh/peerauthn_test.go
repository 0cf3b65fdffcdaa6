package mesh_test

import (
	"testing"

	meshconfig "istio.io/api/mesh/v1alpha1"

	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/mesh/meshtest"
)

// peerAuthnFixture layers PeerAuthentication as Istio's documentation does: mesh-wide STRICT in
// the root namespace, PERMISSIVE for namespace foo, STRICT for finance in foo with port 8080
// DISABLE, an UNSET workload policy in foo that only sets a port, a namespace with UNSET, and a
// root-namespace policy with a selector (ignored).
const peerAuthnFixture = `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system, creationTimestamp: "2026-01-01T00:00:00Z"}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: later-mesh, namespace: istio-system, creationTimestamp: "2026-01-02T00:00:00Z"}
spec: {mtls: {mode: DISABLE}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: root-selector, namespace: istio-system, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  selector: {matchLabels: {app: web}}
  mtls: {mode: DISABLE}
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: default, namespace: foo, creationTimestamp: "2026-01-01T00:00:00Z"}
spec: {mtls: {mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: finance, namespace: foo, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  selector: {matchLabels: {app: finance}}
  mtls: {mode: STRICT}
  portLevelMtls:
    8080: {mode: DISABLE}
    9090: {mode: UNSET}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: finance-later, namespace: foo, creationTimestamp: "2026-01-02T00:00:00Z"}
spec:
  selector: {matchLabels: {app: finance}}
  mtls: {mode: DISABLE}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: web, namespace: foo, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  selector: {matchLabels: {app: web}}
  portLevelMtls:
    8080: {mode: STRICT}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: bar, creationTimestamp: "2026-01-01T00:00:00Z"}
spec: {mtls: {mode: UNSET}}
`

func TestMTLSComposition(t *testing.T) {
	snap := meshtest.Snapshot(t, "pa.yaml", 1, nil, peerAuthnFixture)
	w := func(ns string, labels map[string]string) mesh.Workload {
		return mesh.Workload{Namespace: ns, Labels: labels}
	}
	finance := map[string]string{"app": "finance"}
	web := map[string]string{"app": "web"}
	for _, tc := range []struct {
		name string
		w    mesh.Workload
		port uint32
		want mesh.MTLSMode
	}{
		{"the oldest mesh-wide policy applies", w("other", nil), 80, mesh.MTLSStrict},
		{"the root namespace gets the mesh policy; its selector policies are ignored", w("istio-system", web), 80, mesh.MTLSStrict},
		{"a namespace policy overrides the mesh's", w("foo", nil), 80, mesh.MTLSPermissive},
		{"the oldest matching workload policy overrides the namespace's", w("foo", finance), 80, mesh.MTLSStrict},
		{"a port-level mode overrides the workload's", w("foo", finance), 8080, mesh.MTLSDisable},
		{"a port-level UNSET inherits the workload's", w("foo", finance), 9090, mesh.MTLSStrict},
		{"a workload policy without mtls inherits the namespace's", w("foo", web), 80, mesh.MTLSPermissive},
		{"... and its port-level mode still applies", w("foo", web), 8080, mesh.MTLSStrict},
		{"a namespace UNSET inherits the mesh's", w("bar", finance), 8080, mesh.MTLSStrict},
		{"port 0 (the workload without a port) ignores port levels", w("foo", finance), 0, mesh.MTLSStrict},
	} {
		if got := snap.MTLS(tc.w, tc.port); got != tc.want {
			t.Errorf("%s: MTLS(%s %v, %d) = %s, want %s", tc.name, tc.w.Namespace, tc.w.Labels, tc.port, got, tc.want)
		}
	}

	// No policy at all: PERMISSIVE, Istio's default; a custom root namespace is honoured.
	if got := mesh.New(2, nil, nil).MTLS(w("foo", nil), 80); got != mesh.MTLSPermissive {
		t.Errorf("no policy: %s, want PERMISSIVE", got)
	}
	custom := meshtest.Snapshot(t, "pa.yaml", 3, &meshconfig.MeshConfig{RootNamespace: "foo"}, peerAuthnFixture)
	if got := custom.MTLS(w("other", nil), 80); got != mesh.MTLSPermissive {
		t.Errorf("root namespace foo: other namespaces get foo's policy, got %s", got)
	}
	if snap.PeerAuthnHash() == 0 || mesh.New(2, nil, nil).PeerAuthnHash() != 0 {
		t.Error("PeerAuthnHash: want non-zero with policies and zero without")
	}
}
