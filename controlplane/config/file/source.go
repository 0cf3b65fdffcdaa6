// Package file is Strait's directory config source (straitd --config-dir): it reads every
// *.yaml, *.yml and *.json file under a directory tree, decodes and validates the Istio objects in
// them, and watches the tree with fsnotify so that adding, changing and deleting files takes
// effect without a restart.
//
// A bad document never takes good config down: when a document stops decoding or validating, the
// last good version of that object (by kind, namespace and name) keeps serving and the error is
// reported by Errors, in the log and in the metrics. When a file is deleted, its objects go away.
// When the same object is defined in two files, the first file in path order wins and the others
// are errors.
package file

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/config/validationmetrics"
)

// rootPollInterval is how often Run checks whether a removed config directory is back.
const rootPollInterval = time.Second

// Options configure a Source. The zero value is usable.
type Options struct {
	// Logger receives reload results and newly found errors; nil means slog.Default().
	Logger *slog.Logger
	// Debounce is how long the source waits for more changes after a file event before
	// reloading (default 100ms).
	Debounce time.Duration
	// MaxDelay bounds how long a stream of events can delay a reload (default 1s).
	MaxDelay time.Duration
	// Resync, when positive, rescans the tree at this interval in addition to watching it, for
	// file systems where change notifications are unreliable.
	Resync time.Duration
	// Validation, when set, counts the documents of each new or changed file as they are
	// validated (galley_validation_passed / galley_validation_failed).
	Validation *validationmetrics.Counters
}

// Source serves the objects under a directory. It is safe for concurrent use; List, Errors and
// Warnings may be called while Run is running.
type Source struct {
	dir  string
	opts Options
	log  *slog.Logger

	// reloadMu serializes reloads; mu guards the published state below.
	reloadMu sync.Mutex
	mu       sync.RWMutex
	objs     []*config.Object
	errs     []error
	warnings []error
	served   map[config.Key]served
	files    map[string]*parsed // by path, from the last reload
	stats    stats
}

// served is one accepted object and the file that currently defines it.
type served struct {
	obj  *config.Object
	path string
}

// parsed is the decoded and validated content of one file.
type parsed struct {
	sum    [sha256.Size]byte
	good   []*config.Object
	errs   []error
	bad    []config.Key // keys of objects whose documents have errors
	broken bool         // some document has errors and an unknown key
}

var _ config.Source = (*Source)(nil)

// New returns a source for dir and loads it once, so that List and Errors answer before Run is
// called. It fails only when dir is not a readable directory; problems with the files in it are
// reported by Errors.
func New(dir string, opts Options) (*Source, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("opening config directory: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("opening config directory: %s is not a directory", dir)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Debounce <= 0 {
		opts.Debounce = 100 * time.Millisecond
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = time.Second
	}
	s := &Source{
		dir:    dir,
		opts:   opts,
		log:    opts.Logger.With("source", "file", "dir", dir),
		served: map[config.Key]served{},
		files:  map[string]*parsed{},
	}
	s.Reload()
	return s, nil
}

// List returns the accepted objects sorted by kind, namespace and name. The slice and the objects
// are shared: do not modify them.
func (s *Source) List() []*config.Object {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.objs
}

// Errors returns the current errors: documents that do not decode or validate, duplicate
// definitions and unreadable files. Each is a *config.Error when it concerns a document.
func (s *Source) Errors() []error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.errs
}

// Warnings returns the cross-object findings of config.ValidateSet over the accepted objects.
func (s *Source) Warnings() []error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.warnings
}

// Dir returns the watched directory.
func (s *Source) Dir() string { return s.dir }

// Reload rescans the directory now and reports whether the accepted objects, errors or warnings
// changed. Run calls it after file events; tests and a SIGHUP handler may call it directly.
func (s *Source) Reload() bool {
	changed, _ := s.reload()
	return changed
}

// reload is Reload, also returning the directories found, for Run to watch.
func (s *Source) reload() (bool, []string) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	files, dirs, walkErr := s.scan()

	s.mu.RLock()
	prevFiles, prevServed, prevErrs := s.files, s.served, s.errs
	s.mu.RUnlock()

	newFiles := make(map[string]*parsed, len(files))
	var errs []error
	if walkErr != nil {
		errs = append(errs, walkErr)
		if !errors.Is(walkErr, fs.ErrNotExist) {
			// The directory exists but cannot be read: that proves nothing about its files, so
			// every file keeps serving what it served.
			files = files[:0]
			for path, prev := range prevFiles {
				files = append(files, path)
				newFiles[path] = &parsed{good: prev.good, broken: true}
			}
			sort.Strings(files)
		}
	}
	for _, path := range files {
		if newFiles[path] != nil {
			continue
		}
		p, err := s.load(path, prevFiles[path])
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted since the scan
			}
			errs = append(errs, &config.Error{Origin: path, Msg: err.Error()})
			// Unreadable (permissions, I/O error): keep what it served.
			if prev := prevFiles[path]; prev != nil {
				newFiles[path] = &parsed{good: prev.good, broken: true}
			}
			continue
		}
		newFiles[path] = p
	}
	servedNow, dupErrs := merge(files, newFiles, prevServed)
	for _, path := range files {
		if p := newFiles[path]; p != nil {
			errs = append(errs, p.errs...)
		}
	}
	errs = append(errs, dupErrs...)

	objs := make([]*config.Object, 0, len(servedNow))
	for _, sv := range servedNow {
		objs = append(objs, sv.obj)
	}
	sort.Slice(objs, func(i, j int) bool { return keyLess(objs[i].Key(), objs[j].Key()) })
	warnings := config.ValidateSet(objs)

	changed := !sameServed(prevServed, servedNow) || !sameErrors(prevErrs, errs)
	s.mu.Lock()
	prevWarnings := s.warnings
	changed = changed || !sameErrors(prevWarnings, warnings)
	s.files, s.served, s.objs, s.errs, s.warnings = newFiles, servedNow, objs, errs, warnings
	s.stats.record(errs, len(warnings), objs)
	s.mu.Unlock()

	if changed {
		s.logResult(prevErrs, errs, prevWarnings, warnings, len(objs))
	}
	return changed, dirs
}

// merge decides which object serves each key. Good definitions win, the first file in path order
// first; a key whose document is now bad keeps its previous object (last known good); a file with
// a document whose key is unknown keeps serving the objects it served before.
func merge(files []string, parsedFiles map[string]*parsed, prev map[config.Key]served) (map[config.Key]served, []error) {
	out := map[config.Key]served{}
	var errs []error
	for _, path := range files {
		p := parsedFiles[path]
		if p == nil {
			continue
		}
		for _, o := range p.good {
			k := o.Key()
			if first, dup := out[k]; dup {
				errs = append(errs, &config.Error{
					Origin: path, Kind: k.Kind, Namespace: k.Namespace, Name: k.Name, Field: "metadata.name",
					Msg: fmt.Sprintf("duplicate definition: %s already defines it and is used", first.path),
				})
				continue
			}
			out[k] = served{obj: o, path: path}
		}
	}
	for _, path := range files {
		p := parsedFiles[path]
		if p == nil {
			continue
		}
		for _, k := range p.bad {
			if _, ok := out[k]; ok {
				continue
			}
			if old, ok := prev[k]; ok {
				out[k] = served{obj: old.obj, path: path}
			}
		}
		if p.broken {
			for k, old := range prev {
				if _, ok := out[k]; !ok && old.path == path {
					out[k] = old
				}
			}
		}
	}
	return out, errs
}

// load reads and parses one file, reusing prev when the content is unchanged.
func (s *Source) load(path string, prev *parsed) (*parsed, error) {
	data, err := readLimited(path, config.MaxInputSize)
	if err != nil {
		return nil, fmt.Errorf("reading file: %w", err)
	}
	sum := sha256.Sum256(data)
	if prev != nil && prev.sum == sum {
		return prev, nil
	}
	p := &parsed{sum: sum}
	objs, errs := config.Load(path, data)
	s.opts.Validation.Record(objs, errs)
	for _, e := range errs {
		p.addErr(e)
	}
	p.good = objs
	return p, nil
}

// addErr records a document error and, when the error names the object, its key.
func (p *parsed) addErr(err error) {
	p.errs = append(p.errs, err)
	var ce *config.Error
	if errors.As(err, &ce) {
		if k, ok := ce.Key(); ok {
			p.bad = append(p.bad, k)
			return
		}
	}
	p.broken = true
}

// readLimited reads a file of at most limit bytes.
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("file is larger than %d bytes", limit)
	}
	return data, nil
}

// isConfigFile reports whether name has a config file extension.
func isConfigFile(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// hidden reports whether a file or directory name is hidden (editor swap files, Kubernetes
// ConfigMap "..data" directories, ".git").
func hidden(name string) bool { return strings.HasPrefix(name, ".") }

// scan lists the config files (sorted) and the directories to watch under s.dir. Symbolic links
// to files are followed (ConfigMap volumes use them); links to directories are not.
func (s *Source) scan() (files, dirs []string, err error) {
	walkErr := filepath.WalkDir(s.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == s.dir {
				return err
			}
			s.log.Warn("skipping unreadable path", "path", path, "err", err)
			return nil
		}
		if path != s.dir && hidden(d.Name()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			dirs = append(dirs, path)
			return nil
		}
		if !isConfigFile(d.Name()) {
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 {
			fi, err := os.Stat(path)
			if err != nil || !fi.Mode().IsRegular() {
				return nil
			}
		} else if !d.Type().IsRegular() {
			return nil
		}
		files = append(files, path)
		return nil
	})
	sort.Strings(files)
	if walkErr != nil {
		return files, dirs, fmt.Errorf("reading config directory %s: %w", s.dir, walkErr)
	}
	return files, dirs, nil
}

// Run watches the directory tree and reloads after changes (debounced), calling onChange after
// each reload that changed the accepted objects, the errors or the warnings. New subdirectories
// are watched as they appear. It returns nil when ctx is done, or an error when the directory
// cannot be watched.
func (s *Source) Run(ctx context.Context, onChange func()) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("creating file watcher: %w", err)
	}
	defer w.Close()
	if err := w.Add(s.dir); err != nil {
		return fmt.Errorf("watching %s: %w", s.dir, err)
	}
	watched := map[string]bool{s.dir: true}
	// rootPoll ticks while the directory itself is gone, to notice when it comes back (a removed
	// directory cannot be watched).
	var rootPoll *time.Ticker
	var rootPollC <-chan time.Time
	defer func() {
		if rootPoll != nil {
			rootPoll.Stop()
		}
	}()
	syncWatches := func(dirs []string) {
		if _, err := os.Stat(s.dir); err != nil {
			if rootPoll == nil {
				s.log.Warn("config directory is gone; polling for it", "err", err)
				rootPoll = time.NewTicker(rootPollInterval)
				rootPollC = rootPoll.C
			}
			for d := range watched {
				_ = w.Remove(d)
				delete(watched, d)
			}
			return
		}
		if rootPoll != nil {
			rootPoll.Stop()
			rootPoll, rootPollC = nil, nil
		}
		now := map[string]bool{s.dir: true}
		if !watched[s.dir] {
			if err := w.Add(s.dir); err != nil {
				s.log.Warn("cannot watch directory", "path", s.dir, "err", err)
			} else {
				watched[s.dir] = true
			}
		}
		for _, d := range dirs {
			now[d] = true
			if !watched[d] {
				if err := w.Add(d); err != nil {
					s.log.Warn("cannot watch directory", "path", d, "err", err)
					continue
				}
				watched[d] = true
			}
		}
		for d := range watched {
			if !now[d] {
				_ = w.Remove(d) // already gone with the directory in most cases
				delete(watched, d)
			}
		}
	}
	reload := func() {
		changed, dirs := s.reload()
		syncWatches(dirs)
		if changed && onChange != nil {
			onChange()
		}
	}
	// Watch every directory first, then pick up changes made since New: nothing is missed between.
	_, dirs, _ := s.scan()
	syncWatches(dirs)
	reload()

	var (
		timer    *time.Timer
		timerC   <-chan time.Time
		first    time.Time
		resyncC  <-chan time.Time
		resyncer *time.Ticker
	)
	if s.opts.Resync > 0 {
		resyncer = time.NewTicker(s.opts.Resync)
		defer resyncer.Stop()
		resyncC = resyncer.C
	}
	schedule := func() {
		now := time.Now()
		if timer == nil {
			first = now
			timer = time.NewTimer(s.opts.Debounce)
			timerC = timer.C
			return
		}
		wait := s.opts.Debounce
		if rest := s.opts.MaxDelay - now.Sub(first); rest < wait {
			wait = max(rest, 0)
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
	}
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("file watcher closed")
			}
			if !relevant(ev) {
				continue
			}
			if ev.Op&fsnotify.Create != 0 {
				if fi, err := os.Stat(ev.Name); err == nil && fi.IsDir() && !hidden(filepath.Base(ev.Name)) {
					// Watch a new subdirectory at once, before files land in it unseen.
					_, dirs, _ := s.scan()
					syncWatches(dirs)
				}
			}
			schedule()
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("file watcher closed")
			}
			// Typically an event queue overflow: events were lost, so rescan.
			s.log.Warn("file watcher error; rescanning", "err", err)
			schedule()
		case <-timerC:
			timer, timerC = nil, nil
			reload()
		case <-resyncC:
			reload()
		case <-rootPollC:
			if _, err := os.Stat(s.dir); err == nil {
				// Watch the recreated tree first, then read it: a file written between a scan
				// and the watch would otherwise go unseen until the next change (a CI flake).
				_, dirs, _ := s.scan()
				syncWatches(dirs)
				reload()
			}
		}
	}
}

// relevant reports whether a file event can change the config: writes to files without a config
// extension (logs, editor swap files) cannot; creations, removals and renames may concern
// directories or ConfigMap "..data" links, so they always count.
func relevant(ev fsnotify.Event) bool {
	switch {
	case ev.Op&(fsnotify.Create|fsnotify.Remove|fsnotify.Rename) != 0:
		return true
	case ev.Op&fsnotify.Write != 0:
		return isConfigFile(ev.Name)
	}
	return false // Chmod only
}

// logResult logs a reload that changed something: newly found errors at Warn, new warnings and
// the summary at Info.
func (s *Source) logResult(prevErrs, errs, prevWarnings, warnings []error, objects int) {
	for _, e := range added(prevErrs, errs) {
		s.log.Warn("rejected config", "err", e)
	}
	for _, w := range added(prevWarnings, warnings) {
		s.log.Info("config warning", "warning", w)
	}
	s.log.Info("config reloaded", "objects", objects, "errors", len(errs), "warnings", len(warnings))
}

// added returns the errors in now whose text is not in before.
func added(before, now []error) []error {
	old := make(map[string]bool, len(before))
	for _, e := range before {
		old[e.Error()] = true
	}
	var out []error
	for _, e := range now {
		if !old[e.Error()] {
			out = append(out, e)
		}
	}
	return out
}

func keyLess(a, b config.Key) bool {
	if a.Kind != b.Kind {
		return a.Kind < b.Kind
	}
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	return a.Name < b.Name
}

// sameServed reports whether two accepted sets hold the same object values (by identity).
func sameServed(a, b map[config.Key]served) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w.obj != v.obj {
			return false
		}
	}
	return true
}

func sameErrors(a, b []error) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Error() != b[i].Error() {
			return false
		}
	}
	return true
}
