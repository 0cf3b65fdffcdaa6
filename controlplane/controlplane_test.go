package controlplane

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strait-mesh/strait/controlplane/config/embedded"
	"github.com/strait-mesh/strait/controlplane/mesh/meshtest"
	"github.com/strait-mesh/strait/internal/testenv"
)

var seGood = meshtest.Object("ServiceEntry", "api", "default", `  hosts: [api.example.com]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
`)

// seBroken is seGood with a misspelled endpoint field.
var seBroken = seGood + `  endpoints: [{address: 10.0.0.1, portz: {tls: 443}}]
`

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// startStraitd runs straitd in-process (Run with o, its log discarded) until the test ends, and
// returns its HTTP address once it is ready, and the run, whose Stop stops it.
func startStraitd(t *testing.T, o Options) (string, *testenv.Running) {
	t.Helper()
	addrs := make(chan string, 1)
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	o.Ready = func(_, http string) { addrs <- http }
	r := testenv.Go(t, "straitd", 10*time.Second, func(ctx context.Context) error { return Run(ctx, o) })
	select {
	case base := <-addrs:
		return base, r
	case <-r.Done():
		t.Fatalf("Run: %v", r.Err())
	case <-time.After(15 * time.Second):
		t.Fatal("straitd did not start")
	}
	return "", nil
}

// eventually polls cond until it holds or 15s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, what, 15*time.Second, cond)
}

// TestRunServesConfigzMetricsAndKeepsLastGood runs straitd in-process on loopback with a watched
// config dir: a bad edit of a good object is reported at /debug/configz and in /metrics while
// the last good version keeps serving.
func TestRunServesConfigzMetricsAndKeepsLastGood(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config")
	os.MkdirAll(cfg, 0o755)
	file := filepath.Join(cfg, "se.yaml")
	os.WriteFile(file, []byte(seGood), 0o644)

	addr, _ := startStraitd(t, Options{
		ConfigDir: cfg, DataDir: filepath.Join(dir, "data"),
		XDSListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0",
	})
	base := "http://" + addr

	if code, _ := get(t, base+"/ready"); code != http.StatusOK {
		t.Fatalf("/ready = %d", code)
	}
	readConfigz := func() configz {
		_, body := get(t, base+"/debug/configz")
		var c configz
		if err := json.Unmarshal([]byte(body), &c); err != nil {
			t.Fatalf("configz: %v\n%s", err, body)
		}
		return c
	}
	if c := readConfigz(); len(c.Objects) != 1 || len(c.Errors) != 0 {
		t.Fatalf("initial configz: %+v", c)
	}

	os.WriteFile(file, []byte(seBroken), 0o644)
	var c configz
	eventually(t, "the error at /debug/configz", func() bool { c = readConfigz(); return len(c.Errors) > 0 })
	msg := strings.Join(c.Errors, "\n")
	for _, want := range []string{"se.yaml", "ServiceEntry", "default/api", "portz"} {
		if !strings.Contains(msg, want) {
			t.Errorf("configz error lacks %q: %s", want, msg)
		}
	}
	if len(c.Objects) != 1 || c.Objects[0].Name != "api" {
		t.Fatalf("last good object should keep serving: %+v", c.Objects)
	}
	_, metrics := get(t, base+"/metrics")
	if !strings.Contains(metrics, "strait_config_rejected 1") {
		t.Errorf("/metrics lacks strait_config_rejected 1")
	}
	for _, m := range []string{"pilot_services ", "pilot_virt_services ", "strait_mesh_snapshot_version"} {
		if !strings.Contains(metrics, m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}

	// The config directory's validations are counted as Istio's webhook counts them: the good
	// ServiceEntry passed, then its broken edit failed.
	for _, line := range []string{
		`galley_validation_passed{group="networking.istio.io",resource="serviceentries",version="v1"} 1`,
		`galley_validation_failed{group="networking.istio.io",reason="invalid_resource",resource="serviceentries",version="v1"} 1`,
	} {
		if !strings.Contains(metrics, line) {
			t.Errorf("/metrics lacks %s", line)
		}
	}
	// So are strait apply's (a dry run here: the webhook sees those too).
	admin, err := embedded.ReadAdminToken(filepath.Join(dir, "data", AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := embedded.NewClient(addr).WithAdminToken(admin)
	if _, err := client.Apply(ctx, []embedded.Document{{Origin: "a.yaml", Data: strings.Replace(seGood, "name: api", "name: api2", 1)}}, true); err != nil {
		t.Fatalf("apply: %v", err)
	}
	if _, err := client.Apply(ctx, []embedded.Document{{Origin: "b.yaml", Data: seBroken}}, true); err == nil {
		t.Fatal("a broken apply succeeded")
	}
	_, metrics = get(t, base+"/metrics")
	for _, line := range []string{
		`galley_validation_passed{group="networking.istio.io",resource="serviceentries",version="v1"} 2`,
		`galley_validation_failed{group="networking.istio.io",reason="invalid_resource",resource="serviceentries",version="v1"} 2`,
	} {
		if !strings.Contains(metrics, line) {
			t.Errorf("/metrics lacks %s", line)
		}
	}

	// The embedded store API is mounted.
	code, body := get(t, base+"/apis/v1/objects?kind=vs")
	if code != http.StatusOK || !strings.Contains(body, `"items"`) {
		t.Fatalf("store API: %d %s", code, body)
	}
}
