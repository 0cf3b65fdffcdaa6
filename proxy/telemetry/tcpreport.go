package telemetry

import (
	"sync"
	"sync/atomic"
	"time"
)

// TCPConnection is one open connection in the istio_tcp_* metrics (Recorder.OpenTCP): its series
// and the bytes already reported. While it is open, the recorder's reporter adds what its byte
// counters gained at least every ReportEvery; Close adds the rest. Its methods are safe on nil
// (a connection that is not recorded).
type TCPConnection struct {
	series     *TCPSeries
	rep        *tcpReporter
	recv, sent *atomic.Uint64 // the proxy's live counters; nil: reported at close only
	every      time.Duration
	// Guarded by rep.mu while the connection is registered; Close's after it is removed.
	next                       time.Time
	reportedRecv, reportedSent uint64
}

// OpenTCP counts a connection whose upstream is established
// (istio_tcp_connections_opened_total) and returns its handle, which reports its bytes every
// c.ReportEvery from c.Received and c.Sent while it is open; the caller calls Close when the
// connection ends. nil when the connection is not recorded (beyond the cap, or every TCP metric
// dropped).
func (r *Recorder) OpenTCP(c *TCPConn) *TCPConnection {
	s := r.TCP(c)
	if s == nil {
		return nil
	}
	s.Opened()
	tc := &TCPConnection{series: s, rep: &r.open, recv: c.Received, sent: c.Sent, every: c.ReportEvery}
	if tc.every <= 0 {
		tc.every = DefaultTCPReportingDuration
	}
	if tc.recv != nil || tc.sent != nil {
		r.open.add(tc, time.Now())
	}
	return tc
}

// Close reports a finished connection: the bytes of its totals (received from and sent to the
// downstream) not reported yet, and istio_tcp_connections_closed_total.
func (tc *TCPConnection) Close(received, sent uint64) {
	if tc == nil {
		return
	}
	if tc.recv != nil || tc.sent != nil {
		tc.rep.remove(tc)
	}
	tc.series.recv.Add(received - min(received, tc.reportedRecv))
	tc.series.sent.Add(sent - min(sent, tc.reportedSent))
	tc.reportedRecv, tc.reportedSent = max(received, tc.reportedRecv), max(sent, tc.reportedSent)
	tc.series.Closed()
}

// report adds what the live counters gained since the last report. Called with rep.mu held.
func (tc *TCPConnection) report() {
	if tc.recv != nil {
		if v := tc.recv.Load(); v > tc.reportedRecv {
			tc.series.recv.Add(v - tc.reportedRecv)
			tc.reportedRecv = v
		}
	}
	if tc.sent != nil {
		if v := tc.sent.Load(); v > tc.reportedSent {
			tc.series.sent.Add(v - tc.reportedSent)
			tc.reportedSent = v
		}
	}
}

// tcpReporter reports the bytes of every open connection of a recorder with one timer, set to
// the earliest time a connection is due and running only while connections are open. Each
// sweep reports the connections that are due (reading their atomic counters) and schedules
// them one interval later. The zero value is ready to use.
type tcpReporter struct {
	mu    sync.Mutex
	open  map[*TCPConnection]struct{}
	timer *time.Timer
	at    time.Time // when the timer fires; zero: stopped
}

func (t *tcpReporter) add(tc *TCPConnection, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.open == nil {
		t.open = make(map[*TCPConnection]struct{})
	}
	tc.next = now.Add(tc.every)
	t.open[tc] = struct{}{}
	t.schedule(tc.next, now)
}

func (t *tcpReporter) remove(tc *TCPConnection) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.open, tc)
	if len(t.open) == 0 && t.timer != nil {
		t.timer.Stop()
		t.at = time.Time{}
	}
}

// schedule makes the timer fire at at, unless it fires earlier. Called with mu held.
func (t *tcpReporter) schedule(at, now time.Time) {
	if !t.at.IsZero() && !at.Before(t.at) {
		return
	}
	t.at = at
	if t.timer == nil {
		t.timer = time.AfterFunc(at.Sub(now), t.sweep)
		return
	}
	t.timer.Reset(at.Sub(now))
}

// sweep reports the connections that are due and schedules the next sweep. A sweep that runs
// early (a timer reset while it fired) reports nothing that is not due.
func (t *tcpReporter) sweep() {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	t.at = time.Time{}
	var next time.Time
	for tc := range t.open {
		if !now.Before(tc.next) {
			tc.report()
			tc.next = now.Add(tc.every)
		}
		if next.IsZero() || tc.next.Before(next) {
			next = tc.next
		}
	}
	if !next.IsZero() {
		t.schedule(next, now)
	}
}

// OpenConnections returns how many open connections are reported periodically.
func (r *Recorder) OpenConnections() int {
	r.open.mu.Lock()
	defer r.open.mu.Unlock()
	return len(r.open.open)
}
