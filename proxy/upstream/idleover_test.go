package upstream

import (
	"net/http"
	"testing"
)

// countCC is a clientConn with a fixed number of requests in flight.
type countCC struct{ inFlight int }

func (c *countCC) Reserve() error                                  { return nil }
func (c *countCC) Err() error                                      { return nil }
func (c *countCC) InFlight() int                                   { return c.inFlight }
func (c *countCC) Close() error                                    { return nil }
func (c *countCC) RoundTrip(*http.Request) (*http.Response, error) { return nil, nil }

// TestIdleOverLocked checks idleOverLocked against a plain count of the idle connections, for
// pools of every size around the limit and every mix of idle, busy and draining connections.
func TestIdleOverLocked(t *testing.T) {
	const max = 4
	for n := 0; n <= 2*max+2; n++ {
		for mask := 0; mask < 1<<min(n, 10); mask++ {
			p := &pool{}
			idle := 0
			for i := 0; i < n; i++ {
				pc := &pconn{p: p, cc: &countCC{}}
				switch (mask >> (i % 10)) & 1 {
				case 0:
					if i%3 == 2 {
						pc.draining = true
					} else {
						idle++
					}
				default:
					pc.cc = &countCC{inFlight: 1}
				}
				p.conns = append(p.conns, pc)
			}
			if got, want := p.idleOverLocked(max), idle > max; got != want {
				t.Fatalf("n=%d mask=%b: idleOverLocked = %v, want %v (%d idle)", n, mask, got, want, idle)
			}
		}
	}
}
