// Package testenv starts real Strait processes for end-to-end tests: straitd and strait-proxy
// binaries built once per test process, on loopback ports, with their logs kept for failures.
package testenv

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// repoRoot finds the module root from this file's location.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// BinDirEnv names an environment variable that, when set, points at a directory of already built
// straitd, strait-proxy and strait binaries to use instead of building them (for example binaries
// built with -race, or from another tree).
const BinDirEnv = "STRAIT_E2E_BIN"

// RaceEnv names an environment variable that, when set to 1, builds the binaries with the race
// detector; a process that reports a data race then fails the test that started it.
const RaceEnv = "STRAIT_E2E_RACE"

// Binaries builds straitd, strait-proxy and strait once per test process and returns the
// directory holding them, or returns $STRAIT_E2E_BIN when that is set.
func Binaries(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if dir := os.Getenv(BinDirEnv); dir != "" {
			binDir = dir
			return
		}
		// Each test process builds its own copy (~280 MB) and nothing removes it when the
		// process ends (Go has no exit hook outside TestMain): remove the copies earlier
		// processes left, once they are older than any test run can be.
		removeStaleBinaries(os.TempDir(), staleBinaries)
		binDir, buildErr = os.MkdirTemp("", binDirPrefix)
		if buildErr != nil {
			return
		}
		// Sidecars run as uid 1337 in interception tests: they must be able to run the binaries.
		if buildErr = os.Chmod(binDir, 0o755); buildErr != nil {
			return
		}
		args := []string{"build", "-o", binDir + "/"}
		// Static binaries (CGO_ENABLED=0), as the images ship them (internal/images: FROM scratch,
		// no libc) and as make build builds strait-proxy; the race detector needs cgo.
		cgo := "CGO_ENABLED=0"
		if os.Getenv(RaceEnv) == "1" {
			args, cgo = append(args, "-race"), "CGO_ENABLED=1"
		}
		cmd := exec.Command("go", append(args, "./cmd/straitd", "./cmd/strait-proxy", "./cmd/strait", "./samples/bookstore/cmd/bookstore")...)
		cmd.Env = append(os.Environ(), cgo)
		cmd.Dir = repoRoot()
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("building binaries: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// binDirPrefix names the directories Binaries builds into, under os.TempDir.
const binDirPrefix = "strait-bin-"

// staleBinaries is the age after which a binaries directory belongs to no running test process:
// far beyond the longest test timeout used (40 minutes).
const staleBinaries = 3 * time.Hour

// removeStaleBinaries removes the binaries directories under root that were last modified more
// than age ago. Errors are ignored: this is housekeeping, and another process may be removing
// the same directory.
func removeStaleBinaries(root string, age time.Duration) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), binDirPrefix) {
			continue
		}
		info, err := e.Info()
		if err != nil || time.Since(info.ModTime()) < age {
			continue
		}
		_ = os.RemoveAll(filepath.Join(root, e.Name()))
	}
}

// Process is a started binary whose output is captured.
type Process struct {
	Name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  strings.Builder
	done chan struct{} // closed when the process has exited
	read chan struct{} // closed when its output has been read to the end
}

// Output returns everything the process printed so far.
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// Start runs argv with output captured; the process is stopped (SIGTERM, then SIGKILL) at test
// cleanup, and its output is logged if the test failed.
func Start(t testing.TB, name string, env []string, argv ...string) *Process {
	t.Helper()
	p := &Process{Name: name, done: make(chan struct{}), read: make(chan struct{})}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout, p.cmd.Stderr = w, w
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	w.Close()
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text())
			p.out.WriteByte('\n')
			p.mu.Unlock()
		}
		r.Close()
		close(p.read)
	}()
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.Stop(5 * time.Second)
		if strings.Contains(p.Output(), "WARNING: DATA RACE") {
			t.Errorf("%s reported a data race", name)
		}
		if t.Failed() {
			t.Logf("--- %s output ---\n%s", name, p.Output())
		}
	})
	return p
}

// Pid returns the process's ID (for /proc readings such as its memory).
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the process.
func (p *Process) Signal(sig syscall.Signal) { _ = p.cmd.Process.Signal(sig) }

// DumpGoroutines sends SIGQUIT, on which a Go binary prints every goroutine's stack and exits,
// and waits up to 5 s for it to exit, so that the stacks are in Output (logged when the test
// fails). Use it when a test finds the process stuck.
func (p *Process) DumpGoroutines() {
	p.Signal(syscall.SIGQUIT)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
	select {
	case <-p.read:
	case <-time.After(2 * time.Second):
	}
}

// Exited returns a channel closed when the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.done }

// Stop sends SIGTERM and waits up to grace before killing the process group, then waits
// (briefly) until its output is read to the end.
func (p *Process) Stop(grace time.Duration) {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	}
	select {
	case <-p.read:
	case <-time.After(2 * time.Second): // a child holding the pipe open
	}
}

// WaitOutput waits until the output matches re, and returns the submatches.
func (p *Process) WaitOutput(t testing.TB, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(p.Output()); m != nil {
			return m
		}
		select {
		case <-p.done:
			if m := re.FindStringSubmatch(p.Output()); m != nil {
				return m
			}
			t.Fatalf("%s exited before printing %s:\n%s", p.Name, re, p.Output())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("%s did not print %s within %s:\n%s", p.Name, re, timeout, p.Output())
	return nil
}

// FreePort returns a TCP port that was free on every address a moment ago, for a listener a
// child process will bind (a gateway binds 0.0.0.0). It picks from 20000–32767, below Linux's
// ephemeral range (32768–60999): a port the kernel hands out for outgoing connections could be
// taken as a source port by another test's client before the listener binds it. A port is
// handed out once per process: a port given to one caller may not be bound yet (its proxy still
// starting) when another asks, and the two would then collide (a gateway on 0.0.0.0:P failing to
// bind beside another proxy's admin on 127.0.0.1:P).
func FreePort(t testing.TB) int {
	t.Helper()
	for i := 0; i < 200; i++ {
		port := 20000 + rand.IntN(12768)
		if !claimPort(port) {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("0.0.0.0:%d", port))
		if err != nil {
			continue
		}
		ln.Close()
		return port
	}
	t.Fatal("no free port in 20000-32767 after 200 tries")
	return 0
}

// handedOut holds the ports FreePort returned (or found taken) in this process.
var handedOut struct {
	mu    sync.Mutex
	ports map[int]bool
}

// claimPort reports whether port was not handed out yet, and marks it.
func claimPort(port int) bool {
	handedOut.mu.Lock()
	defer handedOut.mu.Unlock()
	if handedOut.ports[port] {
		return false
	}
	if handedOut.ports == nil {
		handedOut.ports = make(map[int]bool)
	}
	handedOut.ports[port] = true
	return true
}

// Eventually polls cond every 20 ms until it returns nil or timeout passes, then fails with the
// last error. It is for waiting on conditions, never for asserting on time.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("condition not met within %s: %v", timeout, err)
}

// WaitFor polls cond every 10 ms until it holds, and fails the test naming what it waited for
// if timeout passes first. Like Eventually it is for waiting, never for asserting on time.
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Get performs a GET with a short timeout and returns status and body.
func Get(ctx context.Context, url string, header http.Header) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var b strings.Builder
	_, err = bufio.NewReader(resp.Body).WriteTo(&b)
	return resp.StatusCode, b.String(), err
}
