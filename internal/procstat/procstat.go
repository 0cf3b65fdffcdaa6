// Package procstat reads a Linux process's CPU time and memory from /proc, for benchmarks and
// their reports.
package procstat

import (
	"os"
	"strconv"
	"strings"
)

// path is /proc/PID, or /proc/self for a pid <= 0.
func path(pid int, file string) string {
	if pid <= 0 {
		return "/proc/self/" + file
	}
	return "/proc/" + strconv.Itoa(pid) + "/" + file
}

// Status returns a "kB" field of /proc/PID/status (VmRSS, VmHWM...) in bytes, 0 when the
// process or the field is missing. pid <= 0 is this process.
func Status(pid int, field string) uint64 {
	b, err := os.ReadFile(path(pid, "status"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, field+":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0
		}
		return kb << 10
	}
	return 0
}

// CPUSeconds returns the user and system CPU time of a process (utime + stime of
// /proc/PID/stat, in ticks of 1/100 s), 0 when it is missing. pid <= 0 is this process.
func CPUSeconds(pid int) float64 {
	b, err := os.ReadFile(path(pid, "stat"))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:]) // state first: utime and stime are fields 14 and 15 of the line
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	sys, _ := strconv.ParseFloat(f[12], 64)
	return (u + sys) / 100 // USER_HZ is 100 on Linux
}
