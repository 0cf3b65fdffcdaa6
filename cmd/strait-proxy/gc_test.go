package main

import "testing"

func TestMemoryLimits(t *testing.T) {
	const mib = 1 << 20
	cases := []struct {
		name              string
		goLimit, cgroup   int64
		off               bool
		wantLimit, wantGo int64
	}{
		{"none", 0, 0, false, 0, 0},
		{"flag only", 64 * mib, 0, false, 64 * mib, 0},
		{"cgroup only sets a Go soft limit", 0, 100 * mib, false, 100 * mib, 90 * mib},
		{"cgroup only, soft limit turned off", 0, 100 * mib, true, 100 * mib, 0},
		{"flag below cgroup", 64 * mib, 100 * mib, false, 64 * mib, 0},
		{"flag above cgroup: the cgroup kills first", 200 * mib, 100 * mib, false, 100 * mib, 0},
	}
	for _, c := range cases {
		limit, soft := memoryLimits(c.goLimit, c.cgroup, c.off)
		if limit != c.wantLimit || soft != c.wantGo {
			t.Errorf("%s: limit %d soft %d, want %d %d", c.name, limit, soft, c.wantLimit, c.wantGo)
		}
	}
}
