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
	// QueueLines bounds each file's queue of formatted lines (0: DefaultQueueLines). A line that
	// finds the queue full is dropped and counted in filesystem.write_dropped.
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

// sink is one file: its queue and writer goroutine.
type sink struct {
	fs     *Files
	path   string
	q      chan *[]byte
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
	s := &sink{fs: fs, path: path, q: make(chan *[]byte, fs.opts.QueueLines), done: make(chan struct{})}
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

// Close stops every writer after its queue is written and closes the files. Lines logged after
// Close are dropped.
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
		close(s.q)
		<-s.done
	}
	return nil
}

// bufPool holds line buffers: taken by Logger.Log, returned by the writer.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// enqueue hands a formatted line to the writer without waiting: a full queue drops it.
func (s *sink) enqueue(bp *[]byte) {
	defer func() {
		if recover() != nil { // the queue was closed by Files.Close
			s.fs.st.dropped.Inc()
		}
	}()
	select {
	case s.q <- bp:
	default:
		s.fs.st.dropped.Inc()
		bufPool.Put(bp)
	}
}

// run writes queued lines: what is already queued in one write, or, with a flush interval,
// once maxBatch bytes are buffered or the oldest buffered line has waited the interval.
func (s *sink) run() {
	defer close(s.done)
	batch := make([]byte, 0, maxBatch)
	n := 0
	flush := func() {
		if len(batch) == 0 {
			return
		}
		s.maybeReopen()
		if _, err := s.w.Write(batch); err != nil {
			s.fs.st.failed.Inc()
		} else {
			s.fs.st.completed.Add(uint64(n))
		}
		batch, n = batch[:0], 0
	}
	interval := s.fs.opts.FlushInterval
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	armed := false
	for {
		var tick <-chan time.Time
		if armed {
			tick = timer.C
		}
		select {
		case bp, ok := <-s.q:
			if !ok {
				flush()
				if s.closer != nil {
					_ = s.closer.Close()
				}
				return
			}
			batch = append(batch, *bp...)
			putBuf(bp)
			n++
			switch {
			case len(batch) >= maxBatch:
				flush()
			case interval <= 0:
				if len(s.q) == 0 { // nothing more already queued: write now
					flush()
				}
				continue
			case !armed:
				timer.Reset(interval)
				armed = true
			}
			if len(batch) == 0 && armed {
				timer.Stop() // go ≥ 1.23: no stale tick is delivered after Stop
				armed = false
			}
		case <-tick:
			armed = false
			flush()
		}
	}
}

// putBuf returns a line buffer to the pool unless it grew unusually large.
func putBuf(bp *[]byte) {
	if cap(*bp) <= 64<<10 {
		*bp = (*bp)[:0]
		bufPool.Put(bp)
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
