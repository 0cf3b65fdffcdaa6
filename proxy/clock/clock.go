// Package clock reads the time for the request path at the cost of the monotonic clock alone.
//
// time.Now reads two clocks, the wall clock (CLOCK_REALTIME) and the monotonic one; on this
// project's machines the wall clock's read costs about three times the monotonic one's (75–90 ns
// against 22 ns, `go test -bench . ./proxy/clock`), and a request reads the time several
// times. Now reads only the monotonic clock and adds what passed to a base time.Now reading
// taken at most Resync ago, so that:
//   - its monotonic reading is exact: durations and comparisons between times from Now, or
//     between them and time.Now's (Sub, Before, After, Since, Until, deadlines), are exactly
//     as with time.Now;
//   - its wall reading is the base's plus the monotonic time since: it differs from the wall
//     clock only by what the wall clock itself was slewed or stepped since the base, which
//     is at most Resync old (a step shows within Resync; NTP's slew of at most 500 ppm moves
//     it by at most 50 µs).
package clock

import (
	"sync/atomic"
	"time"
	_ "unsafe" // go:linkname
)

// Resync is the longest a base reading serves before the wall clock is read again.
const Resync = 100 * time.Millisecond

var base atomic.Pointer[time.Time]

func init() {
	t := time.Now()
	base.Store(&t)
}

// nanotime is the runtime's monotonic clock, the one time.Now's monotonic reading and
// time.Since take (the runtime keeps it reachable by linkname for packages outside the
// standard library: go.dev/issue/67401). Read directly it spares time.Since's work around the
// reading (a Time's fields, the synctest bubble check): Mono is read several times per
// request.
//
//go:linkname nanotime runtime.nanotime
func nanotime() int64

// monoBase anchors Mono's readings.
var monoBase = nanotime()

// Mono returns the monotonic time since a fixed point in the process's life, for durations and
// deadlines kept as numbers (atomics, timer arithmetic): one monotonic clock reading.
func Mono() time.Duration { return time.Duration(nanotime() - monoBase) }

// Now returns the current time, as time.Now does but for the wall reading's bound above.
func Now() time.Time {
	b := base.Load()
	d := time.Since(*b)
	if d >= Resync || d < 0 {
		t := sample()
		base.Store(&t)
		return t
	}
	return b.Add(d)
}

// sample returns a time.Now reading whose wall and monotonic readings agree: time.Now reads
// the two clocks one after the other, and a reading interrupted between them (a preempted
// vCPU) has a wall reading late against its monotonic one; a base that is so would carry the
// error to every time made from it. Of two readings in a row, the second is kept when the
// wall clock moved between them as the monotonic clock did (within maxSkew); a few tries.
func sample() time.Time {
	t := time.Now()
	for range 3 {
		u := time.Now()
		if skew := u.Round(0).Sub(t.Round(0)) - u.Sub(t); -maxSkew <= skew && skew <= maxSkew {
			return u
		}
		t = u
	}
	return t
}

// maxSkew is how far sample lets the two clocks' movements differ.
const maxSkew = 20 * time.Microsecond
