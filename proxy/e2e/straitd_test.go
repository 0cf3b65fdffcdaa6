package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
)

// gatewayYAML is Istio configuration: a gateway on gwPort routing everything to a ServiceEntry
// whose endpoint is the test backend.
const gatewayYAML = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: backend
  namespace: default
spec:
  hosts: ["backend.example.internal"]
  ports:
  - number: 8080
    name: http
    protocol: HTTP
  resolution: STATIC
  location: MESH_INTERNAL
  endpoints:
  - address: 127.0.0.1
    ports:
      http: %d
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: gw
  namespace: default
spec:
  selector:
    istio: ingressgateway
  servers:
  - port: {number: %d, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: vs
  namespace: default
spec:
  hosts: ["*"]
  gateways: ["gw"]
  http:
  - match:
    - uri: {prefix: %s}
    route:
    - destination:
        host: backend.example.internal
        port: {number: 8080}
`

func portOf(t *testing.T, addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	fmt.Sscan(p, &n)
	return n
}

// TestWithStraitd runs the real control plane (straitd reading Istio YAML) and a strait-proxy in
// router mode: a request through the gateway reaches the backend, and an edited VirtualService
// applies without a restart.
func TestWithStraitd(t *testing.T) {
	if straitdBin == "" {
		t.Skipf("straitd does not build in this tree: %s", straitdBuildErr)
	}
	b := newBackend(t, "svc")
	gw := freeAddr(t)
	dir := t.TempDir()
	write := func(prefix string) {
		tmp := filepath.Join(dir, ".mesh.yaml.tmp")
		if err := os.WriteFile(tmp, []byte(fmt.Sprintf(gatewayYAML, portOf(t, b.addr), portOf(t, gw), prefix)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "mesh.yaml")); err != nil {
			t.Fatal(err)
		}
	}
	write("/")
	xds := freeAddr(t)
	logs := &testenv.SyncBuffer{}
	cmd := exec.Command(straitdBin, "--config-dir", dir, "--xds-listen", xds, "--http-listen", freeAddr(t))
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGKILL)
		<-exited
		if t.Failed() {
			t.Logf("straitd logs:\n%s", lastLines(logs.String(), 40))
		}
	})

	p := startProxyArgs(t, xds, 2*time.Second, "--mode", "router", "--workload-name", "ingressgateway-1",
		"--namespace", "default", "--ip", "127.0.0.1", "--labels", "istio=ingressgateway", "--interception-mode", "NONE")
	p.waitReady()
	expectBody(t, gw, "/hello", "svc /hello")

	// Narrow the route: /hello no longer matches and gets the proxy's 404.
	write("/api")
	eventually(t, "route change from straitd", func() bool {
		code, _, err := get(gw, "/hello")
		return err == nil && code == 404
	})
	expectBody(t, gw, "/api/x", "svc /api/x")
	if strings.Contains(p.logs.String(), "update rejected") {
		t.Fatalf("strait-proxy rejected straitd's config:\n%s", lastLines(p.logs.String(), 20))
	}
}
