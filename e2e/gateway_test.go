package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
)

// backend is a loopback HTTP server that answers with its name.
func backend(t *testing.T, name string) (port int, hits *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hits = &atomic.Int64{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("x-backend", name)
		fmt.Fprintf(w, "%s %s %s", name, r.Method, r.URL.Path)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port, hits
}

// meshYAML registers two versions of a "web" service on loopback backends and exposes them
// through a Gateway on gwPort.
func meshYAML(gwPort, v1Port, v2Port int) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web, namespace: shop}
spec:
  hosts: [web.shop.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{number: 8000, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - {address: 127.0.0.1, ports: {http: %[2]d}, labels: {version: v1}}
  - {address: 127.0.0.2, ports: {http: %[3]d}, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: shop}
spec:
  host: web.shop.svc.cluster.local
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: shop}
spec:
  selector: {app: edge}
  servers: [{port: {number: %[1]d, name: http, protocol: HTTP}, hosts: ["*"]}]
`, gwPort, v1Port, v2Port)
}

const routeV1 = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: shop}
spec:
  hosts: ["*"]
  gateways: [edge]
  http:
  - match: [{headers: {x-user: {exact: tester}}}]
    route: [{destination: {host: web.shop.svc.cluster.local, subset: v2}}]
  - route: [{destination: {host: web.shop.svc.cluster.local, subset: v1}}]
`

const routeAllV2 = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: shop}
spec:
  hosts: ["*"]
  gateways: [edge]
  http:
  - route: [{destination: {host: web.shop.svc.cluster.local, subset: v2}, weight: 100}]
`

func backendOf(t *testing.T, url string, hdr http.Header) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	code, body, err := testenv.Get(ctx, url, hdr)
	if err != nil {
		return "", err
	}
	if code != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", code, body)
	}
	name, _, _ := strings.Cut(body, " ")
	return name, nil
}

func TestGatewayRoutesByHeaderAndFollowsConfigChanges(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test runs real processes")
	}
	v1Port, _ := backend(t, "v1")
	v2Port, _ := backendOn(t, "127.0.0.2", "v2")
	gwPort := testenv.FreePort(t)
	sd := testenv.StartStraitd(t, map[string]string{
		"mesh.yaml":  meshYAML(gwPort, v1Port, v2Port),
		"route.yaml": routeV1,
	})
	testenv.StartProxy(t, sd.XDS, testenv.ProxyOptions{Mode: "router", Name: "edge-1", Namespace: "shop", Labels: map[string]string{"app": "edge"}})
	url := fmt.Sprintf("http://127.0.0.1:%d/hello", gwPort)

	testenv.Eventually(t, 30*time.Second, func() error {
		name, err := backendOf(t, url, nil)
		if err == nil && name != "v1" {
			err = fmt.Errorf("default route reached %q, want v1", name)
		}
		return err
	})
	if name, err := backendOf(t, url, http.Header{"X-User": {"tester"}}); err != nil || name != "v2" {
		t.Fatalf("header route: got %q, %v; want v2", name, err)
	}

	// A file change moves all traffic to v2, without a restart.
	sd.WriteConfig(t, "route.yaml", routeAllV2)
	testenv.Eventually(t, 10*time.Second, func() error {
		name, err := backendOf(t, url, nil)
		if err == nil && name != "v2" {
			err = fmt.Errorf("after change reached %q, want v2", name)
		}
		return err
	})

	// `strait apply` of a bad document is rejected and changes nothing.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	writeFile(t, bad, strings.Replace(routeV1, "name: web", "name: other", 1)+"  tcp: [{route: [{destination: {host: x}, weight: 900}]}]\n")
	out, err := exec.Command(filepath.Join(testenv.Binaries(t), "strait"), "--straitd", sd.HTTP, "apply", "-f", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "bad.yaml") || !strings.Contains(string(out), "weight") {
		t.Fatalf("bad apply: err %v, output:\n%s", err, out)
	}
	if name, err := backendOf(t, url, nil); err != nil || name != "v2" {
		t.Fatalf("after rejected apply: got %q, %v; want v2", name, err)
	}
}

func TestProxyServesThroughControlPlaneOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test runs real processes")
	}
	v1Port, _ := backend(t, "v1")
	v2Port, _ := backendOn(t, "127.0.0.2", "v2")
	gwPort := testenv.FreePort(t)
	xdsPort := testenv.FreePort(t)
	files := map[string]string{"mesh.yaml": meshYAML(gwPort, v1Port, v2Port), "route.yaml": routeV1}
	sd := testenv.StartStraitd(t, files, "--xds-listen", fmt.Sprintf("127.0.0.1:%d", xdsPort))
	testenv.StartProxy(t, sd.XDS, testenv.ProxyOptions{Mode: "router", Name: "edge-1", Namespace: "shop", Labels: map[string]string{"app": "edge"}})
	url := fmt.Sprintf("http://127.0.0.1:%d/", gwPort)
	testenv.Eventually(t, 30*time.Second, func() error { _, err := backendOf(t, url, nil); return err })

	sd.Stop(5 * time.Second)
	for i := 0; i < 20; i++ {
		if name, err := backendOf(t, url, nil); err != nil || name != "v1" {
			t.Fatalf("request %d during outage: %q, %v", i, name, err)
		}
	}

	// A new straitd on the same address with changed config: the proxy reconnects and follows.
	files["route.yaml"] = routeAllV2
	testenv.StartStraitd(t, files, "--xds-listen", fmt.Sprintf("127.0.0.1:%d", xdsPort))
	testenv.Eventually(t, 30*time.Second, func() error {
		name, err := backendOf(t, url, nil)
		if err == nil && name != "v2" {
			err = fmt.Errorf("after reconnect reached %q, want v2", name)
		}
		return err
	})
}
