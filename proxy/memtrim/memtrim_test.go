package memtrim

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestTextMappingsParse(t *testing.T) {
	const exe = "/usr/local/bin/strait proxy (deleted)"
	maps := `00400000-00e20000 r-xp 00000000 fd:01 123 /usr/local/bin/strait proxy (deleted)
00e20000-01b41000 r--p 00a20000 fd:01 123 /usr/local/bin/strait proxy (deleted)
01b41000-01bc2000 rw-p 01741000 fd:01 123 /usr/local/bin/strait proxy (deleted)
01bc2000-01c00000 rw-p 00000000 00:00 0
01c00000-01c01000 r--s 00000000 fd:01 123 /usr/local/bin/strait proxy (deleted)
7f0000000000-7f0000001000 r-xp 00000000 fd:01 9 /usr/lib/libc.so.6
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
`
	ms, err := textMappings(bufio.NewScanner(strings.NewReader(maps)), exe)
	if err != nil {
		t.Fatal(err)
	}
	want := []Mapping{{0x400000, 0xe20000, "r-xp"}, {0xe20000, 0x1b41000, "r--p"}}
	if len(ms) != len(want) || ms[0] != want[0] || ms[1] != want[1] {
		t.Fatalf("got %+v, want %+v (no writable, shared or other files' mappings)", ms, want)
	}
	if _, err := textMappings(bufio.NewScanner(strings.NewReader("zz-yy r-xp 0 0:0 1 "+exe+"\n")), exe); err == nil {
		t.Fatal("a bad address range was accepted")
	}
}

func rssFileKB(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "RssFile:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Skip("no RssFile in /proc/self/status")
	return 0
}

// TestReleaseTextLowersRSS releases this test binary's own read-only pages: the process keeps
// running (its code maps back as it runs), and its file-backed resident set is smaller.
func TestReleaseTextLowersRSS(t *testing.T) {
	before := rssFileKB(t)
	ms, err := ReleaseText()
	if errors.Is(err, ErrNotStatic) {
		t.Skip("this test binary is not a static executable at a fixed address (-race, cgo): ReleaseText releases nothing; TestReleaseTextByBuildMode covers it")
	}
	if err != nil {
		t.Fatal(err)
	}
	after := rssFileKB(t)
	exec := false
	for _, m := range ms {
		exec = exec || m.Perms[2] == 'x'
	}
	if !exec {
		t.Fatalf("no executable mapping released: %+v", ms)
	}
	if after >= before {
		t.Fatalf("RssFile %d kB before, %d kB after", before, after)
	}
	t.Logf("RssFile %d kB → %d kB", before, after)
}

func TestTrimmerSettlesAndSpaces(t *testing.T) {
	var n atomic.Int32
	done := make(chan struct{}, 10)
	tr := New(20*time.Millisecond, time.Hour)
	tr.release = func() error { n.Add(1); return nil }
	tr.Trimmed = func(error) { done <- struct{}{} }
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { tr.Run(ctx); close(stopped) }()
	for i := 0; i < 5; i++ {
		tr.Kick()
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("no release after the kicks settled")
	}
	if got := n.Load(); got != 1 {
		t.Fatalf("%d releases for one settled burst", got)
	}
	tr.Kick() // within the interval (an hour): no second release
	time.Sleep(100 * time.Millisecond)
	if got := n.Load(); got != 1 {
		t.Fatalf("%d releases within the interval", got)
	}
	cancel()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

// TestReleaseTextByBuildMode builds a program that releases its own pages and then calls
// through interfaces, in each build mode: a static executable at a fixed address (as shipped)
// must release and keep running; a position-independent one, whose read-only mappings hold
// relocated pages, and a dynamically linked one (cgo, when a C compiler is there) must release
// nothing and keep running.
func TestReleaseTextByBuildMode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds three programs")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool")
	}
	modes := []struct {
		name    string
		env     []string
		args    []string
		release bool
	}{
		{"static", []string{"CGO_ENABLED=0"}, nil, true},
		{"static-pie", []string{"CGO_ENABLED=0"}, []string{"-buildmode=pie"}, false},
	}
	if _, err := exec.LookPath("gcc"); err == nil {
		modes = append(modes, struct {
			name    string
			env     []string
			args    []string
			release bool
		}{"cgo", []string{"CGO_ENABLED=1"}, []string{"-ldflags=-linkmode=external"}, false})
	}
	dir := t.TempDir()
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			bin := filepath.Join(dir, m.name)
			args := append([]string{"build", "-o", bin}, m.args...)
			build := exec.Command(goBin, append(args, "./testdata/relro")...)
			build.Env = append(os.Environ(), m.env...)
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("go build: %v\n%s", err, out)
			}
			out, err := exec.Command(bin).CombinedOutput()
			if err != nil {
				t.Fatalf("the %s program failed after ReleaseText: %v\n%s", m.name, err, out)
			}
			released := !strings.Contains(string(out), "released 0\n")
			if released != m.release {
				t.Fatalf("%s: released pages %v, want %v\n%s", m.name, released, m.release, out)
			}
		})
	}
}

// TestTrimmerReleasesUnderSteadyKicks: updates that never pause for the settle time (endpoint
// churn) must not put the release off for ever: a burst an interval old is released.
func TestTrimmerReleasesUnderSteadyKicks(t *testing.T) {
	done := make(chan struct{}, 10)
	tr := New(100*time.Millisecond, 300*time.Millisecond)
	tr.release = func() error { return nil }
	tr.Trimmed = func(error) { done <- struct{}{} }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go tr.Run(ctx)
	deadline := time.After(10 * time.Second)
	for {
		tr.Kick()
		select {
		case <-done:
			return
		case <-deadline:
			t.Fatal("no release while kicks kept coming every 20 ms")
		case <-time.After(20 * time.Millisecond):
		}
	}
}
