package h1

import (
	"context"
	"io"
	"testing"

	"github.com/strait-mesh/strait/proxy/httpmsg"
)

// TestConnWroteHeadHook: RoundTripTrace's hook runs once, for its own exchange only: the next
// exchange on the connection, untraced, does not run it, nor does one after an exchange whose
// hook panicked.
func TestConnWroteHeadHook(t *testing.T) {
	c, _ := echoConn(t)
	calls := 0
	send := func(body string, hook func()) {
		t.Helper()
		var resp httpmsg.Response
		if err := c.RoundTripTrace(context.Background(), postReq(body), &resp, hook); err != nil {
			t.Fatalf("exchange %q: %v", body, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(b) != body {
			t.Fatalf("exchange %q: body %q, %v", body, b, err)
		}
	}
	send("traced", func() { calls++ })
	if calls != 1 {
		t.Fatalf("hook ran %d times for its exchange, want 1", calls)
	}
	send("untraced", nil)
	if calls != 1 {
		t.Fatalf("hook ran for the next, untraced exchange (%d calls)", calls)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("the hook's panic did not reach the caller")
			}
		}()
		c.RoundTripTrace(context.Background(), postReq("x"), new(httpmsg.Response), func() { panic("hook") })
	}()
	if c.cc.wroteHead != nil {
		t.Fatal("a panicking hook stays set for the connection's next exchanges")
	}
}
