package overload

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strait-mesh/strait/proxy/stats"
)

// fakeMemory is an injected memory reading.
type fakeMemory struct {
	mu   sync.Mutex
	used uint64
	err  error
}

func (f *fakeMemory) set(used uint64, err error) {
	f.mu.Lock()
	f.used, f.err = used, err
	f.mu.Unlock()
}

func (f *fakeMemory) read() (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.used, f.err
}

func newTestManager(t *testing.T, limit int64, th Thresholds) (*Manager, *fakeMemory, *stats.Store, *int) {
	t.Helper()
	mem := &fakeMemory{}
	st := stats.NewStore()
	frees := new(int)
	m := New(Config{MemoryLimit: limit, Thresholds: th, ReadMemory: mem.read, FreeOSMemory: func() { *frees++ }, Stats: st, MaxConnections: -1})
	return m, mem, st, frees
}

func gauge(st *stats.Store, name string) int64 { return st.Gauge(name, "").Value() }

func TestActionsFollowThresholds(t *testing.T) {
	m, mem, st, _ := newTestManager(t, 1000, Thresholds{})
	cases := []struct {
		used                              uint64
		keepaliveOff, stopReqs, stopConns bool
		pressure                          int64
	}{
		{0, false, false, false, 0},
		{799, false, false, false, 79},
		{800, true, false, false, 80}, // at the threshold: active, as Envoy's threshold trigger
		{899, true, false, false, 89},
		{900, true, true, false, 90},
		{950, true, true, true, 95},
		{1500, true, true, true, 150},  // beyond the limit: not capped
		{100, false, false, false, 10}, // and back
	}
	for _, c := range cases {
		mem.set(c.used, nil)
		m.Sample()
		if got := m.DisableHTTPKeepalive(); got != c.keepaliveOff {
			t.Errorf("used %d: DisableHTTPKeepalive = %v", c.used, got)
		}
		if got := m.StopAcceptingRequests(); got != c.stopReqs {
			t.Errorf("used %d: StopAcceptingRequests = %v", c.used, got)
		}
		if got := !m.AcceptingConnections(); got != c.stopConns {
			t.Errorf("used %d: stop accepting connections = %v", c.used, got)
		}
		if got := gauge(st, "overload.envoy.resource_monitors.fixed_heap.pressure"); got != c.pressure {
			t.Errorf("used %d: pressure gauge = %d, want %d", c.used, got, c.pressure)
		}
		for a, want := range map[Action]bool{DisableHTTPKeepalive: c.keepaliveOff, StopAcceptingRequests: c.stopReqs, StopAcceptingConnections: c.stopConns} {
			var v int64
			if want {
				v = 1
			}
			if got := gauge(st, "overload."+a.String()+".active"); got != v {
				t.Errorf("used %d: %s.active = %d, want %d", c.used, a, got, v)
			}
			if got := gauge(st, "overload."+a.String()+".scale_percent"); got != 100*v {
				t.Errorf("used %d: %s.scale_percent = %d, want %d", c.used, a, got, 100*v)
			}
		}
	}
}

func TestCustomAndDisabledThresholds(t *testing.T) {
	th, err := ParseThresholds("disable_http_keepalive=0.5, envoy.overload_actions.stop_accepting_connections=off")
	if err != nil {
		t.Fatal(err)
	}
	m, mem, _, _ := newTestManager(t, 100, th)
	mem.set(60, nil)
	m.Sample()
	if !m.DisableHTTPKeepalive() || m.StopAcceptingRequests() {
		t.Errorf("at 60%%: keepalive off %v, stop requests %v", m.DisableHTTPKeepalive(), m.StopAcceptingRequests())
	}
	mem.set(200, nil)
	m.Sample()
	if !m.AcceptingConnections() {
		t.Error("stop_accepting_connections is off but became active")
	}
	if !m.StopAcceptingRequests() {
		t.Error("stop_accepting_requests keeps its default and should be active at 200%")
	}
	if got := m.Thresholds(); got[StopAcceptingRequests] != 0.90 || got[DisableHTTPKeepalive] != 0.5 || got[StopAcceptingConnections] != Off {
		t.Errorf("thresholds in force: %v", got)
	}
}

func TestParseThresholdsErrors(t *testing.T) {
	for _, s := range []string{"nope=0.5", "shrink_heap", "shrink_heap=0", "shrink_heap=1.5", "shrink_heap=abc", "shrink_heap=-0.1"} {
		if _, err := ParseThresholds(s); err == nil {
			t.Errorf("ParseThresholds(%q): no error", s)
		}
	}
	th, err := ParseThresholds("")
	if err != nil || th != (Thresholds{}) {
		t.Errorf("empty: %v %v", th, err)
	}
	if s := DefaultThresholds().String(); s != "disable_http_keepalive=0.8,stop_accepting_requests=0.9,stop_accepting_connections=0.95,shrink_heap=0.95" {
		t.Errorf("String = %q", s)
	}
	back, err := ParseThresholds(DefaultThresholds().String())
	if err != nil || back != DefaultThresholds() {
		t.Errorf("round trip: %v %v", back, err)
	}
}

func TestNoLimitMeansNoMonitor(t *testing.T) {
	m, mem, st, frees := newTestManager(t, 0, Thresholds{})
	mem.set(1<<40, nil)
	m.Sample()
	if m.DisableHTTPKeepalive() || m.StopAcceptingRequests() || !m.AcceptingConnections() || *frees != 0 {
		t.Error("an action fired without a memory limit")
	}
	if gauge(st, "overload.envoy.resource_monitors.fixed_heap.pressure") != 0 {
		t.Error("pressure without a limit")
	}
	done := make(chan struct{})
	go func() { m.Run(context.Background()); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run without a limit did not return")
	}
}

func TestFailedReadingKeepsState(t *testing.T) {
	m, mem, st, _ := newTestManager(t, 100, Thresholds{})
	mem.set(99, nil)
	m.Sample()
	mem.set(0, errors.New("boom"))
	m.Sample()
	if !m.StopAcceptingRequests() {
		t.Error("a failed reading reset the state")
	}
	if n := st.Counter("overload.envoy.resource_monitors.fixed_heap.failed_updates", "").Value(); n != 1 {
		t.Errorf("failed_updates = %d", n)
	}
}

func TestShrinkHeapAtMostEveryInterval(t *testing.T) {
	m, mem, st, frees := newTestManager(t, 100, Thresholds{})
	now := time.Unix(1000, 0)
	m.now = func() time.Time { return now }
	mem.set(94, nil)
	m.Sample()
	if *frees != 0 {
		t.Fatalf("shrunk below the threshold")
	}
	mem.set(96, nil)
	m.Sample() // first activation shrinks at once
	m.Sample()
	now = now.Add(DefaultShrinkHeapInterval - time.Millisecond)
	m.Sample()
	if *frees != 1 {
		t.Fatalf("frees = %d within one interval, want 1", *frees)
	}
	now = now.Add(time.Millisecond)
	m.Sample()
	if *frees != 2 {
		t.Fatalf("frees = %d after the interval, want 2", *frees)
	}
	if n := st.Counter("overload.envoy.overload_actions.shrink_heap.shrink_count", "").Value(); n != 2 {
		t.Errorf("shrink_count = %d", n)
	}
}

func TestRunSamplesOnATimer(t *testing.T) {
	mem := &fakeMemory{}
	mem.set(97, nil)
	m := New(Config{MemoryLimit: 100, ReadMemory: mem.read, FreeOSMemory: func() {}, Interval: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	for i := 0; i < 2000 && m.AcceptingConnections(); i++ {
		time.Sleep(5 * time.Millisecond)
	}
	if m.AcceptingConnections() {
		t.Fatal("Run never sampled")
	}
	mem.set(10, nil)
	for i := 0; i < 2000 && !m.AcceptingConnections(); i++ {
		time.Sleep(5 * time.Millisecond)
	}
	if !m.AcceptingConnections() {
		t.Fatal("Run did not sample again")
	}
	cancel()
	<-done
}

func TestGlobalConnectionLimit(t *testing.T) {
	st := stats.NewStore()
	m := New(Config{MaxConnections: 3, Stats: st})
	for i := 0; i < 3; i++ {
		if !m.AcquireConnection() {
			t.Fatalf("connection %d refused under the limit", i)
		}
	}
	if m.AcquireConnection() {
		t.Fatal("fourth connection admitted over a limit of 3")
	}
	if got := gauge(st, "server.total_connections"); got != 3 {
		t.Errorf("server.total_connections = %d", got)
	}
	if got := gauge(st, "overload.global_downstream_max_connections"); got != 3 {
		t.Errorf("limit gauge = %d", got)
	}
	m.ReleaseConnection()
	if !m.AcquireConnection() {
		t.Fatal("a released slot was not reusable")
	}

	// Concurrent acquirers never exceed the limit.
	m = New(Config{MaxConnections: 10})
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := 0
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if m.AcquireConnection() {
				mu.Lock()
				got++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if got != 10 || m.Connections() != 10 {
		t.Errorf("admitted %d (count %d), want 10", got, m.Connections())
	}

	unlimited := New(Config{MaxConnections: -1})
	for i := 0; i < 1000; i++ {
		if !unlimited.AcquireConnection() {
			t.Fatal("unlimited manager refused a connection")
		}
	}
	if unlimited.MaxConnections() != 0 {
		t.Errorf("MaxConnections = %d for unlimited", unlimited.MaxConnections())
	}
	if d := New(Config{}).MaxConnections(); d != DefaultMaxConnections() || d < 1 || d > 50000 {
		t.Errorf("default limit %d, DefaultMaxConnections %d", d, DefaultMaxConnections())
	}
}

func TestReadGoMemory(t *testing.T) {
	n, err := ReadGoMemory()
	if err != nil {
		t.Fatal(err)
	}
	if n < 1<<20 || n > 1<<36 {
		t.Errorf("ReadGoMemory = %d bytes, implausible", n)
	}
	// Garbage and free heap do not count; live objects do.
	if got := goRetained(100, 10, 20, 50, 30); got != 50 {
		t.Errorf("goRetained = %d, want 100-10-20-(50-30) = 50", got)
	}
	if got := goRetained(10, 20, 0, 0, 0); got != 0 {
		t.Errorf("goRetained underflow = %d", got)
	}
}

func writeFile(t *testing.T, root, rel, content string) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCgroupMemoryLimit(t *testing.T) {
	for _, c := range []struct {
		name  string
		files map[string]string // under the root
		want  int64
	}{
		{"v2 in its own namespace", map[string]string{
			"proc/self/cgroup":                 "0::/\n",
			"sys/fs/cgroup/cgroup.controllers": "cpu memory\n",
			"sys/fs/cgroup/memory.max":         "134217728\n",
		}, 128 << 20},
		{"v2 nested: lowest ancestor wins", map[string]string{
			"proc/self/cgroup":                           "0::/kubepods/pod1/ctr\n",
			"sys/fs/cgroup/cgroup.controllers":           "memory\n",
			"sys/fs/cgroup/kubepods/pod1/ctr/memory.max": "max\n",
			"sys/fs/cgroup/kubepods/pod1/memory.max":     "67108864\n",
			"sys/fs/cgroup/kubepods/memory.max":          "1073741824\n",
		}, 64 << 20},
		{"v2 unlimited", map[string]string{
			"proc/self/cgroup":                 "0::/\n",
			"sys/fs/cgroup/cgroup.controllers": "memory\n",
			"sys/fs/cgroup/memory.max":         "max\n",
		}, 0},
		{"v1 with a path from another namespace", map[string]string{
			"proc/self/cgroup":                           "5:cpu,cpuacct:/x\n4:memory:/docker/abc\n0::/\n",
			"sys/fs/cgroup/memory/memory.limit_in_bytes": "268435456\n",
		}, 256 << 20},
		{"v1 unlimited", map[string]string{
			"proc/self/cgroup":                           "4:memory:/\n",
			"sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",
		}, 0},
		{"none", nil, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			for rel, content := range c.files {
				writeFile(t, root, rel, content)
			}
			if got := cgroupMemoryLimit(root); got != c.want {
				t.Errorf("limit = %d, want %d", got, c.want)
			}
		})
	}
	// The real one must not fail, whatever this machine has.
	if n := CgroupMemoryLimit(); n < 0 {
		t.Errorf("CgroupMemoryLimit = %d", n)
	}
}

func TestStatsInPrometheus(t *testing.T) {
	m, mem, st, _ := newTestManager(t, 100, Thresholds{})
	mem.set(91, nil)
	m.Sample()
	var b strings.Builder
	if err := st.WritePrometheus(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"envoy_overload_envoy_resource_monitors_fixed_heap_pressure 91",
		"envoy_overload_envoy_overload_actions_stop_accepting_requests_active 1",
		"envoy_overload_envoy_overload_actions_stop_accepting_connections_active 0",
		"envoy_overload_envoy_overload_actions_disable_http_keepalive_scale_percent 100",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("prometheus output lacks %q", want)
		}
	}
	b.Reset()
	st.WriteText(&b, "overload.")
	if !strings.Contains(b.String(), "overload.envoy.overload_actions.stop_accepting_requests.active: 1") {
		t.Errorf("/stats text:\n%s", b.String())
	}
}
