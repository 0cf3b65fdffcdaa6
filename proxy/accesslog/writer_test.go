package accesslog

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gaccesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	gcorev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	gfilev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strait-mesh/strait/proxy/stats"
	"github.com/strait-mesh/strait/proxy/xdsfield"
	"github.com/strait-mesh/strait/proxy/xdspb"
	accesslogv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/accesslog/v3"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	filev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/access_loggers/file/v3"
)

func accessLogOf(t testing.TB, fl proto.Message) *accesslogv3.AccessLog {
	a, err := anypb.New(fl)
	if err != nil {
		t.Fatal(err)
	}
	return &accesslogv3.AccessLog{Name: "envoy.access_loggers.file", ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: a}}
}

func textLog(t testing.TB, path, format string) *accesslogv3.AccessLog {
	return accessLogOf(t, &filev3.FileAccessLog{Path: path, AccessLogFormat: &filev3.FileAccessLog_LogFormat{LogFormat: &corev3.SubstitutionFormatString{
		Format: &corev3.SubstitutionFormatString_TextFormatSource{TextFormatSource: &corev3.DataSource{
			Specifier: &corev3.DataSource_InlineString{InlineString: format}}}}}})
}

// readLines waits until path holds n lines and returns them.
func readLines(t *testing.T, path string, n int) []string {
	t.Helper()
	var lines []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		b, _ := os.ReadFile(path)
		lines = strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		if len(b) > 0 && len(lines) >= n {
			return lines
		}
	}
	t.Fatalf("%s: %d lines, want %d: %q", path, len(lines), n, lines)
	return nil
}

func TestLoggerWritesFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	st := stats.NewStore()
	files := NewFiles(FilesOptions{Stats: st})
	defer files.Close()
	l, err := Compile("access_log", []*accesslogv3.AccessLog{
		textLog(t, path, "%RESPONSE_CODE% %REQ(:PATH)%\n"),
		accessLogOf(t, &filev3.FileAccessLog{Path: path, AccessLogFormat: &filev3.FileAccessLog_Format{Format: "legacy %RESPONSE_CODE%\n"}}),
	}, files)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		l.Log(&Entry{ResponseCode: 200 + i, Path: "/p"})
	}
	lines := readLines(t, path, 6)
	if len(lines) != 6 || lines[0] != "200 /p" || lines[1] != "legacy 200" || lines[5] != "legacy 202" {
		t.Errorf("lines %q", lines)
	}
	// A new configuration naming the file reopens it: a rotated file is recreated.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	l2, err := Compile("access_log", []*accesslogv3.AccessLog{textLog(t, path, "new %RESPONSE_CODE%\n")}, files)
	if err != nil {
		t.Fatal(err)
	}
	l2.Log(&Entry{ResponseCode: 204})
	if lines := readLines(t, path, 1); lines[0] != "new 204" {
		t.Errorf("after reopen: %q", lines)
	}
	if files.st.completed.Value() < 7 {
		t.Errorf("write_completed %d", files.st.completed.Value())
	}
}

// blockingWriter blocks every write until released.
type blockingWriter struct {
	release chan struct{}
	mu      sync.Mutex
	n       int
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	<-w.release
	w.mu.Lock()
	w.n += strings.Count(string(p), "\n")
	w.mu.Unlock()
	return len(p), nil
}
func (w *blockingWriter) Close() error { return nil }

func TestQueueFullDrops(t *testing.T) {
	w := &blockingWriter{release: make(chan struct{})}
	st := stats.NewStore()
	files := NewFiles(FilesOptions{Stats: st, QueueLines: 4, Open: func(string) (io.WriteCloser, error) { return w, nil }})
	l, err := Compile("access_log", []*accesslogv3.AccessLog{textLog(t, "/blocked", "%RESPONSE_CODE%\n")}, files)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		// The writer is stuck: Log must return at once for every line, dropping the excess.
		for i := 0; i < 100; i++ {
			l.Log(&Entry{ResponseCode: 200})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Log blocked on a full queue")
	}
	dropped := st.Counter("filesystem.write_dropped", "").Value()
	// What the queue and the writer's stuck batch could not take was dropped and counted.
	if dropped == 0 || dropped != files.Dropped() {
		t.Errorf("dropped %d (Dropped %d), want lines dropped", dropped, files.Dropped())
	}
	close(w.release)
	files.Close()
	if w.n+int(dropped) != 100 {
		t.Errorf("written %d + dropped %d != 100", w.n, dropped)
	}
}

func TestCompileRefuses(t *testing.T) {
	files := NewFiles(FilesOptions{Open: func(p string) (io.WriteCloser, error) {
		if p == "/unwritable" {
			return nil, errors.New("permission denied")
		}
		return nopCloser{io.Discard}, nil
	}})
	defer files.Close()
	withFilter := textLog(t, "/x", "%RESPONSE_CODE%\n")
	withFilter.Filter = xdspb.MustFrom[*accesslogv3.AccessLogFilter](&gaccesslogv3.AccessLogFilter{FilterSpecifier: &gaccesslogv3.AccessLogFilter_RuntimeFilter{
		RuntimeFilter: &gaccesslogv3.RuntimeFilter{RuntimeKey: "access_log.sample"}}})
	stdoutLog := accessLogOf(t, &streamv3.StdoutAccessLog{})
	formatters := accessLogOf(t, &gfilev3.FileAccessLog{Path: "/x", AccessLogFormat: &gfilev3.FileAccessLog_LogFormat{LogFormat: &gcorev3.SubstitutionFormatString{
		Format:     &gcorev3.SubstitutionFormatString_TextFormatSource{TextFormatSource: &gcorev3.DataSource{Specifier: &gcorev3.DataSource_InlineString{InlineString: "%REQ_WITHOUT_QUERY(:PATH)%"}}},
		Formatters: []*gcorev3.TypedExtensionConfig{{Name: "envoy.formatter.req_without_query"}}}}})
	badOp := textLog(t, "/x", "%NO_SUCH_OPERATOR%")
	for name, tc := range map[string]struct {
		al    *accesslogv3.AccessLog
		field string
	}{
		"filter":       {withFilter, "access_log[0].filter.runtime_filter"},
		"other logger": {stdoutLog, "access_log[0].typed_config"},
		"formatters":   {formatters, "access_log[0].typed_config.log_format.formatters"},
		"bad operator": {badOp, "%NO_SUCH_OPERATOR%"},
		"unwritable":   {textLog(t, "/unwritable", "x\n"), "access_log[0].typed_config.path"},
		"empty path":   {textLog(t, "", "x\n"), "access_log[0].typed_config.path"},
	} {
		_, err := Compile("access_log", []*accesslogv3.AccessLog{tc.al}, files)
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: got %v, want an error naming %s", name, err, tc.field)
		}
		var ue *xdsfield.UnsupportedError
		if name == "filter" && !errors.As(err, &ue) {
			t.Errorf("filter: %T is not an *xdsfield.UnsupportedError", err)
		}
	}
	if l, err := Compile("access_log", nil, files); l != nil || err != nil {
		t.Errorf("empty list: %v %v", l, err)
	}
	var nl *Logger
	nl.Log(&Entry{}) // a nil Logger logs nothing
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// BenchmarkFormatIstioText measures formatting Istio's default TEXT line (the request path's
// cost: the writer's goroutine does the I/O).
func BenchmarkFormatIstioText(b *testing.B) {
	f, err := CompileText(IstioTextFormat, false)
	benchmarkFormat(b, f, err, 1024)
}

// BenchmarkFormatIstioJSON is BenchmarkFormatIstioText for Istio's default JSON keys.
func BenchmarkFormatIstioJSON(b *testing.B) {
	st := map[string]any{}
	for k, v := range IstioJSONFormat() {
		st[k] = v
	}
	s, _ := structpbNew(st)
	f, err := CompileJSON(s, true, false)
	benchmarkFormat(b, f, err, 2048)
}

// benchmarkFormat measures f formatting knownEntry into a buffer of capacity size; err is f's
// compile error.
func benchmarkFormat(b *testing.B, f *Format, err error, size int) {
	if err != nil {
		b.Fatal(err)
	}
	e := knownEntry()
	buf := make([]byte, 0, size)
	b.ReportAllocs()
	for b.Loop() {
		buf = f.Append(buf[:0], e)
	}
	b.SetBytes(int64(len(buf)))
}

// BenchmarkLog is Logger.Log end to end (format into a pooled buffer, queue) with the writer
// discarding, in parallel as requests finish.
func BenchmarkLog(b *testing.B) {
	files := NewFiles(FilesOptions{QueueLines: 1 << 16, Open: func(string) (io.WriteCloser, error) { return nopCloser{io.Discard}, nil }})
	defer files.Close()
	l, err := Compile("access_log", []*accesslogv3.AccessLog{textLog(b, "/discard", IstioTextFormat)}, files)
	if err != nil {
		b.Fatal(err)
	}
	e := knownEntry()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Log(e)
		}
	})
}

func structpbNew(m map[string]any) (*structpb.Struct, error) { return structpb.NewStruct(m) }

// countingWriter counts writes and lines.
type countingWriter struct {
	mu            sync.Mutex
	writes, lines int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes++
	w.lines += strings.Count(string(p), "\n")
	return len(p), nil
}
func (w *countingWriter) Close() error { return nil }

func (w *countingWriter) counts() (int, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writes, w.lines
}

// TestFlushInterval checks Envoy's buffered file writes: with a flush interval, lines wait in
// the writer's buffer (no write per line) until 64 KiB are buffered or the interval passes, and
// Close writes what is left.
func TestFlushInterval(t *testing.T) {
	w := &countingWriter{}
	files := NewFiles(FilesOptions{FlushInterval: time.Hour, Open: func(string) (io.WriteCloser, error) { return w, nil }})
	l, err := Compile("access_log", []*accesslogv3.AccessLog{textLog(t, "/buffered", "%RESPONSE_CODE%\n")}, files)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		l.Log(&Entry{ResponseCode: 200})
	}
	time.Sleep(100 * time.Millisecond) // the writer has taken the lines; an hour has not passed
	if writes, _ := w.counts(); writes != 0 {
		t.Errorf("%d writes before the buffer filled or the interval passed", writes)
	}
	// 64 KiB of lines (4 bytes each) are written without waiting for the interval.
	for i := 0; i < 20000; i++ {
		l.Log(&Entry{ResponseCode: 200})
	}
	deadline := time.Now().Add(10 * time.Second)
	for writes, _ := w.counts(); writes == 0 && time.Now().Before(deadline); writes, _ = w.counts() {
		time.Sleep(10 * time.Millisecond)
	}
	if writes, _ := w.counts(); writes == 0 {
		t.Error("a full buffer was not written")
	}
	files.Close()
	if _, lines := w.counts(); lines+int(files.Dropped()) != 20010 {
		t.Errorf("%d lines written + %d dropped, want 20010", lines, files.Dropped())
	}

	// A short interval writes buffered lines without Close.
	w2 := &countingWriter{}
	files2 := NewFiles(FilesOptions{FlushInterval: 20 * time.Millisecond, Open: func(string) (io.WriteCloser, error) { return w2, nil }})
	defer files2.Close()
	l2, err := Compile("access_log", []*accesslogv3.AccessLog{textLog(t, "/soon", "%RESPONSE_CODE%\n")}, files2)
	if err != nil {
		t.Fatal(err)
	}
	l2.Log(&Entry{ResponseCode: 200})
	deadline = time.Now().Add(10 * time.Second)
	for _, lines := w2.counts(); lines == 0 && time.Now().Before(deadline); _, lines = w2.counts() {
		time.Sleep(10 * time.Millisecond)
	}
	if _, lines := w2.counts(); lines != 1 {
		t.Errorf("after the interval: %d lines written, want 1", lines)
	}
}
