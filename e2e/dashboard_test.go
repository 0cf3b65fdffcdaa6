package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/strait-mesh/strait/internal/testenv"
)

// dashboardScreenshotEnv names a file to which TestDashboard writes the page's screenshot
// (docs/dashboard.png is made so).
const dashboardScreenshotEnv = "STRAIT_DASHBOARD_SCREENSHOT"

// dashboardMeshYAML: a client and reviews v1 and v2, each a sidecar in explicit mode on its own
// loopback address with an identity (so the hops are mutual TLS), and reviews' subsets.
func dashboardMeshYAML(clientIP, v1IP, v2IP, app1, app2 string) string {
	const host = "reviews.e2e.svc.cluster.local"
	endpoint := func(version, ip string) string {
		return "{address: " + ip + ", serviceAccount: reviews, labels: {app: reviews, version: " + version + ", security.istio.io/tlsMode: istio}}"
	}
	ingress := func(version, ip, app string) string {
		return sidecarResourceYAML("reviews-"+version, "app: reviews, version: "+version,
			"  ingress:\n"+explicitListener(httpPort, "bind: "+ip, "defaultEndpoint: "+app)+
				`  egress: [{hosts: ["istio-system/*"]}] # no outbound listeners: the two versions would share 127.0.0.1:9080`+"\n")
	}
	return staticServiceYAML(host, 9080, "http", "HTTP", endpoint("v1", v1IP), endpoint("v2", v2IP)) + "---\n" +
		subsetsYAML(host, "v1", "v2") + "---\n" +
		explicitSidecarYAML("client", "egress", "bind: "+clientIP, `hosts: ["e2e/*"]`) + "---\n" +
		ingress("v1", v1IP, app1) + "---\n" + ingress("v2", v2IP, app2)
}

// reviewsCanaryYAML routes reviews v1 weight1% and v2 the rest.
func reviewsCanaryYAML(weight1 int) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: e2e}
spec:
  hosts: [reviews.e2e.svc.cluster.local]
  http:
  - route:
    - {destination: {host: reviews.e2e.svc.cluster.local, subset: v1}, weight: %d}
    - {destination: {host: reviews.e2e.svc.cluster.local, subset: v2}, weight: %d}
`, weight1, 100-weight1)
}

// pageEdge is an edge as the page draws it: its data attributes and its label.
type pageEdge struct {
	Source, Target, Protocol, Label string
	RPS, Share                      float64
	MTLS, Lock                      bool // the edge's data, and the lock icon drawn on its label
}

// readEdges reads the edges the page shows now.
const readEdges = `[...document.querySelectorAll("#svg g.edge")].map(g => {
  const label = [...document.querySelectorAll("#svg g.edge-label")].find(l => l.dataset.source === g.dataset.source && l.dataset.target === g.dataset.target);
  return {Source: g.dataset.source, Target: g.dataset.target, Protocol: g.dataset.protocol,
    RPS: +g.dataset.rps, Share: +g.dataset.share, MTLS: g.dataset.mtls === "true",
    Label: label ? label.textContent : "", Lock: !!(label && label.querySelector(".lock"))};
})`

// TestDashboard runs straitd and three sidecars (a client, reviews v1 and v2) with identities,
// sends bounded traffic through them, and loads straitd's dashboard in headless Chromium: the
// graph shows client → reviews → reviews-v1 with non-zero rates and mutual TLS locks, and the
// side panel of reviews shows its VirtualService and its proxies' sync status. Then a canary
// VirtualService applied with `strait apply` shifts half of the traffic to v2, and the page
// shows the new edge to reviews-v2 with its share.
func TestDashboard(t *testing.T) {
	skipShort(t)
	chromiumPath := needTool(t, "chromium", "chromium")
	const clientIP, v1IP, v2IP = "127.0.0.151", "127.0.0.152", "127.0.0.153"
	app1 := startBackend(t, "127.0.0.1", "reviews-v1", backendOptions{})
	app2 := startBackend(t, "127.0.0.1", "reviews-v2", backendOptions{})
	sd := testenv.StartStraitd(t, map[string]string{"mesh.yaml": dashboardMeshYAML(clientIP, v1IP, v2IP, app1.Addr(), app2.Addr())},
		"--dashboard-scrape-interval", "1s")
	// The servers' statistics on Istio's 15090 of their own addresses; the client's on its
	// admin address (STATS_ADDRESS falls back to it).
	startSidecar(t, sd, "reviews-v1", v1IP, map[string]string{"app": "reviews", "version": "v1"}, "reviews",
		"--prometheus-address", v1IP+":15090").WaitReady(t, 30*time.Second)
	startSidecar(t, sd, "reviews-v2", v2IP, map[string]string{"app": "reviews", "version": "v2"}, "reviews",
		"--prometheus-address", v2IP+":15090").WaitReady(t, 30*time.Second)
	startSidecar(t, sd, "client", clientIP, appLabels("client"), "client").WaitReady(t, 30*time.Second)
	if out, err := strait(t, sd, "apply", "-f", writeTemp(t, "vs.yaml", reviewsCanaryYAML(100))); err != nil {
		t.Fatalf("strait apply: %v\n%s", err, out)
	}

	// Bounded traffic: at most 3,000 requests, 20 a second, until the test ends or 3 minutes.
	send := func() (int, error) {
		rep, err := do(h1Client, request{URL: "http://" + clientIP + ":9080/hello", Host: "reviews.e2e.svc.cluster.local:9080"})
		if err != nil {
			return 0, err
		}
		return rep.Code, nil
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		if code, err := send(); err != nil || code != http.StatusOK {
			return fmt.Errorf("warm-up request: %d %v", code, err)
		}
		return nil
	})
	trafficCtx, stopTraffic := context.WithTimeout(context.Background(), 3*time.Minute)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < 3000; i++ {
			select {
			case <-trafficCtx.Done():
				return
			case <-tick.C:
				_, _ = send()
			}
		}
	}()
	defer func() { stopTraffic(); wg.Wait() }()

	// Headless Chromium as the machine needs it: no sandbox as root, no GPU, no background
	// connections (the network is closed), a fresh profile.
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromiumPath), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()), chromedp.Flag("disable-quic", true), chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-component-update", true), chromedp.WindowSize(1280, 760))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()
	ctx, cancel := context.WithTimeout(browser, 4*time.Minute)
	defer cancel()
	url := "http://" + sd.HTTP + "/dashboard/"
	if err := chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS("#svg"))); err != nil {
		t.Fatalf("loading %s: %v", url, err)
	}

	const client, reviews = "workload:e2e/client", "service:reviews.e2e.svc.cluster.local"
	const v1, v2 = "workload:e2e/reviews-v1", "workload:e2e/reviews-v2"
	// waitEdges polls the page (it refreshes itself every 3 s) until ok accepts its edges.
	waitEdges := func(what string, ok func(map[string]pageEdge) error) map[string]pageEdge {
		t.Helper()
		var last error
		deadline := time.Now().Add(90 * time.Second)
		for {
			list, err := chromedp.Run(ctx, chromedp.Evaluate[[]pageEdge](readEdges))
			if err != nil {
				t.Fatalf("reading the page's edges: %v", err)
			}
			edges := map[string]pageEdge{}
			for _, e := range list {
				edges[e.Source+" → "+e.Target] = e
			}
			if last = ok(edges); last == nil {
				return edges
			}
			if time.Now().After(deadline) {
				b, _ := json.MarshalIndent(list, "", "  ")
				t.Fatalf("%s: %v\nthe page's edges: %s", what, last, b)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	active := func(edges map[string]pageEdge, from, to string, mtls bool) error {
		e, found := edges[from+" → "+to]
		switch {
		case !found:
			return fmt.Errorf("no edge %s → %s", from, to)
		case e.RPS <= 0 || !strings.Contains(e.Label, "rps"):
			return fmt.Errorf("edge %s → %s: rate %v, label %q", from, to, e.RPS, e.Label)
		case mtls && (!e.MTLS || !e.Lock):
			return fmt.Errorf("edge %s → %s: no mutual TLS lock", from, to)
		}
		return nil
	}
	waitEdges("all traffic to v1", func(edges map[string]pageEdge) error {
		if err := active(edges, client, reviews, true); err != nil {
			return err
		}
		if err := active(edges, reviews, v1, true); err != nil {
			return err
		}
		if e, found := edges[reviews+" → "+v2]; found && e.RPS > 0 {
			return fmt.Errorf("traffic to v2 before the canary: %+v", e)
		}
		return nil
	})

	// The side panel of reviews: describe's view and the proxies' sync status.
	panelText := func() string {
		var text string
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#svg g.node[data-id="`+reviews+`"]`)),
			chromedp.WaitVisible(chromedp.CSS("#panel"))); err != nil {
			t.Fatalf("opening the panel: %v", err)
		}
		testenv.Eventually(t, 20*time.Second, func() error {
			var err error
			if text, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#panel-body"))); err != nil {
				return err
			}
			if strings.Contains(text, "Loading") {
				return fmt.Errorf("panel: %s", text)
			}
			return nil
		})
		return text
	}
	text := panelText()
	for _, want := range []string{"reviews.e2e.svc.cluster.local", "e2e/reviews", "subset v2", "SYNCED", "sidecar~" + v1IP + "~reviews-v1.e2e"} {
		if !strings.Contains(text, want) {
			t.Errorf("the reviews panel lacks %q:\n%s", want, text)
		}
	}

	// The canary: half of reviews' traffic to v2.
	if out, err := strait(t, sd, "apply", "-f", writeTemp(t, "canary.yaml", reviewsCanaryYAML(50))); err != nil {
		t.Fatalf("strait apply: %v\n%s", err, out)
	}
	edges := waitEdges("the canary's split", func(edges map[string]pageEdge) error {
		if err := active(edges, reviews, v2, true); err != nil {
			return err
		}
		if e := edges[reviews+" → "+v2]; e.Share <= 0 || e.Share >= 1 || !strings.Contains(e.Label, "%") {
			return fmt.Errorf("reviews → v2 shows no share: %+v", e)
		}
		return active(edges, reviews, v1, true)
	})
	t.Logf("edges after the canary: %+v", edges)
	if text := panelText(); !strings.Contains(text, "(v2) 50%") {
		t.Errorf("the reviews panel does not show the canary's weights:\n%s", text)
	}

	if path := os.Getenv(dashboardScreenshotEnv); path != "" {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot written to %s", path)
	}
}

// writeTemp writes body to a new file named name and returns its path.
func writeTemp(t *testing.T, name, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	writeFile(t, path, body)
	return path
}
