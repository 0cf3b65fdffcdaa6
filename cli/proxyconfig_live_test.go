package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/strait-mesh/strait/controlplane/config/embedded"
	"github.com/strait-mesh/strait/internal/testenv"
)

var captureDump = flag.Bool("capture-dump", false,
	"TestProxyConfigLive: rewrite testdata/proxyconfig/config_dump.json and clusters.json from the live proxy")

// liveMeshYAML is the mesh the live test (and the captured testdata) is made of: an HTTP service
// with two subsets and a VirtualService, a TCP service, and a Sidecar giving the workload at wIP
// an inbound listener on wIP:15006 and its outbound listeners on eIP (strait run's explicit mode).
func liveMeshYAML(wIP, eIP string) string {
	const reviews = "reviews.default.svc.cluster.local"
	return testenv.StaticServiceYAML(reviews, 9080, "http", "HTTP",
		"{address: 127.42.1.11, labels: {version: v1}}", "{address: 127.42.1.12, labels: {version: v2}}") + "---\n" +
		testenv.StaticServiceYAML("db.default.svc.cluster.local", 5432, "tcp", "TCP", "{address: 127.42.1.13}") + "---\n" +
		testenv.DestinationRuleYAML(reviews, "  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n") + "---\n" +
		testenv.VirtualServiceYAML("reviews", "default", `  hosts: [reviews.default.svc.cluster.local]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews.default.svc.cluster.local, subset: v2}}]
  - match: [{uri: {prefix: /api/}}]
    route: [{destination: {host: reviews.default.svc.cluster.local, subset: v1}}]
  - route: [{destination: {host: reviews.default.svc.cluster.local, subset: v1}}]
`) + "---\n" +
		fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: productpage, namespace: default}
spec:
  workloadSelector:
    labels: {app: productpage}
  ingress:
  - port: {number: 15006, name: http, protocol: HTTP}
    bind: %s
    defaultEndpoint: 0.0.0.0:9080
  egress:
  - bind: %s
    hosts: ["*/*"]
`, wIP, eIP)
}

// The addresses the captured testdata uses; the live test's random ones are replaced by them.
const (
	capturedWorkloadIP = "127.42.0.1"
	capturedOutboundIP = "127.42.0.2"
	capturedXDS        = "127.0.0.1:15010"
)

// freeLoopbackPair picks 127.42.N.1 (the workload, whose admin port 15000 must be free) and
// 127.42.N.2 (its outbound listeners).
func freeLoopbackPair(t *testing.T) (string, string) {
	t.Helper()
	for range 50 {
		n := byte(rand.IntN(200) + 20)
		w, e := netip.AddrFrom4([4]byte{127, 42, n, 1}), netip.AddrFrom4([4]byte{127, 42, n, 2})
		if bindable(w) && bindable(e) {
			return w.String(), e.String()
		}
	}
	t.Skip("no free 127.42.N.1:15000")
	return "", ""
}

// runStrait runs the strait CLI in-process and returns its stdout, or its stderr as the error.
func runStrait(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	if code := Run(ctx, args, strings.NewReader(""), &out, &errb); code != 0 {
		return out.String(), errors.New(strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// TestProxyConfigLive runs straitd and a sidecar strait-proxy (explicit mode, with a workload
// identity from straitd's CA) and reads the proxy's configuration through `strait pc`, by admin
// address and by name. With -capture-dump it also rewrites the testdata the golden tests read.
func TestProxyConfigLive(t *testing.T) {
	if testing.Short() {
		t.Skip("starts straitd and strait-proxy")
	}
	wIP, eIP := freeLoopbackPair(t)
	sd := testenv.StartStraitd(t, map[string]string{"mesh.yaml": liveMeshYAML(wIP, eIP)})
	token, err := embedded.ReadAdminToken(sd.AdminTokenFile())
	if err != nil {
		t.Fatal(err)
	}
	meshAddr := ""
	if m := regexp.MustCompile(`straitd serving.*mesh=(\S+)`).FindStringSubmatch(sd.Output()); m != nil {
		meshAddr = strings.Trim(m[1], `"`)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	idArgs, err := mintIdentity(ctx, sd.HTTP, token, meshAddr, filepath.Join(t.TempDir(), "id"), "default", "productpage")
	if err != nil {
		t.Fatal(err)
	}
	admin := net.JoinHostPort(wIP, "15000")
	nodeID := "sidecar~" + wIP + "~productpage-v1.default~default.svc.cluster.local"
	testenv.Start(t, "strait-proxy", nil, append([]string{filepath.Join(testenv.Binaries(t), "strait-proxy"),
		"--mode", "sidecar", "--workload-name", "productpage-v1", "--namespace", "default", "--ip", wIP,
		"--labels", "app=productpage,version=v1", "--service-account", "productpage", "--interception-mode", "NONE",
		"--admin-address", admin, "--admin-socket", "-", "--dns-address", "",
		"--drain-duration", "1s"}, idArgs...)...)

	pc := func(args ...string) (string, error) {
		return runStrait(t, append([]string{"--straitd", sd.HTTP, "proxy-config"}, args...)...)
	}
	defaultRow := regexp.MustCompile(`(?m)^default +Cert Chain +ACTIVE +true +[0-9a-f]+ +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`)
	rootRow := regexp.MustCompile(`(?m)^ROOTCA +CA +ACTIVE +true +[0-9a-f]+ +\S+Z +\S+Z$`)
	testenv.Eventually(t, 30*time.Second, func() error {
		out, err := pc("secret", admin)
		if err != nil {
			return err
		}
		if !defaultRow.MatchString(out) || !rootRow.MatchString(out) {
			return fmt.Errorf("secrets not in yet:\n%s", out)
		}
		out, err = pc("listener", admin, "--verbose=false")
		if err != nil {
			return err
		}
		for _, want := range []string{eIP + " 5432  TCP", eIP + " 9080  HTTP", wIP + " 15006 HTTP"} {
			if !strings.Contains(out, want) {
				return fmt.Errorf("listener %q not active yet:\n%s", want, out)
			}
		}
		return nil
	})

	t.Run("cluster", func(t *testing.T) {
		out, err := pc("cluster", admin)
		if err != nil {
			t.Fatal(err)
		}
		for _, re := range []string{
			`(?m)^reviews\.default\.svc\.cluster\.local +9080 +v1 +outbound +EDS +$`,
			`(?m)^reviews\.default\.svc\.cluster\.local +9080 +v2 +outbound +EDS +$`,
			`(?m)^reviews\.default\.svc\.cluster\.local +9080 +- +outbound +EDS +$`,
			`(?m)^db\.default\.svc\.cluster\.local +5432 +- +outbound +EDS +$`,
			`(?m)^ +15006 +- +inbound +STATIC +$`,
			`(?m)^PassthroughCluster +- +- +- +ORIGINAL_DST +$`,
		} {
			if !regexp.MustCompile(re).MatchString(out) {
				t.Errorf("no row matching %s in:\n%s", re, out)
			}
		}
	})
	t.Run("route", func(t *testing.T) {
		out, err := pc("route", admin, "--name", "9080")
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`(?m)^9080 +reviews\.default\.svc\.cluster\.local:9080 +reviews, reviews\.default \+ 1 more\.\.\. +/api/\* +reviews\.default$`).MatchString(out) {
			t.Errorf("no /api/ route of VirtualService reviews.default in:\n%s", out)
		}
	})
	t.Run("endpoint", func(t *testing.T) {
		out, err := pc("endpoint", admin, "--cluster", "outbound|9080|v2|reviews.default.svc.cluster.local")
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`(?m)^127\.42\.1\.12:9080 +HEALTHY +OK +outbound\|9080\|v2\|reviews\.default\.svc\.cluster\.local$`).MatchString(out) ||
			strings.Count(out, "\n") != 2 {
			t.Errorf("want the one v2 endpoint, got:\n%s", out)
		}
	})
	t.Run("by name", func(t *testing.T) {
		want, err := pc("all", admin)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"productpage-v1", "productpage-v1.default", nodeID, wIP} {
			got, err := pc("all", name)
			if err != nil {
				t.Errorf("%s: %v", name, err)
			} else if got != want {
				t.Errorf("%s: output differs from the one by admin address:\n%s\nwant:\n%s", name, got, want)
			}
		}
	})
	t.Run("all json", func(t *testing.T) {
		out, err := pc("all", admin, "-o", "json")
		if err != nil {
			t.Fatal(err)
		}
		var cd adminv3.ConfigDump
		if err := protojson.Unmarshal([]byte(out), &cd); err != nil {
			t.Fatalf("decoding -o json: %v", err)
		}
		if len(cd.GetConfigs()) != 6 {
			t.Errorf("-o json: %d config sections, want 6", len(cd.GetConfigs()))
		}
	})

	if *captureDump {
		capture(t, admin, wIP, eIP, sd.XDS)
	}
}

// capture writes the live proxy's /config_dump (without its secrets, which the golden tests make
// with fixed dates) and /clusters?format=json to testdata, with the test's random addresses
// replaced by fixed ones.
func capture(t *testing.T, admin, wIP, eIP, xds string) {
	t.Helper()
	get := func(path string) []byte {
		resp, err := http.Get("http://" + admin + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(resp.Body); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	var cd adminv3.ConfigDump
	if err := protojson.Unmarshal(get("/config_dump"), &cd); err != nil {
		t.Fatal(err)
	}
	for i, a := range cd.Configs {
		if a.MessageIs((*adminv3.SecretsConfigDump)(nil)) {
			empty, err := anypb.New(&adminv3.SecretsConfigDump{})
			if err != nil {
				t.Fatal(err)
			}
			cd.Configs[i] = empty
		}
	}
	dump, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(&cd)
	if err != nil {
		t.Fatal(err)
	}
	fix := strings.NewReplacer(wIP, capturedWorkloadIP, eIP, capturedOutboundIP, xds, capturedXDS)
	for name, b := range map[string][]byte{"config_dump.json": dump, "clusters.json": get("/clusters?format=json")} {
		var buf bytes.Buffer
		if err := indentJSON(&buf, []byte(fix.Replace(string(b)))); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("testdata", "proxyconfig", name), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Log("rewrote testdata/proxyconfig/config_dump.json and clusters.json")
}

// indentJSON writes src indented by two spaces, as the proxy's admin interface does.
func indentJSON(dst *bytes.Buffer, src []byte) error {
	if err := json.Indent(dst, bytes.TrimSpace(src), "", "  "); err != nil {
		return err
	}
	dst.WriteByte('\n')
	return nil
}
