// Package bookstore is Strait's demo application: a small online bookstore of four HTTP services
// in the shape of Istio's bookinfo, written with the standard library only.
//
//	web ──► details
//	    └─► reviews v1 (no stars)
//	        reviews v2 (black stars) ──► ratings
//	        reviews v3 (red stars)   ──► ratings
//
// One binary (cmd/bookstore) runs any of the services, chosen by --service. Every service
// listens on port 9080 by default, answers /healthz, names itself in each response (the JSON
// fields "service" and "version", and the X-Bookstore-Service and X-Bookstore-Version headers),
// copies the trace, request-id and user headers a mesh needs from the request it serves to the
// requests it makes (PropagatedHeaders), bounds every upstream call with a timeout, and degrades
// gracefully when an upstream fails: the page still renders and says what is unavailable.
package bookstore

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The services a bookstore process can run.
const (
	Web     = "web"
	Details = "details"
	Reviews = "reviews"
	Ratings = "ratings"
)

// Default upstream addresses: the mesh names of the services, on the port every service uses.
const (
	DefaultDetailsURL = "http://details:9080"
	DefaultReviewsURL = "http://reviews:9080"
	DefaultRatingsURL = "http://ratings:9080"
	DefaultPort       = 9080
)

// Options configure one bookstore service. ParseArgs fills them from flags and the environment.
type Options struct {
	// Service is the service to run: Web, Details, Reviews or Ratings.
	Service string
	// Version is reported in responses; for Reviews it also selects the behaviour: "v1" shows no
	// stars, "v2" black stars, "v3" red stars (v2 and v3 call ratings).
	Version string
	// Listen is the address to listen on, "host:port" (":9080" for every interface).
	Listen string
	// DetailsURL, ReviewsURL and RatingsURL are the base URLs of the upstream services.
	DetailsURL, ReviewsURL, RatingsURL string
	// Proxy, if set, is the URL of an HTTP proxy that every upstream call goes through: a
	// sidecar's outbound listener in explicit mode (no interception), which routes the request by
	// its Host, the upstream's mesh name. Empty: HTTP_PROXY and NO_PROXY from the environment
	// apply, as in any Go program (never to loopback addresses).
	Proxy string
	// Timeout bounds each upstream call. Zero means the service's default: 3 s for web's calls,
	// 2 s for reviews' calls to ratings, so that a slow ratings degrades reviews before web gives
	// up on reviews.
	Timeout time.Duration
	// FailRate is the fraction of requests (0 to 1) answered with FailCode instead of served, to
	// demonstrate retries. /healthz never fails.
	FailRate float64
	// FailCode is the status of those answers; 0 means 500. 500 is not retried by the mesh's
	// default retry policy (Istio's retries 503, twice), so a retry policy makes a visible
	// difference; 503 shows the default retries at work.
	FailCode int
	// Delay is added before every answer except /healthz, to demonstrate timeouts.
	Delay time.Duration
}

// upstreamTimeout returns Timeout or the service's default.
func (o Options) upstreamTimeout() time.Duration {
	switch {
	case o.Timeout > 0:
		return o.Timeout
	case o.Service == Web:
		return 3 * time.Second
	default:
		return 2 * time.Second
	}
}

// Usage is printed with the flag defaults on -h.
const Usage = `usage: bookstore --service web|details|reviews|ratings [flags]

Runs one service of the bookstore demo. Every flag can also be set by the environment variable
named in its description; a flag given on the command line wins.

`

// ParseArgs parses the command line args (without the program name) on top of the environment
// read through getenv, and checks the result. Environment variables: BOOKSTORE_SERVICE,
// SERVICE_VERSION, PORT, LISTEN_ADDR, DETAILS_URL, REVIEWS_URL, RATINGS_URL, UPSTREAM_PROXY, UPSTREAM_TIMEOUT,
// FAIL_RATE, FAIL_CODE and DELAY. Under `strait run --mode explicit` (STRAIT_MODE=explicit) the
// service listens on $STRAIT_WORKLOAD_IP and calls its upstreams through the sidecar's outbound
// listener at $STRAIT_OUTBOUND_IP:9080 unless told otherwise. An error names the flag or variable at fault; flag.ErrHelp is returned
// for -h.
func ParseArgs(args []string, getenv func(string) string) (Options, error) {
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	var o Options
	var err error
	if o.Timeout, err = time.ParseDuration(env("UPSTREAM_TIMEOUT", "0s")); err != nil {
		return o, fmt.Errorf("UPSTREAM_TIMEOUT: %w", err)
	}
	if o.Delay, err = time.ParseDuration(env("DELAY", "0s")); err != nil {
		return o, fmt.Errorf("DELAY: %w", err)
	}
	if o.FailRate, err = strconv.ParseFloat(env("FAIL_RATE", "0"), 64); err != nil {
		return o, fmt.Errorf("FAIL_RATE: %w", err)
	}
	if o.FailCode, err = strconv.Atoi(env("FAIL_CODE", "500")); err != nil {
		return o, fmt.Errorf("FAIL_CODE: %w", err)
	}
	port, err := strconv.Atoi(env("PORT", strconv.Itoa(DefaultPort)))
	if err != nil {
		return o, fmt.Errorf("PORT: %w", err)
	}

	// Under `strait run` in explicit mode (no interception) the workload has an address of its
	// own to listen on, and its sidecar offers the mesh services on a second one.
	listenHost, proxy := "", env("UPSTREAM_PROXY", "")
	if getenv("STRAIT_MODE") == "explicit" {
		listenHost = getenv("STRAIT_WORKLOAD_IP")
		if ip := getenv("STRAIT_OUTBOUND_IP"); ip != "" && proxy == "" {
			proxy = "http://" + net.JoinHostPort(ip, strconv.Itoa(DefaultPort))
		}
	}

	fs := flag.NewFlagSet("bookstore", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), Usage)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.Service, "service", env("BOOKSTORE_SERVICE", ""), "service to run: web, details, reviews or ratings (BOOKSTORE_SERVICE)")
	fs.StringVar(&o.Version, "version", env("SERVICE_VERSION", "v1"), "version to report; for reviews v1 (no stars), v2 (black stars) or v3 (red stars) (SERVICE_VERSION)")
	fs.IntVar(&port, "port", port, "port to listen on, on every interface (PORT)")
	fs.StringVar(&o.Listen, "listen", env("LISTEN_ADDR", ""), "host:port to listen on; overrides --port (LISTEN_ADDR)")
	fs.StringVar(&o.DetailsURL, "details", env("DETAILS_URL", DefaultDetailsURL), "base URL of details, called by web (DETAILS_URL)")
	fs.StringVar(&o.ReviewsURL, "reviews", env("REVIEWS_URL", DefaultReviewsURL), "base URL of reviews, called by web (REVIEWS_URL)")
	fs.StringVar(&o.RatingsURL, "ratings", env("RATINGS_URL", DefaultRatingsURL), "base URL of ratings, called by reviews v2 and v3 (RATINGS_URL)")
	fs.StringVar(&o.Proxy, "proxy", proxy, "HTTP proxy for upstream calls, e.g. the sidecar's outbound listener in explicit mode; default HTTP_PROXY (UPSTREAM_PROXY)")
	fs.DurationVar(&o.Timeout, "timeout", o.Timeout, "timeout of each upstream call; 0 for the default, 3s for web and 2s for reviews (UPSTREAM_TIMEOUT)")
	fs.Float64Var(&o.FailRate, "fail-rate", o.FailRate, "fraction of requests, 0 to 1, answered with --fail-code to demonstrate retries (FAIL_RATE)")
	fs.IntVar(&o.FailCode, "fail-code", o.FailCode, "status of the --fail-rate answers: 500 is not retried by default, 503 is (FAIL_CODE)")
	fs.DurationVar(&o.Delay, "delay", o.Delay, "delay added before every answer, to demonstrate timeouts (DELAY)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if o.Listen == "" {
		o.Listen = net.JoinHostPort(listenHost, strconv.Itoa(port))
	}
	return o, o.Validate()
}

// Validate checks the options and returns every problem found, joined.
func (o Options) Validate() error {
	var errs []error
	switch o.Service {
	case Web, Details, Reviews, Ratings:
	case "":
		errs = append(errs, errors.New("--service is required: web, details, reviews or ratings"))
	default:
		errs = append(errs, fmt.Errorf("--service %q: want web, details, reviews or ratings", o.Service))
	}
	switch {
	case o.Version == "":
		errs = append(errs, errors.New("--version must not be empty"))
	case o.Service == Reviews && o.Version != "v1" && o.Version != "v2" && o.Version != "v3":
		errs = append(errs, fmt.Errorf("--version %q: reviews has v1, v2 and v3", o.Version))
	}
	if o.Listen == "" {
		errs = append(errs, errors.New("--listen must not be empty"))
	}
	urls := []struct{ flag, value string }{{"details", o.DetailsURL}, {"reviews", o.ReviewsURL}, {"ratings", o.RatingsURL}}
	if o.Proxy != "" {
		urls = append(urls, struct{ flag, value string }{"proxy", o.Proxy})
	}
	for _, u := range urls {
		p, err := url.Parse(u.value)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("--%s: %w", u.flag, err))
		case p.Scheme != "http" && p.Scheme != "https", p.Host == "":
			errs = append(errs, fmt.Errorf("--%s %q: want an http:// or https:// URL with a host", u.flag, u.value))
		}
	}
	if o.FailRate < 0 || o.FailRate > 1 {
		errs = append(errs, fmt.Errorf("--fail-rate %v: want a fraction from 0 to 1", o.FailRate))
	}
	if o.FailCode != 0 && (o.FailCode < 400 || o.FailCode > 599) {
		errs = append(errs, fmt.Errorf("--fail-code %d: want a 4xx or 5xx status", o.FailCode))
	}
	if o.Delay < 0 {
		errs = append(errs, fmt.Errorf("--delay %v: must not be negative", o.Delay))
	}
	if o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("--timeout %v: must not be negative", o.Timeout))
	}
	return errors.Join(errs...)
}
