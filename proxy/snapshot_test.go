package proxy

import (
	"testing"

	"github.com/strait-mesh/strait/proxy/xdsclient"
)

// TestL7EnvSnapshot: every published runtime has a Snapshot of its own (the HTTP connection
// managers keep what they looked up per Snapshot), and the cluster an update adds or removes
// is answered under the new one.
func TestL7EnvSnapshot(t *testing.T) {
	p := newTestProxy(t)
	env := l7Env{p}
	s0 := env.Snapshot()
	if s0 == nil {
		t.Fatal("no Snapshot before the first update")
	}
	name := "outbound|80||svc-0.default.svc.cluster.local"
	if err := p.Apply(xdsclient.ClusterType, benchClusters(nil, 1, "")); err != nil {
		t.Fatal(err)
	}
	s1 := env.Snapshot()
	if s1 == s0 || env.Cluster(name) == nil {
		t.Fatalf("after adding a cluster: same Snapshot %v, cluster %v", s1 == s0, env.Cluster(name))
	}
	if env.Snapshot() != s1 {
		t.Fatal("Snapshot changed without an update")
	}
	if err := p.Apply(xdsclient.ClusterType, benchClusters(nil, 0, "")); err != nil {
		t.Fatal(err)
	}
	if s2 := env.Snapshot(); s2 == s1 || s2 == s0 || env.Cluster(name) != nil {
		t.Fatalf("after removing the cluster: a Snapshot seen before, or the cluster still answered")
	}
}
