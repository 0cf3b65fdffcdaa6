package l7

import (
	"strconv"
	"testing"
)

// TestReviewTimeoutMsLeadingZeros: parseMs replaced strconv.ParseUint(v, 10, 32) "without the
// string copy", but rejects any value longer than ten bytes, so a number with leading zeros
// that ParseUint (and Envoy's absl::SimpleAtoi) accepts is now ignored: an internal request's
// x-envoy-upstream-rq-timeout-ms of "00000000005000" no longer sets a 5 s timeout.
func TestReviewTimeoutMsLeadingZeros(t *testing.T) {
	for _, v := range []string{"00000000005000", "000000000000", "00000000004294967295"} {
		want, err := parseUint32(v)
		if err != nil {
			t.Fatalf("%q: %v", v, err)
		}
		if got, ok := parseMs([]byte(v)); !ok || got != want {
			t.Errorf("parseMs(%q) = %d, %v; strconv.ParseUint(v, 10, 32), the code it replaced, gives %d", v, got, ok, want)
		}
	}
	rig := newRawRig(t, true, loopbackInternal)
	r := rig.send("/x", "X-Envoy-Upstream-Rq-Timeout-Ms: 00000000005000\r\n")
	if got := r.up.Get("X-Envoy-Expected-Rq-Timeout-Ms"); r.resp.StatusCode != 200 || got != "5000" {
		t.Errorf("status %d, x-envoy-expected-rq-timeout-ms %q, want 5000", r.resp.StatusCode, got)
	}
}

func parseUint32(v string) (uint64, error) { return strconv.ParseUint(v, 10, 32) }
