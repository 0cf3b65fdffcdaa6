package main

import (
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/strait-mesh/strait/proxy/overload"
)

// defaultGOGC is strait-proxy's GC target when neither --gogc nor GOGC is set: Go's default.
// The proxy's live heap is small (~4–6 MiB: compiled config, connection buffers), so at 100 the
// GC costs ~5 % of the CPU at 1,000 rps while the heap stays under ~10 MiB; a higher value
// trades RSS for CPU (each +100 adds about one live heap), a lower one the reverse.
const defaultGOGC = 100

// gcSettings are the --gogc and --memory-limit flags.
type gcSettings struct {
	gogc        int
	memoryLimit string
}

// apply sets the GC percentage and the soft memory limit. A flag left at its default defers to
// the GOGC / GOMEMLIMIT environment variables, which the Go runtime already applied.
func (g gcSettings) apply(gogcSet, limitSet bool) error {
	if gogcSet || os.Getenv("GOGC") == "" {
		debug.SetGCPercent(g.gogc)
	}
	if limitSet && g.memoryLimit != "" {
		n, err := parseBytes(g.memoryLimit)
		if err != nil {
			return fmt.Errorf("--memory-limit: %w", err)
		}
		debug.SetMemoryLimit(n)
	}
	return nil
}

// parseBytes reads a byte count with an optional binary suffix (KiB, MiB, GiB) as GOMEMLIMIT
// does; "off" means no limit.
func parseBytes(s string) (int64, error) {
	if s == "off" {
		return 1<<63 - 1, nil
	}
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"B", 1}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = v, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a byte count (e.g. 64MiB, off)", s)
	}
	return n * mult, nil
}

// cgroupSoftLimitRatio is the share of a cgroup memory limit strait-proxy gives the Go runtime as
// its soft limit when none is set: the default ratio of github.com/KimMachineGun/automemlimit,
// which many Go services use for this, leaving headroom for memory the runtime does not manage.
const cgroupSoftLimitRatio = 0.9

// memoryLimits decides the overload manager's memory limit from the Go soft limit in force
// (goLimit: --memory-limit or GOMEMLIMIT, 0 if none) and the cgroup's (0 if none): the lower of
// the two. When only the cgroup has one and the soft limit was not turned off explicitly
// (explicitOff), it also returns a Go soft limit to set, 90 % of the cgroup's, so that the GC
// keeps garbage below the point where the kernel would kill the process (the overload manager
// counts only memory a GC cannot free; see overload.ReadGoMemory). soft is 0 when nothing is to
// be set.
func memoryLimits(goLimit, cgroup int64, explicitOff bool) (limit, soft int64) {
	switch {
	case goLimit > 0 && cgroup > 0:
		return min(goLimit, cgroup), 0
	case goLimit > 0:
		return goLimit, 0
	case cgroup > 0 && !explicitOff:
		return cgroup, int64(float64(cgroup) * cgroupSoftLimitRatio)
	}
	return cgroup, 0
}

// applyMemoryLimits sets the overload manager's memory limit (see memoryLimits) after apply has
// set the Go soft limit, and sets a soft limit from the cgroup when memoryLimits says so.
func (g gcSettings) applyMemoryLimits(limitSet bool) (limit int64) {
	goLimit := debug.SetMemoryLimit(-1)
	if goLimit == math.MaxInt64 {
		goLimit = 0
	}
	off := limitSet && g.memoryLimit == "off" || !limitSet && os.Getenv("GOMEMLIMIT") == "off"
	limit, soft := memoryLimits(goLimit, overload.CgroupMemoryLimit(), off)
	if soft > 0 {
		debug.SetMemoryLimit(soft)
	}
	return limit
}
