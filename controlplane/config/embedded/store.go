// Package embedded is Strait's persistent config store for machines without Kubernetes: objects
// applied with `strait apply` are validated, written to a bbolt file under straitd's --data-dir and
// served as a config.Source. An apply is all-or-nothing: if any document is invalid, every error
// is returned and nothing changes.
package embedded

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/config/validationmetrics"
)

var bucketObjects = []byte("objects")

// Action says what an apply or delete did to one object.
type Action string

// Actions reported per object, as kubectl words them.
const (
	Created    Action = "created"
	Configured Action = "configured"
	Unchanged  Action = "unchanged"
	Deleted    Action = "deleted"
)

// Change is the outcome for one object.
type Change struct {
	Kind      config.Kind `json:"kind"`
	Namespace string      `json:"namespace"`
	Name      string      `json:"name"`
	Action    Action      `json:"action"`
}

// ErrNotFound is returned (wrapped) when an object to get or delete does not exist.
var ErrNotFound = errors.New("not found")

// record is the on-disk form of one object.
type record struct {
	APIVersion string          `json:"apiVersion"`
	Kind       config.Kind     `json:"kind"`
	Meta       config.Meta     `json:"metadata"`
	Spec       json.RawMessage `json:"spec"`
}

// Store is the embedded store. It is safe for concurrent use.
type Store struct {
	db *bolt.DB

	mu      sync.RWMutex
	objs    map[config.Key]*config.Object
	list    []*config.Object // sorted, rebuilt on change
	rv      uint64           // last resourceVersion handed out
	subs    []chan struct{}
	loadErr []error

	validation *validationmetrics.Counters // counts the apply API's validations; set before serving
}

var _ config.Source = (*Store)(nil)

// Open opens (creating if needed) the store file at path and loads every object in it.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("opening config store %s: %w", path, err)
	}
	s := &Store{db: db, objs: map[config.Key]*config.Object{}}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketObjects)
		if err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			o, err := decodeRecord(v)
			if err != nil {
				// Keep going: one unreadable record must not hide the rest.
				s.loadErr = append(s.loadErr, fmt.Errorf("config store %s: record %q: %w", path, k, err))
				return nil
			}
			s.objs[o.Key()] = o
			if rv, err := strconv.ParseUint(o.ResourceVersion, 10, 64); err == nil && rv > s.rv {
				s.rv = rv
			}
			return nil
		})
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("loading config store %s: %w", path, err)
	}
	s.rebuildList()
	return s, nil
}

// Close closes the underlying file.
func (s *Store) Close() error { return s.db.Close() }

func keyBytes(k config.Key) []byte { return []byte(string(k.Kind) + "/" + k.Namespace + "/" + k.Name) }

func decodeRecord(v []byte) (*config.Object, error) {
	var r record
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("decoding record: %w", err)
	}
	spec := config.NewSpec(r.Kind)
	if spec == nil {
		return nil, fmt.Errorf("unknown kind %q", r.Kind)
	}
	if err := protojson.Unmarshal(r.Spec, spec); err != nil {
		return nil, fmt.Errorf("decoding %s/%s/%s spec: %w", r.Kind, r.Meta.Namespace, r.Meta.Name, err)
	}
	return &config.Object{Kind: r.Kind, APIVersion: r.APIVersion, Meta: r.Meta, Spec: spec, Origin: "store"}, nil
}

func encodeRecord(o *config.Object) ([]byte, error) {
	spec, err := protojson.Marshal(o.Spec)
	if err != nil {
		return nil, fmt.Errorf("encoding %s spec: %w", o.Key(), err)
	}
	return json.Marshal(record{APIVersion: o.APIVersion, Kind: o.Kind, Meta: o.Meta, Spec: spec})
}

// Apply validates every object, then creates or replaces them in one transaction. If any object
// is invalid it returns all validation errors (joined) and changes nothing. With dryRun it only
// validates and reports what would change.
func (s *Store) Apply(objs []*config.Object, dryRun bool) ([]Change, error) {
	var errs []error
	seen := map[config.Key]bool{}
	for _, o := range objs {
		if err := config.Validate(o); err != nil {
			errs = append(errs, err)
		}
		if seen[o.Key()] {
			errs = append(errs, fmt.Errorf("%s: appears twice in one apply", o.Key()))
		}
		seen[o.Key()] = true
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now().UTC().Truncate(time.Second)
	rv := s.rv
	changes := make([]Change, 0, len(objs))
	next := make([]*config.Object, 0, len(objs))
	for _, o := range objs {
		c := Change{Kind: o.Kind, Namespace: o.Namespace, Name: o.Name}
		old, exists := s.objs[o.Key()]
		switch {
		case !exists:
			c.Action = Created
		case sameContent(old, o):
			c.Action = Unchanged
		default:
			c.Action = Configured
		}
		changes = append(changes, c)
		if c.Action == Unchanged {
			continue
		}
		n := *o
		n.Origin = "store"
		rv++
		n.ResourceVersion = strconv.FormatUint(rv, 10)
		if exists {
			n.CreationTimestamp = old.CreationTimestamp
			n.Generation = old.Generation + 1
		} else {
			n.CreationTimestamp = now
			n.Generation = 1
		}
		next = append(next, &n)
	}
	if dryRun || len(next) == 0 {
		return changes, nil
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketObjects)
		for _, o := range next {
			v, err := encodeRecord(o)
			if err != nil {
				return err
			}
			if err := b.Put(keyBytes(o.Key()), v); err != nil {
				return fmt.Errorf("writing %s: %w", o.Key(), err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("applying to config store: %w", err)
	}
	s.rv = rv
	for _, o := range next {
		s.objs[o.Key()] = o
	}
	s.rebuildList()
	s.notifyLocked()
	return changes, nil
}

func sameContent(a, b *config.Object) bool {
	return proto.Equal(a.Spec, b.Spec) && mapsEqual(a.Labels, b.Labels) && mapsEqual(a.Annotations, b.Annotations)
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// Delete removes the objects with the given keys in one transaction. If any key does not exist it
// returns an error wrapping ErrNotFound naming each missing key, and deletes nothing.
func (s *Store) Delete(keys []config.Key) ([]Change, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var missing []error
	for _, k := range keys {
		if _, ok := s.objs[k]; !ok {
			missing = append(missing, fmt.Errorf("%s: %w", k, ErrNotFound))
		}
	}
	if len(missing) > 0 {
		return nil, errors.Join(missing...)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketObjects)
		for _, k := range keys {
			if err := b.Delete(keyBytes(k)); err != nil {
				return fmt.Errorf("deleting %s: %w", k, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("deleting from config store: %w", err)
	}
	changes := make([]Change, 0, len(keys))
	for _, k := range keys {
		delete(s.objs, k)
		changes = append(changes, Change{Kind: k.Kind, Namespace: k.Namespace, Name: k.Name, Action: Deleted})
	}
	s.rebuildList()
	s.notifyLocked()
	return changes, nil
}

// Get returns the objects of a kind, optionally restricted to a namespace ("" for all) and a name
// ("" for all), sorted by namespace and name. A name that does not exist is an ErrNotFound error.
func (s *Store) Get(kind config.Kind, namespace, name string) ([]*config.Object, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*config.Object
	for _, o := range s.list {
		if o.Kind != kind || (namespace != "" && o.Namespace != namespace) || (name != "" && o.Name != name) {
			continue
		}
		out = append(out, o)
	}
	if name != "" && len(out) == 0 {
		return nil, fmt.Errorf("%s: %w", config.Key{Kind: kind, Namespace: namespace, Name: name}, ErrNotFound)
	}
	return out, nil
}

func (s *Store) rebuildList() {
	l := make([]*config.Object, 0, len(s.objs))
	for _, o := range s.objs {
		l = append(l, o)
	}
	sort.Slice(l, func(i, j int) bool {
		a, b := l[i], l[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	s.list = l
}

func (s *Store) notifyLocked() {
	for _, c := range s.subs {
		select {
		case c <- struct{}{}:
		default: // a change is already pending for this subscriber
		}
	}
}

// List implements config.Source.
func (s *Store) List() []*config.Object {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.list
}

// Errors implements config.Source: records that could not be read back from disk.
func (s *Store) Errors() []error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return append([]error(nil), s.loadErr...)
}

// Run implements config.Source: it calls onChange after every committed apply or delete.
func (s *Store) Run(ctx context.Context, onChange func()) error {
	c := make(chan struct{}, 1)
	s.mu.Lock()
	s.subs = append(s.subs, c)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		for i, x := range s.subs {
			if x == c {
				s.subs = append(s.subs[:i], s.subs[i+1:]...)
				break
			}
		}
		s.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c:
			onChange()
		}
	}
}
