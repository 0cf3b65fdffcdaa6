package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
)

// greeterHost is the proxyless gRPC service, with the subsets v1 and v2.
const greeterHost = "greeter.default.svc.cluster.local"

// proxylessShift sends every call to subset v2.
var proxylessShift = subsetsYAML(greeterHost, "v1", "v2") + "---\n" + virtualServiceYAML("greeter", "default", `  hosts: [greeter.default.svc.cluster.local]
  http:
  - route:
    - {destination: {host: greeter.default.svc.cluster.local, subset: v1}, weight: 0}
    - {destination: {host: greeter.default.svc.cluster.local, subset: v2}, weight: 100}
`)

// TestProxylessGRPCFollowsStraitApply runs a stock grpc-go client through the xds:/// resolver
// against a real straitd process: calls round-robin across two real gRPC servers; after
// `strait apply` of a DestinationRule and a VirtualService sending 100% to subset v2, every call
// reaches v2. The applied objects then survive a straitd restart on the same data dir.
func TestProxylessGRPCFollowsStraitApply(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test runs real processes")
	}
	v1, p1 := testenv.GRPCBackend(t)
	v2, p2 := testenv.GRPCBackend(t)
	dataDir := t.TempDir()
	sd := testenv.StartStraitd(t, map[string]string{"greeter.yaml": serviceEntryYAML(greeterHost, 50051, "GRPC",
		endpoint{"v1", "127.0.0.1", p1}, endpoint{"v2", "127.0.0.1", p2})}, "--data-dir", dataDir)

	calls := testenv.NewProxylessClient(t, sd.XDS, "xds:///"+greeterHost+":50051").Calls

	// Round robin across both once both subchannels are ready.
	testenv.Eventually(t, 20*time.Second, func() error {
		s, err := calls(4)
		if err == nil && (s[v1] == 0 || s[v2] == 0) {
			err = fmt.Errorf("only %v answered", s)
		}
		return err
	})
	seen, err := calls(20)
	if err != nil || seen[v1] < 5 || seen[v2] < 5 {
		t.Fatalf("round robin: %v, %v; want both %s and %s", seen, err, v1, v2)
	}

	// strait apply shifts 100% to v2.
	file := filepath.Join(t.TempDir(), "shift.yaml")
	writeFile(t, file, proxylessShift)
	strait := filepath.Join(testenv.Binaries(t), "strait")
	if out, err := exec.Command(strait, "--straitd", sd.HTTP, "--admin-token-file", sd.AdminTokenFile(), "apply", "-f", file).CombinedOutput(); err != nil {
		t.Fatalf("strait apply: %v\n%s", err, out)
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		s, err := calls(10)
		if err == nil && s[v1] > 0 {
			err = fmt.Errorf("v1 still answers: %v", s)
		}
		return err
	})
	if seen, err := calls(30); err != nil || seen[v2] != 30 {
		t.Fatalf("after the shift: %v, %v; want all 30 on %s", seen, err, v2)
	}

	// The applied objects survive a straitd restart with the same data dir.
	sd.Stop(5 * time.Second)
	sd2 := testenv.StartStraitd(t, nil, "--data-dir", dataDir)
	out, err := exec.Command(strait, "--straitd", sd2.HTTP, "get", "vs", "greeter", "-o", "yaml").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "subset: v2") {
		t.Fatalf("after restart, strait get: %v\n%s", err, out)
	}
}
