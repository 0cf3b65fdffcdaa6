package file

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/internal/testenv"
)

func vsDoc(name, host string) string {
	return "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: " + name + ", namespace: ns}\n" +
		"spec: {hosts: [" + host + "], http: [{route: [{destination: {host: " + host + "}}]}]}\n"
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// hosts returns name → first host of the served VirtualServices.
func hosts(s *Source) map[string]string {
	out := map[string]string{}
	for _, o := range s.List() {
		if o.Kind == config.VirtualService {
			out[o.Name] = vsHost(o)
		}
	}
	return out
}

func vsHost(o *config.Object) string {
	type hoster interface{ GetHosts() []string }
	if h, ok := o.Spec.(hoster); ok && len(h.GetHosts()) > 0 {
		return h.GetHosts()[0]
	}
	return ""
}

func quietOptions() Options {
	return Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Debounce: 20 * time.Millisecond}
}

// eventually polls cond until it holds or 10s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, what, 10*time.Second, cond)
}

func TestLoadAndLastKnownGood(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), vsDoc("a", "a1")+"---\n"+vsDoc("b", "b1"))
	write(t, filepath.Join(dir, "sub", "c.yml"), vsDoc("c", "c1"))
	write(t, filepath.Join(dir, "notes.txt"), "not config")
	write(t, filepath.Join(dir, ".hidden.yaml"), vsDoc("hidden", "h"))
	s := newSource(t, dir, quietOptions())
	if got := hosts(s); len(got) != 3 || got["a"] != "a1" || got["b"] != "b1" || got["c"] != "c1" {
		t.Fatalf("initial: %v", got)
	}
	if len(s.Errors()) != 0 {
		t.Fatalf("errors: %v", s.Errors())
	}

	// b becomes invalid (semantically) and a changes: a is updated, b keeps its last good version.
	write(t, filepath.Join(dir, "a.yaml"), vsDoc("a", "a2")+"---\n"+vsDoc("b", "Bad..Host"))
	if !s.Reload() {
		t.Fatal("reload reported no change")
	}
	if got := hosts(s); got["a"] != "a2" || got["b"] != "b1" {
		t.Fatalf("after bad b: %v", got)
	}
	errs := s.Errors()
	if len(errs) == 0 || !strings.Contains(errs[0].Error(), "a.yaml:9: VirtualService ns/b: spec.hosts[0]") {
		t.Fatalf("errors: %v", errs)
	}

	// b stops decoding (unknown field): still last known good.
	write(t, filepath.Join(dir, "a.yaml"), vsDoc("a", "a2")+"---\n"+strings.Replace(vsDoc("b", "b2"), "hosts:", "hostz:", 1))
	s.Reload()
	if got := hosts(s); got["b"] != "b1" {
		t.Fatalf("after undecodable b: %v", got)
	}

	// The whole file becomes unparseable YAML: its objects keep serving.
	write(t, filepath.Join(dir, "a.yaml"), "apiVersion: [\n")
	s.Reload()
	if got := hosts(s); got["a"] != "a2" || got["b"] != "b1" {
		t.Fatalf("after broken file: %v", got)
	}
	if len(s.Errors()) != 1 || !strings.Contains(s.Errors()[0].Error(), "document 1") {
		t.Fatalf("errors: %v", s.Errors())
	}

	// Fixed: b is new again, no errors; reload without changes reports no change.
	write(t, filepath.Join(dir, "a.yaml"), vsDoc("a", "a3")+"---\n"+vsDoc("b", "b3"))
	s.Reload()
	if got := hosts(s); got["a"] != "a3" || got["b"] != "b3" || len(s.Errors()) != 0 {
		t.Fatalf("after fix: %v %v", got, s.Errors())
	}
	if s.Reload() {
		t.Error("reload without changes reported a change")
	}

	// A document removed from a valid file goes away; a deleted file's objects go away.
	write(t, filepath.Join(dir, "a.yaml"), vsDoc("a", "a3"))
	if err := os.Remove(filepath.Join(dir, "sub", "c.yml")); err != nil {
		t.Fatal(err)
	}
	s.Reload()
	if got := hosts(s); len(got) != 1 || got["a"] != "a3" {
		t.Fatalf("after removals: %v", got)
	}

	// An object whose only definition is invalid from the start is not served.
	write(t, filepath.Join(dir, "new.yaml"), vsDoc("n", "Bad..Host"))
	s.Reload()
	if _, ok := hosts(s)["n"]; ok || len(s.Errors()) == 0 {
		t.Fatalf("new invalid object: %v %v", hosts(s), s.Errors())
	}
}

func TestDuplicatesFirstWins(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "1.yaml"), vsDoc("x", "first"))
	write(t, filepath.Join(dir, "2.yaml"), vsDoc("x", "second"))
	s := newSource(t, dir, quietOptions())
	if got := hosts(s); got["x"] != "first" {
		t.Fatalf("got %v", got)
	}
	errs := s.Errors()
	var ce *config.Error
	if len(errs) != 1 || !errors.As(errs[0], &ce) || !strings.HasSuffix(ce.Origin, "2.yaml") || !strings.Contains(ce.Msg, "1.yaml") {
		t.Fatalf("errors: %v", errs)
	}
}

func TestMissingDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	if _, err := New(dir, quietOptions()); err == nil || !strings.Contains(err.Error(), "opening config directory") {
		t.Fatalf("New on a missing directory: %v", err)
	}
	file := filepath.Join(t.TempDir(), "f.yaml")
	write(t, file, "")
	if _, err := New(file, quietOptions()); err == nil {
		t.Fatal("New on a file returned no error")
	}
	// The directory disappears after New: its objects go away, Run reports the error.
	dir = t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), vsDoc("a", "a1"))
	s := newSource(t, dir, quietOptions())
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	s.Reload()
	if len(s.List()) != 0 || len(s.Errors()) != 1 {
		t.Fatalf("list %v errors %v", s.List(), s.Errors())
	}
	if err := s.Run(context.Background(), nil); err == nil {
		t.Fatal("Run on a missing directory returned nil")
	}
}

func newSource(t *testing.T, dir string, opts Options) *Source {
	t.Helper()
	s, err := New(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// runSource starts Run and returns a function reporting how many times onChange ran.
func runSource(t *testing.T, s *Source) func() int {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	changes := 0
	done := make(chan error, 1)
	go func() {
		done <- s.Run(ctx, func() { mu.Lock(); changes++; mu.Unlock() })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return func() int { mu.Lock(); defer mu.Unlock(); return changes }
}

func TestWatch(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), vsDoc("a", "a1"))
	s := newSource(t, dir, quietOptions())
	changes := runSource(t, s)
	// Give the watcher a moment to be installed: poll until a first write is seen.
	write(t, filepath.Join(dir, "b.yaml"), vsDoc("b", "b1"))
	eventually(t, "added file", func() bool { return hosts(s)["b"] == "b1" })

	write(t, filepath.Join(dir, "a.yaml"), vsDoc("a", "a2"))
	eventually(t, "changed file", func() bool { return hosts(s)["a"] == "a2" })

	// Editors write a temporary file and rename it over the original.
	tmp := filepath.Join(dir, ".a.yaml.swp")
	write(t, tmp, vsDoc("a", "a3"))
	if err := os.Rename(tmp, filepath.Join(dir, "a.yaml")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "rename-replaced file", func() bool { return hosts(s)["a"] == "a3" })

	// Invalid change: last known good keeps serving, the error shows up.
	write(t, filepath.Join(dir, "a.yaml"), vsDoc("a", "a..bad"))
	eventually(t, "error reported", func() bool { return len(s.Errors()) > 0 })
	if hosts(s)["a"] != "a3" {
		t.Fatalf("last known good lost: %v", hosts(s))
	}

	// New subdirectory, then a file in it.
	write(t, filepath.Join(dir, "x", "y", "c.json"), `{"apiVersion":"networking.istio.io/v1","kind":"Gateway","metadata":{"name":"gw","namespace":"ns"},"spec":{"servers":[{"port":{"number":80,"name":"http","protocol":"HTTP"},"hosts":["*"]}]}}`)
	eventually(t, "file in new subdirectory", func() bool { return len(s.List()) == 3 })
	write(t, filepath.Join(dir, "x", "y", "d.yaml"), vsDoc("d", "d1"))
	eventually(t, "second file in new subdirectory", func() bool { return hosts(s)["d"] == "d1" })

	// Deleting a file and a whole directory removes their objects.
	if err := os.Remove(filepath.Join(dir, "b.yaml")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "deleted file", func() bool { _, ok := hosts(s)["b"]; return !ok })
	if err := os.RemoveAll(filepath.Join(dir, "x")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "deleted directory", func() bool { _, ok := hosts(s)["d"]; return !ok && len(s.List()) == 1 })
	if changes() == 0 {
		t.Error("onChange never called")
	}
}

func TestMetrics(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), vsDoc("a", "a1")+"---\n"+vsDoc("b", "b..bad")+"---\nfoo: [\n")
	s := newSource(t, dir, quietOptions())
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(s.Collector()); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				if l.GetName() != "source" {
					name += "," + l.GetValue()
				} else if l.GetValue() != "file" {
					t.Errorf("source label %q", l.GetValue())
				}
			}
			switch {
			case m.GetGauge() != nil:
				got[name] = m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				got[name] = m.GetCounter().GetValue()
			}
		}
	}
	for name, want := range map[string]float64{
		"strait_config_errors,VirtualService": 2, "strait_config_errors,unknown": 1, "strait_config_errors,Gateway": 0,
		"strait_config_objects,VirtualService": 1, "strait_config_objects,Sidecar": 0,
		"strait_config_reloads_total,error": 1, "strait_config_reloads_total,ok": 0, "strait_config_warnings": 0,
	} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", name, v, ok, want)
		}
	}
	if got["strait_config_last_reload_timestamp_seconds"] <= 0 {
		t.Error("no last reload timestamp")
	}
}

func TestObjectMovesBetweenFiles(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), vsDoc("x", "x1"))
	s := newSource(t, dir, quietOptions())
	// The object moves to b.yaml, and a.yaml gets an invalid version of it: b.yaml's good one wins.
	write(t, filepath.Join(dir, "b.yaml"), vsDoc("x", "x2"))
	write(t, filepath.Join(dir, "a.yaml"), vsDoc("x", "x..bad"))
	s.Reload()
	if got := hosts(s)["x"]; got != "x2" {
		t.Fatalf("served %q, want x2", got)
	}
	// b.yaml goes away: a.yaml's definition is still invalid and there is no good one to keep
	// except the last served (x2).
	if err := os.Remove(filepath.Join(dir, "b.yaml")); err != nil {
		t.Fatal(err)
	}
	s.Reload()
	if got := hosts(s)["x"]; got != "x2" {
		t.Fatalf("served %q, want last known good x2", got)
	}
	// Deleting a.yaml too removes it.
	if err := os.Remove(filepath.Join(dir, "a.yaml")); err != nil {
		t.Fatal(err)
	}
	s.Reload()
	if len(s.List()) != 0 || len(s.Errors()) != 0 {
		t.Fatalf("after deleting all: %v %v", s.List(), s.Errors())
	}
}

func TestWarnings(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a, namespace: ns}\n"+
		"spec: {hosts: [a], http: [{route: [{destination: {host: a, subset: v1}}]}]}\n")
	s := newSource(t, dir, quietOptions())
	if len(s.Errors()) != 0 || len(s.Warnings()) != 1 || !config.IsWarning(s.Warnings()[0]) {
		t.Fatalf("errors %v warnings %v", s.Errors(), s.Warnings())
	}
	write(t, filepath.Join(dir, "dr.yaml"), "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: a, namespace: ns}\n"+
		"spec: {host: a, subsets: [{name: v1, labels: {version: v1}}]}\n")
	if !s.Reload() || len(s.Warnings()) != 0 {
		t.Fatalf("warnings after adding the subset: %v", s.Warnings())
	}
}

// TestConfigMapVolume checks the layout Kubernetes uses for ConfigMap volumes: files are symbolic
// links through a "..data" link that is swapped atomically on update.
func TestConfigMapVolume(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "..v1", "vs.yaml"), vsDoc("cm", "v1"))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink("..v1", filepath.Join(dir, "..data")))
	must(os.Symlink(filepath.Join("..data", "vs.yaml"), filepath.Join(dir, "vs.yaml")))
	s := newSource(t, dir, quietOptions())
	if got := hosts(s); len(got) != 1 || got["cm"] != "v1" {
		t.Fatalf("initial: %v %v", got, s.Errors())
	}
	runSource(t, s)
	write(t, filepath.Join(dir, "..v2", "vs.yaml"), vsDoc("cm", "v2"))
	must(os.Symlink("..v2", filepath.Join(dir, "..data_tmp")))
	must(os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	must(os.RemoveAll(filepath.Join(dir, "..v1")))
	eventually(t, "ConfigMap update", func() bool { return hosts(s)["cm"] == "v2" })
}

func TestResync(t *testing.T) {
	dir := t.TempDir()
	opts := quietOptions()
	opts.Resync = 20 * time.Millisecond
	s := newSource(t, dir, opts)
	changes := runSource(t, s)
	write(t, filepath.Join(dir, "a.yaml"), vsDoc("a", "a1"))
	eventually(t, "new file", func() bool { return hosts(s)["a"] == "a1" && changes() > 0 })
}

func TestUnreadableKeepsServing(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("running as root: file permissions do not stop reads")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "a.yaml")
	write(t, path, vsDoc("a", "a1"))
	s := newSource(t, dir, quietOptions())
	if err := os.Chmod(path, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(path, 0o644) })
	s.Reload()
	if hosts(s)["a"] != "a1" || len(s.Errors()) != 1 || !strings.Contains(s.Errors()[0].Error(), "reading file") {
		t.Fatalf("served %v errors %v", hosts(s), s.Errors())
	}
}

func TestDirectoryRemovedAndRecreated(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cfg")
	write(t, filepath.Join(dir, "a.yaml"), vsDoc("a", "a1"))
	s := newSource(t, dir, quietOptions())
	runSource(t, s)
	// Make sure the watcher runs before the directory goes.
	write(t, filepath.Join(dir, "b.yaml"), vsDoc("b", "b1"))
	eventually(t, "added file", func() bool { return hosts(s)["b"] == "b1" })
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	eventually(t, "objects of the removed directory gone", func() bool { return len(s.List()) == 0 })
	write(t, filepath.Join(dir, "c.yaml"), vsDoc("c", "c1"))
	eventually(t, "recreated directory", func() bool { return hosts(s)["c"] == "c1" && len(s.Errors()) == 0 })
	write(t, filepath.Join(dir, "c.yaml"), vsDoc("c", "c2"))
	eventually(t, "recreated directory watched", func() bool { return hosts(s)["c"] == "c2" })
}
