package bookstore

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// quiet discards the services' access logs in tests.
var quiet = slog.New(slog.DiscardHandler)

// recorder keeps the headers of the requests a service received, by x-request-id.
type recorder struct {
	mu   sync.Mutex
	seen map[string]http.Header
}

func (r *recorder) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		if r.seen == nil {
			r.seen = map[string]http.Header{}
		}
		r.seen[req.Header.Get("X-Request-Id")] = req.Header.Clone()
		r.mu.Unlock()
		next.ServeHTTP(w, req)
	})
}

// got returns the headers of the request with the given x-request-id, if one arrived.
func (r *recorder) got(id string) (http.Header, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h, ok := r.seen[id]
	return h, ok
}

// serve starts the service o on a loopback port and returns its base URL. rec, if not nil,
// records the requests it receives.
func serve(t *testing.T, o Options, rec *recorder) string {
	t.Helper()
	if o.Version == "" {
		o.Version = "v1"
	}
	for _, u := range []*string{&o.DetailsURL, &o.ReviewsURL, &o.RatingsURL} {
		if *u == "" {
			*u = deadURL(t)
		}
	}
	o.Listen = "127.0.0.1:0"
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	h := Handler(o, quiet)
	if rec != nil {
		h = rec.wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// deadURL returns the URL of a loopback port nothing listens on: calls to it are refused.
func deadURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// get sends GET url with the headers h and returns the answer and its body.
func get(t *testing.T, c *http.Client, url string, h map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header.Set(k, v)
	}
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// getPage sends GET url (web's /api/book/{id}) and decodes the BookPage.
func getPage(t *testing.T, url string, h map[string]string) (*http.Response, BookPage) {
	t.Helper()
	resp, body := get(t, nil, url, h)
	var p BookPage
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("GET %s: decoding %q: %v", url, body, err)
	}
	return resp, p
}

// traceHeaders are sent to web and must arrive unchanged at ratings.
var traceHeaders = map[string]string{
	"X-Request-Id":      "",
	"Traceparent":       "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	"Tracestate":        "strait=t61rcWkgMzE",
	"X-B3-Traceid":      "80f198ee56343ba864fe8b2a57d3eff7",
	"X-B3-Spanid":       "e457b5a2e4d86bd1",
	"X-B3-Parentspanid": "05e3ac9a4f6e3b90",
	"X-B3-Sampled":      "1",
	"B3":                "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
	"X-Ot-Span-Context": "80f198ee56343ba8;e457b5a2e4d86bd1;05e3ac9a4f6e3b90;cs",
	"End-User":          "jason",
	"X-User":            "jason",
}

// TestChain runs the whole bookstore without a mesh — web, details, the three versions of
// reviews and ratings, wired to each other by loopback URLs — and follows a request through
// web → details + reviews vN → ratings: who answered, what each version shows, and that the trace,
// request-id and user headers reach ratings unchanged.
func TestChain(t *testing.T) {
	var ratingsSeen, detailsSeen recorder
	ratings := serve(t, Options{Service: Ratings}, &ratingsSeen)
	details := serve(t, Options{Service: Details}, &detailsSeen)
	for _, tc := range []struct {
		version string
		color   string // "" for no stars and no call to ratings
	}{{"v1", ""}, {"v2", "black"}, {"v3", "red"}} {
		t.Run("reviews-"+tc.version, func(t *testing.T) {
			reviews := serve(t, Options{Service: Reviews, Version: tc.version, RatingsURL: ratings}, nil)
			web := serve(t, Options{Service: Web, DetailsURL: details, ReviewsURL: reviews}, nil)

			h := map[string]string{}
			for k, v := range traceHeaders {
				h[k] = v
			}
			rid := "chain-" + tc.version
			h["X-Request-Id"] = rid
			resp, p := getPage(t, web+"/api/book/0", h)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want 200", resp.StatusCode)
			}
			if got := resp.Header.Get(HeaderService) + "/" + resp.Header.Get(HeaderVersion); got != "web/v1" {
				t.Errorf("identity headers %s, want web/v1", got)
			}
			if p.Service != Web || p.RequestID != rid || p.User != "jason" {
				t.Errorf("page service %q, request id %q, user %q; want web, %s, jason", p.Service, p.RequestID, p.User, rid)
			}
			if resp.Header.Get("X-Request-Id") != rid {
				t.Errorf("x-request-id answered %q, want %s", resp.Header.Get("X-Request-Id"), rid)
			}
			if p.Details == nil || p.Details.Title != "The Comedy of Errors" || p.DetailsError != "" {
				t.Errorf("details %+v, error %q", p.Details, p.DetailsError)
			}
			want := "details=v1,reviews=" + tc.version + ",web=v1"
			if tc.color != "" {
				want = "details=v1,ratings=v1,reviews=" + tc.version + ",web=v1"
			}
			if got := versionsHeader(p.Versions); got != want {
				t.Errorf("versions %s, want %s", got, want)
			}
			if got := resp.Header.Get(HeaderVersions); got != want {
				t.Errorf("%s: %s, want %s", HeaderVersions, got, want)
			}
			if len(p.Reviews) != 2 || p.ReviewsError != "" {
				t.Fatalf("reviews %+v, error %q", p.Reviews, p.ReviewsError)
			}
			for _, rv := range p.Reviews {
				switch {
				case tc.color == "" && rv.Rating != nil:
					t.Errorf("reviews v1 shows a rating: %+v", rv.Rating)
				case tc.color != "" && (rv.Rating == nil || rv.Rating.Color != tc.color || rv.Rating.Stars < 1):
					t.Errorf("review by %s: rating %+v, want %s stars", rv.Reviewer, rv.Rating, tc.color)
				}
			}

			if _, ok := detailsSeen.got(rid); !ok {
				t.Errorf("details did not see request %s", rid)
			}
			got, ok := ratingsSeen.got(rid)
			if tc.color == "" {
				if ok {
					t.Errorf("reviews v1 called ratings")
				}
				return
			}
			if !ok {
				t.Fatalf("ratings did not see request %s", rid)
			}
			for k, v := range h {
				if got.Get(k) != v {
					t.Errorf("ratings got %s: %q, want %q", k, got.Get(k), v)
				}
			}
		})
	}
}

// TestRequestIDGenerated checks that web creates an x-request-id for a request that arrives
// without one, answers it, and propagates it to the end of the chain.
func TestRequestIDGenerated(t *testing.T) {
	var seen recorder
	ratings := serve(t, Options{Service: Ratings}, &seen)
	reviews := serve(t, Options{Service: Reviews, Version: "v2", RatingsURL: ratings}, nil)
	web := serve(t, Options{Service: Web, ReviewsURL: reviews}, nil)
	resp, p := getPage(t, web+"/api/book/1", nil)
	rid := resp.Header.Get("X-Request-Id")
	if len(rid) != 36 || p.RequestID != rid {
		t.Fatalf("x-request-id %q, page says %q: want a UUID", rid, p.RequestID)
	}
	if _, ok := seen.got(rid); !ok {
		t.Errorf("ratings did not see x-request-id %s", rid)
	}
}

// TestDegradation stops one upstream at a time and checks that the page still renders, saying
// what is unavailable.
func TestDegradation(t *testing.T) {
	ratings := serve(t, Options{Service: Ratings}, nil)
	details := serve(t, Options{Service: Details}, nil)
	reviews := serve(t, Options{Service: Reviews, Version: "v2", RatingsURL: ratings}, nil)

	t.Run("ratings down", func(t *testing.T) {
		reviews := serve(t, Options{Service: Reviews, Version: "v2"}, nil) // ratings: a dead port
		web := serve(t, Options{Service: Web, DetailsURL: details, ReviewsURL: reviews}, nil)
		resp, p := getPage(t, web+"/api/book/0", nil)
		if resp.StatusCode != http.StatusOK || p.ReviewsError != "" || len(p.Reviews) != 2 {
			t.Fatalf("status %d, reviews %+v, error %q: want the reviews without ratings", resp.StatusCode, p.Reviews, p.ReviewsError)
		}
		if p.RatingsError != RatingsUnavailable {
			t.Errorf("ratingsError %q, want %q", p.RatingsError, RatingsUnavailable)
		}
		for _, rv := range p.Reviews {
			if rv.Rating == nil || rv.Rating.Error != RatingsUnavailable {
				t.Errorf("review by %s: rating %+v, want %q", rv.Reviewer, rv.Rating, RatingsUnavailable)
			}
		}
		if _, ok := p.Versions[Ratings]; ok || p.Versions[Reviews] != "v2" {
			t.Errorf("versions %v: want reviews v2 and no ratings", p.Versions)
		}
		_, body := get(t, nil, web+"/book/0", nil)
		if !strings.Contains(string(body), RatingsUnavailable) || !strings.Contains(string(body), "Comedy of Errors") {
			t.Errorf("HTML page does not say %q:\n%s", RatingsUnavailable, body)
		}
	})
	t.Run("reviews down", func(t *testing.T) {
		web := serve(t, Options{Service: Web, DetailsURL: details}, nil)
		resp, p := getPage(t, web+"/api/book/0", nil)
		if resp.StatusCode != http.StatusOK || p.Details == nil || p.ReviewsError != ReviewsUnavailable || p.Reviews != nil {
			t.Fatalf("status %d, details %v, reviews error %q: want details and %q", resp.StatusCode, p.Details, p.ReviewsError, ReviewsUnavailable)
		}
		_, body := get(t, nil, web+"/book/0", nil)
		if !strings.Contains(string(body), ReviewsUnavailable) {
			t.Errorf("HTML page does not say %q:\n%s", ReviewsUnavailable, body)
		}
	})
	t.Run("details down", func(t *testing.T) {
		web := serve(t, Options{Service: Web, ReviewsURL: reviews}, nil)
		resp, p := getPage(t, web+"/api/book/0", nil)
		if resp.StatusCode != http.StatusOK || p.Details != nil || p.DetailsError != DetailsUnavailable || len(p.Reviews) != 2 {
			t.Fatalf("status %d, details %v, error %q, reviews %v: want reviews and %q", resp.StatusCode, p.Details, p.DetailsError, p.Reviews, DetailsUnavailable)
		}
		_, body := get(t, nil, web+"/", nil)
		if !strings.Contains(string(body), DetailsUnavailable) {
			t.Errorf("index does not say %q:\n%s", DetailsUnavailable, body)
		}
	})
	t.Run("unknown book", func(t *testing.T) {
		web := serve(t, Options{Service: Web, DetailsURL: details, ReviewsURL: reviews}, nil)
		if resp, _ := getPage(t, web+"/api/book/99", nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("status %d, want 404", resp.StatusCode)
		}
		if resp, _ := get(t, nil, web+"/api/book/x", nil); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("status %d, want 400", resp.StatusCode)
		}
	})
}

// TestSlowUpstream checks that a slow ratings (--delay) costs reviews no more than its timeout.
func TestSlowUpstream(t *testing.T) {
	ratings := serve(t, Options{Service: Ratings, Delay: 5 * time.Second}, nil)
	reviews := serve(t, Options{Service: Reviews, Version: "v3", RatingsURL: ratings, Timeout: 200 * time.Millisecond}, nil)
	start := time.Now()
	resp, body := get(t, nil, reviews+"/reviews/0", nil)
	var br BookReviews
	if err := json.Unmarshal(body, &br); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || br.RatingsError == "" || br.Reviews[0].Rating.Error != RatingsUnavailable {
		t.Errorf("status %d, %+v: want reviews with ratings unavailable", resp.StatusCode, br)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("reviews answered after %v: the 200ms timeout did not cut the 5s delay", d)
	}
}

// TestFaultsAndHealth checks --fail-rate and --fail-code, and that /healthz is exempt.
func TestFaultsAndHealth(t *testing.T) {
	for _, code := range []int{0, http.StatusServiceUnavailable} {
		ratings := serve(t, Options{Service: Ratings, FailRate: 1, FailCode: code}, nil)
		want := code
		if want == 0 {
			want = http.StatusInternalServerError
		}
		if resp, _ := get(t, nil, ratings+"/ratings/0", nil); resp.StatusCode != want || resp.Header.Get(HeaderService) != Ratings {
			t.Errorf("fail code %d: status %d, service header %q; want %d, ratings", code, resp.StatusCode, resp.Header.Get(HeaderService), want)
		}
		resp, body := get(t, nil, ratings+"/healthz", nil)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"status": "ok"`) {
			t.Errorf("/healthz with fail-rate 1: %d %s", resp.StatusCode, body)
		}
	}
	for _, s := range []string{Web, Details, Reviews, Ratings} {
		u := serve(t, Options{Service: s, Version: "v3"}, nil)
		resp, body := get(t, nil, u+"/healthz", nil)
		var id Identity
		_ = json.Unmarshal(body, &id)
		if resp.StatusCode != http.StatusOK || id != (Identity{Service: s, Version: "v3"}) || resp.Header.Get(HeaderVersion) != "v3" {
			t.Errorf("%s /healthz: %d %s", s, resp.StatusCode, body)
		}
	}
}

// TestSignIn checks that a user signed in on web is sent upstream as end-user, as header-based
// routing needs, and that signing out stops it.
func TestSignIn(t *testing.T) {
	var seen recorder
	ratings := serve(t, Options{Service: Ratings}, &seen)
	reviews := serve(t, Options{Service: Reviews, Version: "v2", RatingsURL: ratings}, nil)
	web := serve(t, Options{Service: Web, ReviewsURL: reviews}, nil)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err := c.PostForm(web+"/login", map[string][]string{"user": {"jason"}, "back": {"/book/0"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Request.URL.Path != "/book/0" {
		t.Errorf("after sign-in at %s, want /book/0", resp.Request.URL.Path)
	}
	resp, body := get(t, c, web+"/book/1", map[string]string{"X-Request-Id": "signed-in"})
	if !strings.Contains(string(body), "signed in as <b>jason</b>") {
		t.Errorf("page does not show the user: %d\n%s", resp.StatusCode, body)
	}
	if h, ok := seen.got("signed-in"); !ok || h.Get("End-User") != "jason" {
		t.Errorf("ratings got end-user %q, want jason", h.Get("End-User"))
	}
	resp, err = c.PostForm(web+"/logout", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	get(t, c, web+"/book/1", map[string]string{"X-Request-Id": "signed-out"})
	if h, ok := seen.got("signed-out"); !ok || h.Get("End-User") != "" {
		t.Errorf("after sign-out ratings got end-user %q, want none", h.Get("End-User"))
	}
}

// TestRun starts a service with Run on a loopback port, as cmd/bookstore does, and stops it.
func TestRun(t *testing.T) {
	addr := strings.TrimPrefix(deadURL(t), "http://")
	o, err := ParseArgs([]string{"--service", "details", "--listen", addr}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, o, quiet) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("service did not come up: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

// TestProxy runs web and reviews with --proxy pointing at a stand-in for a sidecar's outbound
// listener in explicit mode: the services keep calling the mesh names (http://reviews:9080), and
// the proxy receives absolute-form requests whose Host is that name, and routes them by it.
func TestProxy(t *testing.T) {
	ratings := serve(t, Options{Service: Ratings}, nil)
	details := serve(t, Options{Service: Details}, nil)
	backends := map[string]string{"details:9080": details, "ratings:9080": ratings}
	var mu sync.Mutex
	var hosts []string
	sidecar := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hosts = append(hosts, r.Host)
		to, ok := backends[r.Host]
		mu.Unlock()
		if !ok || !r.URL.IsAbs() {
			http.Error(w, "no route to "+r.Host, http.StatusNotFound)
			return
		}
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, to+r.URL.Path, nil)
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	defer sidecar.Close()
	reviews := serve(t, Options{Service: Reviews, Version: "v2", RatingsURL: DefaultRatingsURL, Proxy: sidecar.URL}, nil)
	mu.Lock()
	backends["reviews:9080"] = reviews
	mu.Unlock()
	web := serve(t, Options{Service: Web, DetailsURL: DefaultDetailsURL, ReviewsURL: DefaultReviewsURL, Proxy: sidecar.URL}, nil)
	_, p := getPage(t, web+"/api/book/2", nil)
	if got := versionsHeader(p.Versions); got != "details=v1,ratings=v1,reviews=v2,web=v1" {
		t.Errorf("versions %s (details error %q, reviews error %q)", got, p.DetailsError, p.ReviewsError)
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(hosts)
	if want := []string{"details:9080", "ratings:9080", "reviews:9080"}; !slices.Equal(hosts, want) {
		t.Errorf("proxy saw hosts %v, want %v", hosts, want)
	}
}
