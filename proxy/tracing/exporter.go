package tracing

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"
)

// sendFunc delivers one batch of spans to the collector. It is called from the exporter's
// goroutine only.
type sendFunc func(ctx context.Context, spans []*Span) error

// exporter batches finished spans off the request path: a bounded queue (a full one drops the
// span and counts spans_dropped), flushed when a batch is full (min_flush_spans) or the flush
// interval passes. Its goroutine starts with the first queued span and ends once a whole
// interval passed with nothing queued, so an exporter whose configuration was replaced leaves
// nothing running behind it.
type exporter struct {
	send     sendFunc
	queue    chan *Span
	batch    int
	interval time.Duration
	timeout  time.Duration
	running  atomic.Bool
	st       *exporterStats
	log      *slog.Logger
}

func newExporter(send sendFunc, st *exporterStats, d Deps) *exporter {
	e := &exporter{send: send, batch: d.Batch, interval: d.FlushInterval, st: st, log: d.Logger, timeout: maxExportTime}
	if e.batch <= 0 {
		e.batch = DefaultBatchSpans
	}
	if e.interval <= 0 {
		e.interval = DefaultFlushInterval
	}
	q := d.QueueSpans
	if q <= 0 {
		q = DefaultQueueSpans
	}
	e.queue = make(chan *Span, q)
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	return e
}

// maxExportTime bounds one export; each target's own timeout (5 s by default) is shorter.
const maxExportTime = time.Minute

// enqueue queues a finished span without blocking.
func (e *exporter) enqueue(sp *Span) {
	select {
	case e.queue <- sp:
	default:
		e.st.spansDropped.Inc()
		return
	}
	if e.running.CompareAndSwap(false, true) {
		go e.run()
	}
}

// run is the exporter's goroutine.
func (e *exporter) run() {
	batch := make([]*Span, 0, e.batch)
	timer := time.NewTimer(e.interval)
	defer timer.Stop()
	for {
		select {
		case sp := <-e.queue:
			batch = append(batch, sp)
			if len(batch) >= e.batch {
				e.flush(batch)
				batch = batch[:0]
			}
		case <-timer.C:
			e.st.timerFlushed.Inc()
			idle := len(batch) == 0
			if !idle {
				e.flush(batch)
				batch = batch[:0]
			}
			if idle && len(e.queue) == 0 {
				e.running.Store(false)
				// A span queued after the check above found the flag still set: take the work
				// back unless its enqueue already started a new goroutine.
				if len(e.queue) == 0 || !e.running.CompareAndSwap(false, true) {
					return
				}
			}
			timer.Reset(e.interval)
		}
	}
}

// flush sends one batch, bounded by the exporter's timeout.
func (e *exporter) flush(batch []*Span) {
	ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
	defer cancel()
	e.st.spansSent.Add(uint64(len(batch)))
	if err := e.send(ctx, batch); err != nil {
		e.log.Debug("tracing: exporting spans failed", "spans", len(batch), "error", err)
	}
	clear(batch)
}
