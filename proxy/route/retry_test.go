package route

import (
	"testing"

	"github.com/strait-mesh/strait/internal/vocab"
	"github.com/strait-mesh/strait/proxy/httpmsg"
)

// TestRetryOnFailureEnvoy checks RetryOnFailure against Envoy's wouldRetryFromReset for each
// condition that retries failures: reset-before-request covers connect failures and resets before
// the request went upstream only; reset, 5xx and gateway-error every reset; a per-try timeout
// only 5xx and gateway-error.
func TestRetryOnFailureEnvoy(t *testing.T) {
	kinds := []FailureKind{FailConnect, FailResetBeforeRequest, FailReset, FailRefusedStream, FailPerTryTimeout, FailOverflow, FailNoHealthy}
	for _, tc := range []struct {
		retryOn string
		want    []bool // per kind, in the order above
	}{
		{"reset-before-request", []bool{true, true, false, false, false, false, false}},
		{"reset", []bool{true, true, true, true, false, false, false}},
		{"5xx", []bool{true, true, true, true, true, false, false}},
		{"gateway-error", []bool{true, true, true, true, true, false, false}},
		{"connect-failure", []bool{true, false, false, false, false, false, false}},
		{"refused-stream", []bool{false, false, false, true, false, false, false}},
		{"retriable-4xx,unavailable,http3-post-connect-failure", []bool{false, false, false, false, false, false, false}},
	} {
		on, err := vocab.ParseRetryOn(tc.retryOn)
		if err != nil {
			t.Fatal(err)
		}
		p := &RetryPolicy{On: on}
		for i, k := range kinds {
			if got := p.RetryOnFailure(k); got != tc.want[i] {
				t.Errorf("%s: RetryOnFailure(kind %d) = %v, want %v", tc.retryOn, k, got, tc.want[i])
			}
		}
	}
	if (&RetryPolicy{On: vocab.RetryResetBeforeRequest}).TracksRequestSent() != true ||
		(&RetryPolicy{On: vocab.RetryResetBeforeRequest | vocab.RetryReset}).TracksRequestSent() != false ||
		(&RetryPolicy{On: vocab.RetryConnectFailure}).TracksRequestSent() != false {
		t.Error("TracksRequestSent")
	}
}

// TestRetryOnRateLimited checks Envoy's rule that a response an upstream Envoy rate limited
// (x-envoy-ratelimited) is retried by envoy-ratelimited and by nothing else.
func TestRetryOnRateLimited(t *testing.T) {
	var limited httpmsg.Header
	limited.Add("x-envoy-ratelimited", "true")
	for retryOn, want := range map[string]bool{"envoy-ratelimited": true, "5xx": false, "gateway-error,retriable-status-codes": false, "envoy-ratelimited,5xx": true} {
		on, _ := vocab.ParseRetryOn(retryOn)
		p := &RetryPolicy{On: on, StatusCodes: []int{503}}
		if got := p.RetryOnResponse(503, &limited); got != want {
			t.Errorf("%s: RetryOnResponse(rate limited 503) = %v, want %v", retryOn, got, want)
		}
	}
}
