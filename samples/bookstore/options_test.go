package bookstore

import (
	"errors"
	"flag"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestParseArgs checks defaults, environment variables, flags winning over them, and errors.
func TestParseArgs(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    Options
		wantErr string
	}{
		{
			name: "defaults",
			args: []string{"--service", "web"},
			want: Options{Service: Web, Version: "v1", Listen: ":9080", DetailsURL: DefaultDetailsURL,
				ReviewsURL: DefaultReviewsURL, RatingsURL: DefaultRatingsURL, FailCode: 500},
		},
		{
			name: "environment",
			env: map[string]string{"BOOKSTORE_SERVICE": "reviews", "SERVICE_VERSION": "v3", "PORT": "9081",
				"RATINGS_URL": "http://127.0.0.1:9083", "UPSTREAM_TIMEOUT": "1s", "FAIL_RATE": "0.25", "FAIL_CODE": "503", "DELAY": "10ms"},
			want: Options{Service: Reviews, Version: "v3", Listen: ":9081", DetailsURL: DefaultDetailsURL,
				ReviewsURL: DefaultReviewsURL, RatingsURL: "http://127.0.0.1:9083", Timeout: time.Second,
				FailRate: 0.25, FailCode: 503, Delay: 10 * time.Millisecond},
		},
		{
			name: "flags win",
			args: []string{"--service", "ratings", "--listen", "127.0.0.5:9080", "--fail-rate", "0.5", "--delay", "1s"},
			env:  map[string]string{"BOOKSTORE_SERVICE": "web", "PORT": "1", "FAIL_RATE": "0.1", "LISTEN_ADDR": "127.0.0.9:1"},
			want: Options{Service: Ratings, Version: "v1", Listen: "127.0.0.5:9080", DetailsURL: DefaultDetailsURL,
				ReviewsURL: DefaultReviewsURL, RatingsURL: DefaultRatingsURL, FailRate: 0.5, FailCode: 500, Delay: time.Second},
		},
		{
			name: "strait run explicit mode",
			args: []string{"--service", "web", "--port", "9090"},
			env:  map[string]string{"STRAIT_MODE": "explicit", "STRAIT_WORKLOAD_IP": "127.19.3.1", "STRAIT_OUTBOUND_IP": "127.19.3.2"},
			want: Options{Service: Web, Version: "v1", Listen: "127.19.3.1:9090", DetailsURL: DefaultDetailsURL,
				ReviewsURL: DefaultReviewsURL, RatingsURL: DefaultRatingsURL, Proxy: "http://127.19.3.2:9080", FailCode: 500},
		},
		{
			name: "strait run netns mode",
			args: []string{"--service", "web"},
			env:  map[string]string{"STRAIT_MODE": "netns", "STRAIT_WORKLOAD_IP": "198.18.0.5"},
			want: Options{Service: Web, Version: "v1", Listen: ":9080", DetailsURL: DefaultDetailsURL,
				ReviewsURL: DefaultReviewsURL, RatingsURL: DefaultRatingsURL, FailCode: 500},
		},
		{name: "no service", wantErr: "--service is required"},
		{name: "unknown service", args: []string{"--service", "cart"}, wantErr: `--service "cart"`},
		{name: "reviews v4", args: []string{"--service", "reviews", "--version", "v4"}, wantErr: "reviews has v1, v2 and v3"},
		{name: "bad url", args: []string{"--service", "web", "--details", "details:9080"}, wantErr: "--details"},
		{name: "bad fail rate", args: []string{"--service", "ratings", "--fail-rate", "2"}, wantErr: "--fail-rate"},
		{name: "bad fail code", args: []string{"--service", "ratings", "--fail-code", "200"}, wantErr: "--fail-code"},
		{name: "bad env", args: []string{"--service", "web"}, env: map[string]string{"DELAY": "soon"}, wantErr: "DELAY"},
		{name: "extra args", args: []string{"--service", "web", "now"}, wantErr: "unexpected arguments: now"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseArgs(tc.args, func(k string) string { return tc.env[k] })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// TestParseArgsHelp checks that -h is reported as flag.ErrHelp, which the command exits on
// quietly.
func TestParseArgsHelp(t *testing.T) {
	_, err := ParseArgs([]string{"-h"}, func(string) string { return "" })
	if !errors.Is(err, flag.ErrHelp) {
		t.Errorf("error %v, want flag.ErrHelp", err)
	}
}

func TestCallerOf(t *testing.T) {
	for xfcc, want := range map[string]string{
		"": "",
		`By=spiffe://cluster.local/ns/default/sa/web;Hash=ab;Subject="";URI=spiffe://cluster.local/ns/default/sa/default`: "spiffe://cluster.local/ns/default/sa/default",
		// Earlier elements are earlier hops; the local sidecar appends the last one.
		`By=a;URI=spiffe://x/ns/a/sa/first,By=b;Subject="CN=x,O=y;z";URI=spiffe://x/ns/b/sa/last`: "spiffe://x/ns/b/sa/last",
		`By=b;Hash=cd`: "",
	} {
		h := http.Header{}
		if xfcc != "" {
			h.Set("X-Forwarded-Client-Cert", xfcc)
		}
		if got := CallerOf(h); got != want {
			t.Errorf("CallerOf(%q) = %q, want %q", xfcc, got, want)
		}
	}
}
