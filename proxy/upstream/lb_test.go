package upstream

import (
	"context"
	"fmt"
	"hash/fnv"
	"sync"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/balance"
	clusterv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/cluster/v3"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
)

// headerHash hashes a header value as l7 does for a header hash policy.
func headerHash(v string) balance.Context {
	h := fnv.New64a()
	_, _ = h.Write([]byte(v))
	return balance.Context{Hash: h.Sum64(), HasHash: true}
}

func TestHashPoliciesKeepAffinity(t *testing.T) {
	for _, policy := range []clusterv3.Cluster_LbPolicy{clusterv3.Cluster_RING_HASH, clusterv3.Cluster_MAGLEV} {
		t.Run(policy.String(), func(t *testing.T) {
			bs := []*backend{newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c"), newBackend(t, "d")}
			c := staticCluster("hash", policy, bs...)
			if policy == clusterv3.Cluster_RING_HASH {
				c.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{
					MinimumRingSize: wrapU64(2048), MaximumRingSize: wrapU64(1 << 16)}}
			} else {
				c.LbConfig = &clusterv3.Cluster_MaglevLbConfig_{MaglevLbConfig: &clusterv3.Cluster_MaglevLbConfig{TableSize: wrapU64(65537)}}
			}
			cl, _ := compileT(t, c, Deps{})
			owner := map[string]string{}
			used := map[string]bool{}
			for u := range 40 {
				user := fmt.Sprintf("user-%d", u)
				for range 5 {
					name, _ := get(t, cl, headerHash(user), "x-user", user)
					if prev, ok := owner[user]; ok && prev != name {
						t.Fatalf("%s moved from %s to %s", user, prev, name)
					}
					owner[user] = name
					used[name] = true
				}
			}
			if len(used) < 3 {
				t.Fatalf("40 keys reached only %v", used)
			}
			// Without a hash the policy spreads requests.
			spread := map[string]bool{}
			for range 40 {
				name, _ := get(t, cl, balance.Context{})
				spread[name] = true
			}
			if len(spread) < 3 {
				t.Fatalf("unhashed requests reached only %v", spread)
			}
		})
	}
}

func TestLeastRequestPrefersIdleEndpoint(t *testing.T) {
	busy, slowGate := gatedBackend(t, "busy")
	idle := newBackend(t, "idle")
	c := staticCluster("lr", clusterv3.Cluster_LEAST_REQUEST, busy, idle)
	c.LbConfig = &clusterv3.Cluster_LeastRequestLbConfig_{LeastRequestLbConfig: &clusterv3.Cluster_LeastRequestLbConfig{ChoiceCount: u32(3)}}
	cl, _ := compileT(t, c, Deps{})
	defer slowGate.open()

	// Park slow requests on "busy" (requests that land on "idle" return at once).
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	for i := 0; i < 400 && slowGate.waiting.Load() < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = doCtx(ctx, cl, balance.Context{}, "GET", "/slow")
		}()
		time.Sleep(5 * time.Millisecond)
	}
	testenv.WaitFor(t, "4 slow requests parked on busy", 10*time.Second, func() bool { return slowGate.waiting.Load() >= 4 })

	seen := tally(t, cl, 200)
	// Choice of 3 over 2 hosts: busy wins only when all three draws hit it (1/8).
	if seen["idle"] < 160 {
		t.Fatalf("least request split %v: want the idle endpoint to take most requests", seen)
	}
	slowGate.open()
}

func TestRandomAndRoundRobinWeighted(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	for _, policy := range []clusterv3.Cluster_LbPolicy{clusterv3.Cluster_RANDOM, clusterv3.Cluster_ROUND_ROBIN} {
		c := staticCluster("w-"+policy.String(), policy, a, b)
		c.LoadAssignment.Endpoints[0].LbEndpoints[1].LoadBalancingWeight = u32(3)
		cl, _ := compileT(t, c, Deps{})
		seen := tally(t, cl, 400)
		switch policy {
		case clusterv3.Cluster_ROUND_ROBIN:
			if seen["a"] != 100 || seen["b"] != 300 {
				t.Fatalf("weighted round robin %v, want a=100 b=300", seen)
			}
		case clusterv3.Cluster_RANDOM:
			if seen["a"] < 120 || seen["b"] < 120 {
				t.Fatalf("random %v, want both used about evenly (Envoy's RANDOM ignores weights)", seen)
			}
		}
	}
}

func TestPriorityFailoverEndToEnd(t *testing.T) {
	p0, p1 := newBackend(t, "p0"), newBackend(t, "p1")
	cla := assignment("prio", p0)
	second := assignment("prio", p1).Endpoints[0]
	second.Priority = 1
	cla.Endpoints = append(cla.Endpoints, second)
	cl, _ := compileT(t, &clusterv3.Cluster{
		Name:                 "prio",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
	}, Deps{})
	if err := cl.SetEndpoints(cla); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if name, _ := get(t, cl, balance.Context{}); name != "p0" {
			t.Fatalf("healthy P0: went to %s", name)
		}
	}
	cla.Endpoints[0].LbEndpoints[0].HealthStatus = corev3.HealthStatus_UNHEALTHY
	if err := cl.SetEndpoints(cla); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if name, _ := get(t, cl, balance.Context{}); name != "p1" {
			t.Fatalf("P0 down: went to %s", name)
		}
	}
}

func TestDegradedEndpointsTakeSpillover(t *testing.T) {
	a, d := newBackend(t, "healthy"), newBackend(t, "degraded")
	cl, _ := compileT(t, &clusterv3.Cluster{
		Name:                 "deg",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
	}, Deps{})
	cla := assignment("deg", a, d)
	cla.Endpoints[0].LbEndpoints[1].HealthStatus = corev3.HealthStatus_DEGRADED
	if err := cl.SetEndpoints(cla); err != nil {
		t.Fatal(err)
	}
	seen := tally(t, cl, 300)
	// One healthy host of two: 1.4 × 50% = 70% to it, the remaining 30% spills to the degraded one.
	if seen["healthy"] < 170 || seen["healthy"] > 250 || seen["degraded"] == 0 {
		t.Fatalf("split %v, want about 210/90", seen)
	}
}
