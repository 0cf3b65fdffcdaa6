package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
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
