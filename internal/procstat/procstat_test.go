package procstat

import (
	"os"
	"testing"
)

// TestSelf reads this process: a resident set, a peak at least as large, CPU time that grows.
func TestSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc")
	}
	rss, hwm := Status(0, "VmRSS"), Status(os.Getpid(), "VmHWM")
	if rss == 0 || hwm < rss {
		t.Errorf("VmRSS %d, VmHWM %d", rss, hwm)
	}
	if Status(0, "NoSuchField") != 0 || Status(1<<30, "VmRSS") != 0 {
		t.Error("a missing field or process reads as non-zero")
	}
	c0 := CPUSeconds(0)
	for x, i := 0, 0; i < 1e8 && CPUSeconds(0) <= c0; i++ {
		x += i
		_ = x
	}
	if CPUSeconds(0) <= c0 {
		t.Errorf("CPU time did not grow from %v", c0)
	}
}
