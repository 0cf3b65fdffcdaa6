package xdsclient

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/internal/grpclite"
)

// withDetails is an Unavailable status carrying details as grpc-status-details-bin does.
func withDetails(t *testing.T, details ...proto.Message) *grpclite.Status {
	t.Helper()
	st := &rpcstatus.Status{Code: int32(grpclite.Unavailable), Message: "too many new streams"}
	for _, d := range details {
		a, err := anypb.New(d)
		if err != nil {
			t.Fatal(err)
		}
		st.Details = append(st.Details, a)
	}
	b, err := proto.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	return &grpclite.Status{Code: grpclite.Unavailable, Message: st.Message, Details: b}
}

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
	st := withDetails(t, wrapperspb.String("other detail"), &errdetails.RetryInfo{RetryDelay: durationpb.New(3 * time.Second)})
	wrapped := fmt.Errorf("receiving delta ads: %w", st)
	for _, c := range []struct {
		err   error
		limit time.Duration
		want  time.Duration
	}{
		{wrapped, time.Minute, 3 * time.Second},
		{st, time.Second, time.Second},
		{withDetails(t, &errdetails.RetryInfo{RetryDelay: durationpb.New(-time.Second)}), time.Minute, 0},
		{withDetails(t, wrapperspb.String("no hint")), time.Minute, 0},
		{&grpclite.Status{Code: grpclite.Unavailable, Details: []byte{0xff, 0xff}}, time.Minute, 0},
		{&grpclite.Status{Code: grpclite.Unavailable, Message: "connection refused"}, time.Minute, 0},
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
