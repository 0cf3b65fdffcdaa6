package e2e

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
)

// meshYAML registers two versions of a "web" service on loopback backends and exposes them
// through a Gateway on gwPort.
func meshYAML(gwPort, v1Port, v2Port int) string {
	const host = "web.shop.svc.cluster.local"
	return serviceEntryYAML(host, 8000, "HTTP", endpoint{"v1", "127.0.0.1", v1Port}, endpoint{"v2", "127.0.0.2", v2Port}) +
		"---\n" + subsetsYAML(host, "v1", "v2") + "---\n" + gatewayYAMLIn("shop", gwPort)
}

var routeV1 = edgeVS("web", "shop", `["*"]`, `  http:
  - match: [{headers: {x-user: {exact: tester}}}]
    route: [{destination: {host: web.shop.svc.cluster.local, subset: v2}}]
  - route: [{destination: {host: web.shop.svc.cluster.local, subset: v1}}]
`)

var routeAllV2 = edgeVS("web", "shop", `["*"]`, `  http:
  - route: [{destination: {host: web.shop.svc.cluster.local, subset: v2}, weight: 100}]
`)

// backendOf returns the name of the backend that answered a GET of url.
func backendOf(t *testing.T, url string, hdr http.Header) (string, error) {
	t.Helper()
	return backendName(h1Client, request{URL: url, Header: hdr})
}

func TestGatewayRoutesByHeaderAndFollowsConfigChanges(t *testing.T) {
	skipShort(t)
	v1Port := startBackend(t, "127.0.0.1", "v1", backendOptions{}).Port
	v2Port := startBackend(t, "127.0.0.2", "v2", backendOptions{}).Port
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
	writeFile(t, bad, strings.Replace(routeAllV2, "weight: 100", "weight: -5", 1))
	out, err := strait(t, sd, "apply", "-f", bad)
	if err == nil || !strings.Contains(out, "bad.yaml") || !strings.Contains(out, "weight") {
		t.Fatalf("bad apply: err %v, output:\n%s", err, out)
	}
	if name, err := backendOf(t, url, nil); err != nil || name != "v2" {
		t.Fatalf("after rejected apply: got %q, %v; want v2", name, err)
	}
}

func TestProxyServesThroughControlPlaneOutage(t *testing.T) {
	skipShort(t)
	v1Port := startBackend(t, "127.0.0.1", "v1", backendOptions{}).Port
	v2Port := startBackend(t, "127.0.0.2", "v2", backendOptions{}).Port
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
