package accesslog

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strait-mesh/strait/proxy/stats"
)

// DefaultQueueLines is the default bound of each file's queue, in lines.
const DefaultQueueLines = 4096

// maxBatch bounds how many queued bytes the writer gathers into one write.
const maxBatch = 64 << 10

// FilesOptions configure a Files.
type FilesOptions struct {
	// Stats receives filesystem.write_completed, write_failed, write_dropped and reopen_failed
	// (nil: a private store).
	Stats *stats.Store
	// QueueLines bounds each file's queue of formatted lines (0: DefaultQueueLines; with a
	// FlushInterval, on top of the 64 KiB the writer buffers): a line that finds the queue full
	// while its writer is behind is dropped and counted in filesystem.write_dropped.
	QueueLines int
	// Open opens a log file for appending (nil: os.OpenFile with O_APPEND|O_CREATE, mode
	// 0644). /dev/stdout and /dev/stderr are never opened: the process's own streams are used.
	Open func(path string) (io.WriteCloser, error)
	// FlushInterval is how long written lines may wait in the writer's buffer for more: a file
	// is written when its buffer holds maxBatch (64 KiB, Envoy's file_flush_min_size_kb) or
	// FlushInterval after its oldest unwritten line (Envoy's file_flush_interval_msec, 1 s in
	// the proxy: DefaultFlushInterval), and at Close. 0 writes whatever is queued at once.
	FlushInterval time.Duration
}

// DefaultFlushInterval is Envoy's default file_flush_interval_msec, which the proxy's shared
// files use: at 1,000 requests per second one write a second instead of one per request.
const DefaultFlushInterval = time.Second

// Files are the access log files of a process, by path: each is opened once, when a
// configuration first names it, and written by one goroutine that drains its bounded queue.
// When a configuration names a path again (a new listener or config push), the file is reopened
// by its writer before its next write, so that a rotated log file is recreated as in Envoy's
// reopen. Files is safe for concurrent use.
type Files struct {
	opts  FilesOptions
	st    fileStats
	mu    sync.Mutex
	sinks map[string]*sink
	done  bool
}

type fileStats struct {
	completed, failed, dropped, reopenFailed *stats.Counter
}

// NewFiles returns an empty set of files.
func NewFiles(opts FilesOptions) *Files {
	if opts.Stats == nil {
		opts.Stats = stats.NewStore()
	}
	if opts.QueueLines <= 0 {
		opts.QueueLines = DefaultQueueLines
	}
	if opts.Open == nil {
		opts.Open = func(path string) (io.WriteCloser, error) {
			return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		}
	}
	s := opts.Stats
	return &Files{opts: opts, sinks: map[string]*sink{}, st: fileStats{
		completed:    s.Counter("filesystem.write_completed", "envoy_filesystem_write_completed"),
		failed:       s.Counter("filesystem.write_failed", "envoy_filesystem_write_failed"),
		dropped:      s.Counter("filesystem.write_dropped", "envoy_filesystem_write_dropped"),
		reopenFailed: s.Counter("filesystem.reopen_failed", "envoy_filesystem_reopen_failed"),
	}}
}

var (
	sharedOnce  sync.Once
	sharedFiles *Files
)

// Shared returns the process's Files, created on first use with st for its statistics. It is
// what compiled access logs use when their owner passes no Files: an access log file (and
// /dev/stdout above all) is a process-wide resource, opened once however many listeners name it.
func Shared(st *stats.Store) *Files {
	sharedOnce.Do(func() { sharedFiles = NewFiles(FilesOptions{Stats: st, FlushInterval: DefaultFlushInterval}) })
	return sharedFiles
}

// Dropped returns how many lines were dropped because a queue was full.
func (fs *Files) Dropped() uint64 { return fs.st.dropped.Value() }

// sink is one file: its pending lines and writer goroutine. Lines are appended to a buffer
// under a mutex (no goroutine is woken per line, as in Envoy's file writer); the writer takes
// the whole buffer when it is due and writes it outside the lock.
type sink struct {
	fs   *Files
	path string

	mu      sync.Mutex
	pending []byte // lines not yet taken by the writer
	lines   int    // lines in pending (FilesOptions.QueueLines)
	closed  bool

	// wake (capacity 1) tells the writer that pending went from empty to not, reached
	// maxBatch, or (FlushInterval 0) holds a line; or that the file is closing.
	wake   chan struct{}
	reopen atomic.Bool
	w      io.Writer
	closer io.Closer // nil for the process's own streams; written by the writer goroutine only
	file   bool      // a file of its own (reopenable), not the process's stdout or stderr
	done   chan struct{}
}

// open returns the sink of path, opening the file on first use; a known path is marked for
// reopening. An error (the file cannot be opened) is returned so that the configuration naming
// it is refused, as Envoy refuses it.
func (fs *Files) open(path string) (*sink, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.done {
		return nil, fmt.Errorf("access log %s: files closed", path)
	}
	if s := fs.sinks[path]; s != nil {
		if s.file {
			s.reopen.Store(true)
		}
		return s, nil
	}
	s := &sink{fs: fs, path: path, wake: make(chan struct{}, 1), done: make(chan struct{})}
	switch path {
	case "/dev/stdout":
		s.w = os.Stdout
	case "/dev/stderr":
		s.w = os.Stderr
	default:
		f, err := fs.opts.Open(path)
		if err != nil {
			return nil, fmt.Errorf("opening access log file: %w", err)
		}
		s.w, s.closer, s.file = f, f, true
	}
	fs.sinks[path] = s
	go s.run()
	return s, nil
}

// Close stops every writer after its pending lines are written and closes the files. Lines
// logged after Close are dropped.
func (fs *Files) Close() error {
	fs.mu.Lock()
	if fs.done {
		fs.mu.Unlock()
		return nil
	}
	fs.done = true
	sinks := fs.sinks
	fs.mu.Unlock()
	for _, s := range sinks {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.signal()
		<-s.done
	}
	return nil
}

// scratchLines holds the buffers Logger.Log formats a line into before appending it to a sink.
var scratchLines = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// maxScratch bounds the line buffers kept for reuse.
const maxScratch = 64 << 10

// maxRetained bounds the capacity of a pending buffer kept after a write: a burst of large
// lines does not pin its memory.
const maxRetained = 4 * maxBatch

// add appends a formatted line without waiting. When the queue is full (QueueLines lines
// pending and, with a flush interval, a full write too: the writer is behind) the line is
// dropped and counted, as it is after Close.
func (s *sink) add(line []byte) {
	s.mu.Lock()
	if s.closed || s.lines >= s.fs.opts.QueueLines && (s.fs.opts.FlushInterval <= 0 || len(s.pending) >= maxBatch) {
		s.mu.Unlock()
		s.fs.st.dropped.Inc()
		return
	}
	first := len(s.pending) == 0
	s.pending = append(s.pending, line...)
	s.lines++
	full := len(s.pending) >= maxBatch
	s.mu.Unlock()
	if first || full || s.fs.opts.FlushInterval <= 0 {
		s.signal()
	}
}

// signal wakes the writer unless a wake-up is already pending.
func (s *sink) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// take returns the pending lines (handing spare, emptied, to the next lines), their count,
// whether maxBatch bytes are pending or the file is closing (due: write now), and whether
// it is closing.
func (s *sink) take(spare []byte, all bool) (batch []byte, n int, due, closing bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	due = s.closed || len(s.pending) >= maxBatch || s.fs.opts.FlushInterval <= 0
	if !due && !all {
		return spare, 0, false, false
	}
	batch, n = s.pending, s.lines
	if cap(spare) > maxRetained {
		spare = nil
	}
	s.pending, s.lines = spare[:0], 0
	return batch, n, due, s.closed
}

// pendingLines reports whether lines are waiting.
func (s *sink) pendingLines() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lines > 0
}

// run writes the pending lines: at once when maxBatch bytes are pending (Envoy's
// file_flush_min_size_kb), when the file closes, or with a flush interval once the oldest
// pending line has waited it (file_flush_interval_msec); without one whenever lines are
// pending.
func (s *sink) run() {
	defer close(s.done)
	var spare []byte
	write := func(batch []byte, n int) []byte {
		if n == 0 {
			return batch
		}
		s.maybeReopen()
		if _, err := s.w.Write(batch); err != nil {
			s.fs.st.failed.Inc()
		} else {
			s.fs.st.completed.Add(uint64(n))
		}
		return batch
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		<-s.wake
		batch, n, due, closing := s.take(spare, false)
		if !due {
			if !s.pendingLines() {
				continue // a stale wake-up: what it announced is written
			}
			// The oldest pending line arrived: wait the interval, unless maxBatch bytes
			// pend or the file closes first.
			timer.Reset(s.fs.opts.FlushInterval)
			select {
			case <-timer.C:
			case <-s.wake:
				timer.Stop() // go ≥ 1.23: no stale tick is delivered after Stop
			}
			batch, n, _, closing = s.take(spare, true)
		}
		spare = write(batch, n)
		if closing {
			if s.closer != nil {
				_ = s.closer.Close()
			}
			return
		}
	}
}

// maybeReopen reopens the file when a new configuration named it (only the writer goroutine
// touches s.w). On failure the old file stays in use.
func (s *sink) maybeReopen() {
	if !s.reopen.Swap(false) {
		return
	}
	f, err := s.fs.opts.Open(s.path)
	if err != nil {
		s.fs.st.reopenFailed.Inc()
		return
	}
	_ = s.closer.Close()
	s.w, s.closer = f, f
}
