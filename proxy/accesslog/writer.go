package accesslog

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

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
}

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
	sharedOnce.Do(func() { sharedFiles = NewFiles(FilesOptions{Stats: st}) })
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

// run writes queued lines, gathering what is already queued into one write.
func (s *sink) run() {
	defer close(s.done)
	batch := make([]byte, 0, maxBatch)
	for bp := range s.q {
		batch = append(batch[:0], *bp...)
		putBuf(bp)
		n := 1
	gather:
		for len(batch) < maxBatch {
			select {
			case more, ok := <-s.q:
				if !ok {
					break gather
				}
				batch = append(batch, *more...)
				putBuf(more)
				n++
			default:
				break gather
			}
		}
		s.maybeReopen()
		if _, err := s.w.Write(batch); err != nil {
			s.fs.st.failed.Inc()
		} else {
			s.fs.st.completed.Add(uint64(n))
		}
	}
	if s.closer != nil {
		_ = s.closer.Close()
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
