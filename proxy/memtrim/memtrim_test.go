package memtrim

import (
	"bufio"
	"context"
	"os"
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
