package xdsclient

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// TestRetryWaitFullJitter: without a hint the wait is anywhere in [0, delay) — the first retry
// too, so proxies that lost straitd together do not come back together; with a hint it is at
// least the hint and at most half again.
func TestRetryWaitFullJitter(t *testing.T) {
	const delay = 200 * time.Millisecond
	lo, hi := delay, time.Duration(0)
	for range 2000 {
		w := retryWait(delay, 0, jitter)
		if w < 0 || w >= delay {
			t.Fatalf("wait %s outside [0, %s)", w, delay)
		}
		lo, hi = min(lo, w), max(hi, w)
	}
	if lo > delay/10 || hi < delay*9/10 {
		t.Errorf("2000 waits spanned only [%s, %s] of [0, %s): not full jitter", lo, hi, delay)
	}
	for _, hint := range []time.Duration{time.Second, 50 * time.Millisecond} {
		for range 200 {
			if w := retryWait(delay, hint, jitter); w < hint || w > max(delay, hint+hint/2) {
				t.Fatalf("hint %s: wait %s, want in [%s, %s]", hint, w, hint, max(delay, hint+hint/2))
			}
		}
	}
	if w := retryWait(0, 0, jitter); w != 0 {
		t.Errorf("retryWait(0, 0) = %s", w)
	}
}

// TestRetryHint reads a RetryInfo from a (wrapped) stream error and caps it.
func TestRetryHint(t *testing.T) {
	st, err := grpcstatus.New(codes.Unavailable, "too many new streams").
		WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(3 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	wrapped := fmt.Errorf("receiving delta ads: %w", st.Err())
	for _, c := range []struct {
		err   error
		limit time.Duration
		want  time.Duration
	}{
		{wrapped, time.Minute, 3 * time.Second},
		{st.Err(), time.Second, time.Second},
		{grpcstatus.Error(codes.Unavailable, "connection refused"), time.Minute, 0},
		{fmt.Errorf("plain"), time.Minute, 0},
		{nil, time.Minute, 0},
	} {
		if got := retryHint(c.err, c.limit); got != c.want {
			t.Errorf("retryHint(%v, %s) = %s, want %s", c.err, c.limit, got, c.want)
		}
	}
}

// TestBackoffSchedule: the delay doubles up to Max while streams fail without a response, and
// starts again from Base after one got a response.
func TestBackoffSchedule(t *testing.T) {
	b := Backoff{Base: 100 * time.Millisecond, Max: 400 * time.Millisecond}
	for i, bound := range []time.Duration{100, 200, 400, 400} {
		if w := b.Next(nil, false); w >= bound*time.Millisecond {
			t.Errorf("attempt %d: wait %s, want under %dms", i, w, bound)
		}
	}
	if b.Next(nil, true); b.delay != 200*time.Millisecond {
		t.Errorf("after a stream that got a response the next delay is %s, want 200ms (Base, doubled once)", b.delay)
	}
}
