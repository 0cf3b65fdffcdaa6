package bookstore

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
)

// meshWorkload is one bookstore workload of TestMesh: an in-process service and its sidecar.
type meshWorkload struct {
	name, service, version string
	n                      int // the sidecar takes 127.0.42.n inbound and 127.0.43.n outbound
}

func (w meshWorkload) inboundIP() string  { return fmt.Sprintf("127.0.42.%d", w.n) }
func (w meshWorkload) outboundIP() string { return fmt.Sprintf("127.0.43.%d", w.n) }

// explicitSidecar is the Sidecar of a workload in explicit mode (captureMode NONE), which is how a
// workload runs without interception: inbound on the workload's address, handed to the
// application at app; outbound on a second address of its own, which the application uses as its
// HTTP proxy (--proxy). The two listeners cannot share an address: both are port 9080.
func explicitSidecar(w meshWorkload, app string) string {
	return fmt.Sprintf(`---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: %s, namespace: default}
spec:
  workloadSelector: {labels: {app: %s, version: %s}}
  ingress:
  - port: {number: 9080, protocol: HTTP, name: http}
    defaultEndpoint: %s
    captureMode: NONE
    bind: %s
  egress:
  - port: {number: 9080, protocol: HTTP, name: http}
    hosts: ["default/*"]
    captureMode: NONE
    bind: %s
`, w.name, w.service, w.version, app, w.inboundIP(), w.outboundIP())
}

// readSample returns a YAML file of the sample.
func readSample(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestMesh runs the bookstore in a real mesh — straitd, an ingress router and a sidecar per
// workload in explicit mode on loopback addresses, the workloads auto-registered into the
// WorkloadGroups of register/services.yaml — with config/ as its configuration, and applies each
// scenario of scenarios/ by writing it into straitd's watched directory, checking the behaviour
// it names.
func TestMesh(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real straitd and strait-proxy processes")
	}
	workloads := []meshWorkload{
		{"web", Web, "v1", 10}, {"details", Details, "v1", 11}, {"reviews-v1", Reviews, "v1", 12},
		{"reviews-v2", Reviews, "v2", 13}, {"reviews-v3", Reviews, "v3", 14}, {"ratings", Ratings, "v1", 15},
	}
	// ratings can turn flaky (half its answers 500) for the retry scenario.
	var flaky atomic.Bool
	steady := Handler(Options{Service: Ratings, Version: "v1"}, quiet)
	failing := Handler(Options{Service: Ratings, Version: "v1", FailRate: 0.5}, quiet)
	ratingsApp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if flaky.Load() {
			failing.ServeHTTP(w, r)
			return
		}
		steady.ServeHTTP(w, r)
	}))
	t.Cleanup(ratingsApp.Close)

	sidecars := "# The bookstore's workloads in explicit mode."
	apps := map[string]string{}
	for _, w := range workloads {
		app := ratingsApp.URL
		if w.service != Ratings {
			app = serve(t, Options{Service: w.service, Version: w.version, DetailsURL: DefaultDetailsURL,
				ReviewsURL: DefaultReviewsURL, RatingsURL: DefaultRatingsURL, Proxy: "http://" + w.outboundIP() + ":9080"}, nil)
		}
		apps[w.name] = app
		sidecars += explicitSidecar(w, strings.TrimPrefix(app, "http://"))
	}
	ingressPort := testenv.FreePort(t)
	gateway := strings.Replace(readSample(t, "config/gateway.yaml"), "number: 8080", "number: "+strconv.Itoa(ingressPort), 1)
	sd := testenv.StartStraitd(t, map[string]string{
		"destination-rules.yaml": readSample(t, "config/destination-rules.yaml"),
		"gateway.yaml":           gateway,
		"services.yaml":          readSample(t, "register/services.yaml"),
		"sidecars.yaml":          sidecars,
	})
	// Every proxy has an identity from straitd's CA (auto-registration needs one): the hops are
	// mutual TLS.
	testenv.StartProxy(t, sd.XDS, testenv.ProxyOptions{Name: "ingress", Labels: map[string]string{"istio": "ingressgateway"},
		Extra: sd.Identity(t, "default", "ingress")})
	for _, w := range workloads {
		testenv.StartProxy(t, sd.XDS, testenv.ProxyOptions{Mode: "sidecar", Name: w.name, IP: w.inboundIP(),
			Labels: map[string]string{"app": w.service, "version": w.version},
			Extra: append([]string{"--interception-mode", "NONE", "--workload-group", w.service},
				sd.Identity(t, "default", "bookstore-"+w.service)...)})
	}

	ingress := fmt.Sprintf("http://127.0.0.1:%d/api/book/0", ingressPort)
	// page fetches the book page through the ingress as user (none if empty).
	page := func(user string) (BookPage, error) {
		h := http.Header{}
		if user != "" {
			h.Set("End-User", user)
		}
		code, body, err := testenv.Get(t.Context(), ingress, h)
		if err != nil {
			return BookPage{}, err
		}
		var p BookPage
		if err := json.Unmarshal([]byte(body), &p); code != http.StatusOK || err != nil {
			return p, fmt.Errorf("GET %s: %d %s", ingress, code, body)
		}
		return p, nil
	}
	// reviewsBy counts, over n pages for user, which version of reviews answered.
	reviewsBy := func(n int, user string) (map[string]int, error) {
		seen := map[string]int{}
		for range n {
			p, err := page(user)
			if err != nil {
				return nil, err
			}
			seen[p.Versions[Reviews]]++
		}
		return seen, nil
	}
	// ratingsError asks reviews v2 directly for a book as user; its sidecar applies the ratings
	// routes on the way to ratings. It returns why ratings failed ("" if it answered).
	ratingsError := func(user string) (string, error) {
		h := http.Header{}
		if user != "" {
			h.Set("End-User", user)
		}
		code, body, err := testenv.Get(t.Context(), apps["reviews-v2"]+"/reviews/0", h)
		if err != nil {
			return "", err
		}
		var br BookReviews
		if err := json.Unmarshal([]byte(body), &br); code != http.StatusOK || err != nil {
			return "", fmt.Errorf("reviews: %d %s", code, body)
		}
		return br.RatingsError, nil
	}
	// awaitRatings waits up to d until user's ("" for no user) ratings error contains want, or
	// with want "" until there is none; why is what the test waits for.
	awaitRatings := func(t *testing.T, d time.Duration, user, want, why string) {
		t.Helper()
		testenv.Eventually(t, d, func() error {
			e, err := ratingsError(user)
			if ok := strings.Contains(e, want) && (want != "" || e == ""); err != nil || !ok {
				return fmt.Errorf("ratings error %q for user %q (%v), want %s", e, user, err, why)
			}
			return nil
		})
	}
	scenario := func(file, name string) {
		t.Helper()
		sd.WriteConfig(t, file, readSample(t, filepath.Join("scenarios", name)))
	}

	t.Run("no routes: round robin over v1, v2, v3", func(t *testing.T) {
		testenv.Eventually(t, 30*time.Second, func() error {
			seen, err := reviewsBy(12, "")
			if err == nil && (seen["v1"] == 0 || seen["v2"] == 0 || seen["v3"] == 0) {
				err = fmt.Errorf("reviews versions %v, want all three", seen)
			}
			return err
		})
		p, _ := page("")
		if p.Details == nil || p.Versions[Web] != "v1" || p.Versions[Details] != "v1" {
			t.Errorf("page through the ingress: %+v", p)
		}
		// Automatic mutual TLS: each service's sidecar verified its caller's certificate.
		const sa = "spiffe://cluster.local/ns/default/sa/"
		want := map[string]string{Web: sa + "ingress", Details: sa + "bookstore-web", Reviews: sa + "bookstore-web"}
		for svc, caller := range want {
			if p.Callers[svc] != caller {
				t.Errorf("%s was called by %q, want %q (callers %v)", svc, p.Callers[svc], caller, p.Callers)
			}
		}
	})
	t.Run("reviews-v1.yaml", func(t *testing.T) {
		scenario("reviews.yaml", "reviews-v1.yaml")
		testenv.Eventually(t, 10*time.Second, func() error {
			if seen, err := reviewsBy(20, "jason"); err != nil || seen["v1"] != 20 {
				return fmt.Errorf("reviews versions %v (%v), want only v1", seen, err)
			}
			return nil
		})
	})
	t.Run("reviews-canary-90-10.yaml", func(t *testing.T) {
		scenario("reviews.yaml", "reviews-canary-90-10.yaml")
		testenv.Eventually(t, 10*time.Second, func() error {
			if seen, err := reviewsBy(1, ""); err != nil || seen["v2"] == 0 {
				return fmt.Errorf("no v2 yet: %v (%v)", seen, err)
			}
			return nil
		})
		seen, err := reviewsBy(500, "")
		if err != nil {
			t.Fatal(err)
		}
		// 10% of 500 is 50; the bounds are more than four standard deviations (6.7) away.
		if seen["v1"]+seen["v2"] != 500 || seen["v2"] < 20 || seen["v2"] > 80 {
			t.Errorf("reviews versions %v over 500 requests, want about 450 v1 and 50 v2", seen)
		}
	})
	t.Run("reviews-jason-v2.yaml", func(t *testing.T) {
		scenario("reviews.yaml", "reviews-jason-v2.yaml")
		testenv.Eventually(t, 10*time.Second, func() error {
			jason, err := reviewsBy(10, "jason")
			if err != nil || jason["v2"] != 10 {
				return fmt.Errorf("jason got reviews %v (%v), want only v2", jason, err)
			}
			if others, err := reviewsBy(20, "alice"); err != nil || others["v1"] != 20 {
				return fmt.Errorf("alice got reviews %v (%v), want only v1", others, err)
			}
			return nil
		})
	})
	t.Run("ratings-abort-jason.yaml", func(t *testing.T) {
		scenario("ratings.yaml", "ratings-abort-jason.yaml")
		awaitRatings(t, 10*time.Second, "jason", "500", "the injected 500")
		if e, err := ratingsError("alice"); err != nil || e != "" {
			t.Errorf("alice's ratings error %q (%v), want none", e, err)
		}
		if p, err := page("jason"); err != nil || p.RatingsError != RatingsUnavailable || p.Versions[Reviews] != "v2" {
			t.Errorf("jason's page: %+v (%v), want reviews v2 with ratings unavailable", p, err)
		}
	})
	t.Run("ratings-delay-jason.yaml", func(t *testing.T) {
		scenario("ratings.yaml", "ratings-delay-jason.yaml")
		// The 7 s delay outlasts reviews' 2 s timeout: reviews gives up on ratings.
		awaitRatings(t, 20*time.Second, "jason", "deadline exceeded", "a timeout")
		if e, err := ratingsError("alice"); err != nil || e != "" {
			t.Errorf("alice's ratings error %q (%v), want none", e, err)
		}
	})
	t.Run("ratings-retry.yaml", func(t *testing.T) {
		// failures counts the requests of n to reviews v2 whose ratings failed.
		failures := func(n int) (int, error) {
			f := 0
			for range n {
				e, err := ratingsError("")
				if err != nil {
					return 0, err
				}
				if e != "" {
					f++
				}
			}
			return f, nil
		}
		if err := os.Remove(filepath.Join(sd.ConfigDir, "ratings.yaml")); err != nil {
			t.Fatal(err)
		}
		flaky.Store(true)
		// Without a retry policy half of the requests fail: 500 is not retried by default.
		if f, err := failures(100); err != nil || f < 20 {
			t.Fatalf("%d of 100 requests failed (%v) with ratings failing half of the time, want about 50", f, err)
		}
		scenario("ratings.yaml", "ratings-retry.yaml")
		testenv.Eventually(t, 10*time.Second, func() error {
			// Up to 5 tries: about 3% fail.
			if f, err := failures(100); err != nil || f > 12 {
				return fmt.Errorf("%d of 100 requests failed (%v), want few with retries", f, err)
			}
			return nil
		})
		flaky.Store(false)
	})
	// The authorization scenarios name strait up's service accounts (sa/reviews); this mesh's
	// are bookstore-<service>.
	authz := func(file, name string) {
		t.Helper()
		body := strings.ReplaceAll(readSample(t, filepath.Join("scenarios", name)), "/sa/", "/sa/bookstore-")
		sd.WriteConfig(t, file, body)
	}
	t.Run("authz-deny-ratings.yaml", func(t *testing.T) {
		authz("authz.yaml", "authz-deny-ratings.yaml")
		awaitRatings(t, 20*time.Second, "", "403", "403 from the DENY policy")
		if p, err := page(""); err != nil || p.Details == nil {
			t.Errorf("the page without ratings: %+v (%v), want it still served", p, err)
		}
	})
	t.Run("authz-ratings-from-reviews-only.yaml", func(t *testing.T) {
		authz("authz.yaml", "authz-ratings-from-reviews-only.yaml")
		awaitRatings(t, 20*time.Second, "", "", "none: reviews is the allowed caller")
	})
}
