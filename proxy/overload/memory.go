package overload

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime/metrics"
	"strconv"
	"strings"
)

// The runtime/metrics samples ReadGoMemory reads, in this order.
var memoryMetrics = []string{
	"/memory/classes/total:bytes",         // everything the runtime mapped read-write
	"/memory/classes/heap/released:bytes", // heap returned to the OS
	"/memory/classes/heap/free:bytes",     // free heap, not yet returned
	"/memory/classes/heap/objects:bytes",  // live objects plus garbage not yet swept
	"/gc/heap/live:bytes",                 // live objects as marked by the last GC
}

// ReadGoMemory returns the memory the Go runtime holds that a garbage collection would not give
// back: all memory it mapped, less the heap already released to the OS, the free heap and the
// dead objects found by the last GC. That is live heap plus goroutine stacks, runtime metadata
// and fragmentation, which is what pushes the process towards its limit.
//
// Garbage is left out on purpose: the GC keeps it under the Go soft memory limit (--memory-limit,
// GOMEMLIMIT; strait-proxy sets one below a cgroup limit), so the heap routinely fills up to that
// limit before each collection; counting it would make the pressure hover near 100 % on a proxy
// whose live heap is only half of it, and shed load for nothing. Objects allocated since the last
// collection are counted at the next one, which the soft limit brings forward as memory grows.
//
// It reads runtime/metrics (no stop-the-world) in a few microseconds.
func ReadGoMemory() (uint64, error) {
	s := make([]metrics.Sample, len(memoryMetrics))
	for i, n := range memoryMetrics {
		s[i].Name = n
	}
	metrics.Read(s)
	var v [5]uint64
	for i := range s {
		if s[i].Value.Kind() != metrics.KindUint64 {
			return 0, fmt.Errorf("reading %s: not supported by this Go runtime", s[i].Name)
		}
		v[i] = s[i].Value.Uint64()
	}
	return goRetained(v[0], v[1], v[2], v[3], v[4]), nil
}

// goRetained computes ReadGoMemory's result from the runtime's memory classes.
func goRetained(total, released, free, objects, live uint64) uint64 {
	used := sub(sub(total, released), free)
	return sub(used, sub(objects, live))
}

// sub is a - b, or 0 when b > a (the metrics are not read atomically together).
func sub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

// unlimited: cgroup v1 reports "no limit" as a huge page-rounded number (9223372036854771712).
const unlimited = 1 << 62

// CgroupMemoryLimit returns the memory limit of this process's cgroup in bytes, or 0 when there
// is none (no limit set, no cgroup file, not Linux). With cgroup v2 it is the lowest memory.max
// from the process's cgroup up to the root of the mount; with cgroup v1, memory.limit_in_bytes.
// Inside a container with its own cgroup namespace (the usual case) /sys/fs/cgroup is the
// container's cgroup.
func CgroupMemoryLimit() int64 { return cgroupMemoryLimit("/") }

func cgroupMemoryLimit(root string) int64 {
	v2path, v1path := selfCgroup(filepath.Join(root, "proc/self/cgroup"))
	base := filepath.Join(root, "sys/fs/cgroup")
	// cgroup v2: the process's cgroup and its ancestors within the mount; the lowest limit wins.
	if _, err := os.Stat(filepath.Join(base, "cgroup.controllers")); err == nil {
		lim := int64(0)
		for _, dir := range ancestors(base, v2path) {
			if n, ok := readLimit(filepath.Join(dir, "memory.max")); ok && n > 0 && (lim == 0 || n < lim) {
				lim = n
			}
		}
		return lim
	}
	// cgroup v1: the memory controller's hierarchy.
	for _, dir := range []string{filepath.Join(base, "memory", v1path), filepath.Join(base, "memory")} {
		if n, ok := readLimit(filepath.Join(dir, "memory.limit_in_bytes")); ok {
			return n
		}
	}
	return 0
}

// selfCgroup parses /proc/self/cgroup: the v2 path ("0::/path") and the v1 memory path
// ("N:memory:/path"), "" when absent.
func selfCgroup(file string) (v2, v1 string) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			v2 = parts[2]
		case containsField(parts[1], "memory"):
			v1 = parts[2]
		}
	}
	return v2, v1
}

func containsField(list, f string) bool {
	for _, s := range strings.Split(list, ",") {
		if s == f {
			return true
		}
	}
	return false
}

// ancestors returns base/path and each parent directory up to base, deepest first; only
// directories that exist (a path from another cgroup namespace does not).
func ancestors(base, path string) []string {
	var out []string
	p := filepath.Clean("/" + path)
	for {
		dir := filepath.Join(base, p)
		if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
			out = append(out, dir)
		}
		if p == "/" {
			return out
		}
		p = filepath.Dir(p)
	}
}

// readLimit reads a cgroup limit file: a byte count, or "max". ok is false when the file
// cannot be read or parsed; a limit of "max" or beyond 2^62 is 0 (none).
func readLimit(file string) (int64, bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, false
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, true
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, false
	}
	if n >= unlimited || n > math.MaxInt64 {
		return 0, true
	}
	return int64(n), true
}
