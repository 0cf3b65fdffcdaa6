package balance

import (
	"fmt"
	"testing"
)

// TestSingleHostShortcut: a set whose Pick always answers its one host takes the shortcut
// (single), and Pick answers as the full path does, for every policy and for the one-host sets
// that must not take it (unhealthy, degraded, locality weight 0, panic disabled).
func TestSingleHostShortcut(t *testing.T) {
	policies := []Policy{RoundRobin, LeastRequest, Random, RingHash, Maglev}
	hosts := map[string]struct {
		h      func(h *Host)
		single bool
	}{
		"healthy":   {func(*Host) {}, true},
		"unhealthy": {func(h *Host) { h.Healthy = false }, false},
		"degraded":  {func(h *Host) { h.Degraded = true }, false},
	}
	for _, p := range policies {
		for _, lw := range []bool{false, true} {
			for _, panicOff := range []bool{false, true} {
				for name, hv := range hosts {
					for _, locWeight := range []uint32{0, 3} {
						cfg := NewConfig(p)
						cfg.LocalityWeighted = lw
						if panicOff {
							cfg.PanicThreshold = 0
						}
						hs := hostsN(1)
						hs[0].Locality, hs[0].LocalityWeight = "z", locWeight
						hv.h(&hs[0])
						s := mustNew(t, cfg, hs)
						id := fmt.Sprintf("%v/lw=%v/panicOff=%v/%s/w=%d", p, lw, panicOff, name, locWeight)
						full := *s
						full.single = false
						want := full.Pick(Context{})
						if s.single && (want != 0 || !hv.single) {
							t.Errorf("%s: shortcut taken, full path picks %d", id, want)
						}
						for i := range 20 {
							ctx := Context{Hash: uint64(i) * 0x9e3779b97f4a7c15, HasHash: i%2 == 0}
							if got, want := s.Pick(ctx), full.Pick(ctx); got != want {
								t.Errorf("%s: Pick = %d, full path %d", id, got, want)
							}
						}
					}
				}
			}
		}
	}
	cfg := NewConfig(RoundRobin)
	if s := mustNew(t, cfg, hostsN(1)); !s.single {
		t.Error("one healthy host: no shortcut")
	}
	if s := mustNew(t, cfg, hostsN(2)); s.single {
		t.Error("two hosts: shortcut")
	}
}
