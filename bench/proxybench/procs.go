package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/strait-mesh/strait/internal/procstat"
)

// proc is a child process of the benchmark with its log file.
type proc struct {
	name string
	cmd  *exec.Cmd
}

// start launches a process pinned to cpu (-1 for no pinning) with output to logDir/name.log.
func start(logDir, name string, cpu int, env []string, argv ...string) (*proc, error) {
	if cpu >= 0 {
		if _, err := exec.LookPath("taskset"); err == nil {
			argv = append([]string{"taskset", "-c", strconv.Itoa(cpu)}, argv...)
		}
	}
	logf, err := os.Create(filepath.Join(logDir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	return &proc{name: name, cmd: cmd}, nil
}

// stop ends the process group: SIGTERM, then SIGKILL after a grace period.
func (p *proc) stop() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	pgid := -p.cmd.Process.Pid
	_ = syscall.Kill(pgid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		_ = syscall.Kill(pgid, syscall.SIGKILL)
		<-done
	}
}

// pids returns the process and its descendants (nginx workers, taskset children).
func (p *proc) pids() []int {
	root := p.cmd.Process.Pid
	all := []int{root}
	entries, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		f := statFields(string(b))
		if len(f) > 1 {
			ppid, _ := strconv.Atoi(f[1])
			parent[pid] = ppid
		}
	}
	for changed := true; changed; {
		changed = false
		for pid, pp := range parent {
			if contains(all, pp) && !contains(all, pid) {
				all = append(all, pid)
				changed = true
			}
		}
	}
	return all
}

func contains(xs []int, x int) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// statFields returns the fields of /proc/PID/stat after the command name.
func statFields(s string) []string {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

// cpuSeconds is the user+system CPU time of the process tree.
func (p *proc) cpuSeconds() float64 {
	var sec float64
	for _, pid := range p.pids() {
		sec += procstat.CPUSeconds(pid)
	}
	return sec
}

// rssMiB is the summed resident set size of the process tree (taskset itself has exec'd away).
func (p *proc) rssMiB() float64 {
	var b uint64
	for _, pid := range p.pids() {
		b += procstat.Status(pid, "VmRSS")
	}
	return float64(b) / (1 << 20)
}

// waitHTTP polls url until it answers with status want (any status when want is 0), bounded by timeout.
func waitHTTP(ctx context.Context, url string, want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		code, err := httpStatus(ctx, url)
		if err == nil && (want == 0 || code == want) {
			return nil
		}
		last = fmt.Sprint(code, err)
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready after %s (last: %s)", url, timeout, last)
}

// waitTCP polls addr until it accepts a connection, bounded by timeout.
func waitTCP(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not listening after %s", addr, timeout)
}
