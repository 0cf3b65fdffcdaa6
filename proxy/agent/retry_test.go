package agent

import (
	"testing"
	"time"
)

// TestCapRetry: a retry while the certificate still serves comes at the latest halfway to the
// point where it no longer can, never sooner than the floor; without such time the backoff stands.
func TestCapRetry(t *testing.T) {
	s := time.Second
	for _, tc := range []struct {
		delay, left, want time.Duration
	}{
		{8 * s, 60 * s, 8 * s},               // far from the expiry: the backoff
		{32 * s, 20 * s, 10 * s},             // close: halfway to it
		{60 * s, 1500 * time.Millisecond, s}, // very close: the floor
		{500 * time.Millisecond, 3 * s, 500 * time.Millisecond},
		{60 * s, 0, 60 * s}, // expired (or within the margin): the backoff
		{60 * s, -10 * s, 60 * s},
	} {
		if got := capRetry(tc.delay, tc.left, s); got != tc.want {
			t.Errorf("capRetry(%v, %v) = %v, want %v", tc.delay, tc.left, got, tc.want)
		}
	}
}
