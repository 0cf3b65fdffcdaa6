package xds

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"
	"weak"

	"github.com/cespare/xxhash/v2"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/strait-mesh/strait/controlplane/translate"
)

// coreTypes are always present in a proxy snapshot, empty if the generator produced none, so that
// every subscribed client gets an answer for them.
var coreTypes = []string{resource.ClusterType, resource.ListenerType, resource.RouteType, resource.EndpointType}

// typeSet is an immutable set of resources of one type with its content-hash version, ready to
// send: every resource is marshaled once into a discovery.Resource (its name, content-hash version
// and Any) that all responses share. Sets are interned: proxies whose generated resources of a type
// are identical share one typeSet, so a connected proxy costs a pointer per type, not a copy.
type typeSet struct {
	typeURL string
	version string                         // hash of the names and content hashes of all items
	wire    map[string]*discovery.Resource // name → marshaled resource; never modified
	names   []string                       // sorted names of wire
	bytes   int64                          // resource bytes of all items (a full response's size)
	diffs   sync.Map                       // old version → *setDiff, see diffFrom
	unions  sync.Map                       // old version → *typeSet, see unionWith
}

// proxySnapshot is what the cache serves one proxy: a typeSet per resource type. It is never
// modified after construction.
type proxySnapshot struct {
	sets [types.UnknownType]*typeSet
	// answers maps, per demand type, each name the proxy demanded (ondemand.go) to the name of
	// the resource that serves it, or "" when none does.
	answers map[string]map[string]string
}

func (s *proxySnapshot) set(typeURL string) *typeSet {
	if s == nil {
		return nil
	}
	i := cache.GetResponseType(typeURL)
	if i == types.UnknownType {
		return nil
	}
	return s.sets[i]
}

// version returns the content-hash version of one type ("" if absent).
func (s *proxySnapshot) version(typeURL string) string {
	if t := s.set(typeURL); t != nil {
		return t.version
	}
	return ""
}

// typeVersions returns the version of every type present, keyed by type URL.
func (s *proxySnapshot) typeVersions() map[string]string {
	out := make(map[string]string, len(coreTypes))
	if s == nil {
		return out
	}
	for _, t := range s.sets {
		if t != nil {
			out[t.typeURL] = t.version
		}
	}
	return out
}

// resourceInfo is the memoized result of checking one resource object.
type resourceInfo struct {
	typeURL string
	name    string
	hash    string // content hash, the resource's delta version
	item    uint64 // hash of name and content, summed into the type version
	bytes   []byte // deterministic marshaling
	err     error
}

// interner validates, hashes and shares resources. Resource objects are memoized by identity: a
// generator that reuses an object for many proxies (as it should for resources that do not depend
// on the proxy), or across snapshots, has it validated and marshaled once. Equal content is
// validated once and its bytes are shared. Every memo holds weak pointers, so it keeps nothing
// alive: entries of collected objects are swept as the memo grows. One interner serves the
// Server's lifetime.
type interner struct {
	res   sync.Map // object address (uintptr: keys must not keep objects alive) → *memoEntry
	lists sync.Map // listKey → *listEntry
	blobs sync.Map // content hash → *blob: one copy of equal marshaled bytes

	mu   sync.Mutex
	sets map[string]weak.Pointer[typeSet] // typeURL + "\x00" + version → set, while a proxy holds it

	inserts  atomic.Int64 // memo inserts since the last sweep
	sweepAt  atomic.Int64 // sweep when inserts reach this
	sweeping atomic.Bool
}

// memoEntry is the memoized check of one object; valid while obj still points to that object
// (a collected object's address may be reused by a new one).
type memoEntry struct {
	obj  weak.Pointer[byte]
	info resourceInfo
}

// blob is a weak reference to marshaled bytes shared by equal resources, with the result of
// validating them.
type blob struct {
	first weak.Pointer[byte]
	n     int
	err   error
}

// share returns a live earlier copy of b (content hash h) and its validation result, with seen
// true; or b itself and seen false when the content is new (or empty, which is not shared).
func (in *interner) share(h uint64, b []byte) (shared []byte, err error, seen bool) {
	if len(b) == 0 {
		return b, nil, false
	}
	if v, ok := in.blobs.Load(h); ok {
		e := v.(*blob)
		if p := e.first.Value(); p != nil {
			if old := unsafe.Slice(p, e.n); bytes.Equal(old, b) {
				return old, e.err, true
			}
		}
	}
	return b, nil, false
}

// listEntry memoizes the typeSet of a whole slice returned by a generator.
type listEntry struct {
	first weak.Pointer[types.Resource]
	set   *typeSet
}

const minSweep = 20000

func newInterner() *interner {
	in := &interner{sets: make(map[string]weak.Pointer[typeSet])}
	in.sweepAt.Store(minSweep)
	return in
}

// objectAddr returns the address of the object r points to.
func objectAddr(r types.Resource) unsafe.Pointer { return reflect.ValueOf(r).UnsafePointer() }

// info returns the name, content hash and validation error of r, computing them once per object.
func (in *interner) info(r types.Resource) resourceInfo {
	addr := objectAddr(r)
	if v, ok := in.res.Load(uintptr(addr)); ok {
		e := v.(*memoEntry)
		if e.obj.Value() == (*byte)(addr) {
			return e.info
		}
	}
	ri := resourceInfo{typeURL: typeURLOf(r), name: cache.GetResourceName(r)}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	if err != nil {
		ri.err = fmt.Errorf("marshaling %s %q: %w", shortType(ri.typeURL), ri.name, err)
	} else {
		sum := xxhash.Sum64(b)
		ri.hash = hashHex(sum)
		ri.item = xxhash.Sum64String(ri.name + "\x00" + ri.hash)
		// Validation depends only on content: equal bytes seen before share its result.
		var seen bool
		ri.bytes, ri.err, seen = in.share(sum, b)
		if !seen {
			if v, ok := r.(interface{ Validate() error }); ok {
				if err := v.Validate(); err != nil {
					ri.err = fmt.Errorf("invalid %s %q: %w", shortType(ri.typeURL), ri.name, err)
				}
			}
			if len(b) > 0 {
				in.blobs.Store(sum, &blob{first: weak.Make(&b[0]), n: len(b), err: ri.err})
			}
		}
	}
	in.res.Store(uintptr(addr), &memoEntry{obj: weak.Make((*byte)(addr)), info: ri})
	if in.inserts.Add(1) >= in.sweepAt.Load() {
		in.sweep()
	}
	return ri
}

// sweep drops memo entries of collected objects and lists, and sets no proxy holds any more.
// Concurrent callers skip it while one goroutine sweeps.
func (in *interner) sweep() {
	if !in.sweeping.CompareAndSwap(false, true) {
		return
	}
	defer in.sweeping.Store(false)
	live := int64(0)
	in.res.Range(func(k, v any) bool {
		if e := v.(*memoEntry); e.obj.Value() == nil {
			in.res.Delete(k)
		} else {
			live++
		}
		return true
	})
	in.lists.Range(func(k, v any) bool {
		if v.(*listEntry).first.Value() == nil {
			in.lists.Delete(k)
		}
		return true
	})
	in.blobs.Range(func(k, v any) bool {
		if v.(*blob).first.Value() == nil {
			in.blobs.Delete(k)
		}
		return true
	})
	in.mu.Lock()
	for k, wp := range in.sets {
		if wp.Value() == nil {
			delete(in.sets, k)
		}
	}
	in.mu.Unlock()
	in.inserts.Store(0)
	in.sweepAt.Store(max(minSweep, live))
}

// snapshot validates and interns a generator's output into a proxySnapshot. Any invalid resource
// makes the whole output invalid: the proxy keeps what it had.
func (in *interner) snapshot(res translate.Resources) (*proxySnapshot, error) {
	out := &proxySnapshot{}
	for typeURL, list := range res {
		i := cache.GetResponseType(typeURL)
		if i == types.UnknownType {
			return nil, fmt.Errorf("generator returned unknown resource type %q", typeURL)
		}
		set, err := in.typeSet(typeURL, list)
		if err != nil {
			return nil, err
		}
		out.sets[i] = set
	}
	for _, typeURL := range coreTypes {
		if i := cache.GetResponseType(typeURL); out.sets[i] == nil {
			set, _ := in.typeSet(typeURL, nil)
			out.sets[i] = set
		}
	}
	return out, nil
}

// listKey identifies a generator's output slice by identity: generators that share a slice
// between proxies (the same backing array and length) get the typeSet without a per-item pass.
type listKey struct {
	typeURL string
	first   uintptr // not a pointer: the key must not keep the list alive
	n       int
}

func (in *interner) typeSet(typeURL string, list []types.Resource) (*typeSet, error) {
	var lk listKey
	if len(list) > 0 {
		lk = listKey{typeURL, uintptr(unsafe.Pointer(&list[0])), len(list)}
		if v, ok := in.lists.Load(lk); ok {
			if e := v.(*listEntry); e.first.Value() == &list[0] {
				return e.set, nil
			}
		}
	}
	// The version is a hash of the count and the sum of per-item hashes (name and content): it
	// does not depend on the order of the list, so no sort is needed per proxy.
	infos := make([]resourceInfo, len(list))
	var sum uint64
	for i, r := range list {
		if r == nil {
			return nil, fmt.Errorf("generator returned a nil %s resource", shortType(typeURL))
		}
		ri := in.info(r)
		if ri.err != nil {
			return nil, ri.err
		}
		if ri.typeURL != typeURL {
			return nil, fmt.Errorf("resource %q of type %s listed under %s", ri.name, ri.typeURL, typeURL)
		}
		infos[i] = ri
		sum += ri.item
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(len(list)))
	binary.BigEndian.PutUint64(b[8:], sum)
	h := xxhash.New()
	_, _ = h.WriteString(typeURL)
	_, _ = h.Write(b[:])
	version := hashHex(h.Sum64())
	key := typeURL + "\x00" + version

	in.mu.Lock()
	set := in.sets[key].Value()
	in.mu.Unlock()
	if set == nil {
		set = &typeSet{typeURL: typeURL, version: version, wire: make(map[string]*discovery.Resource, len(infos))}
		for _, ri := range infos {
			if _, dup := set.wire[ri.name]; dup {
				return nil, fmt.Errorf("duplicate %s resource name %q", shortType(typeURL), ri.name)
			}
			set.wire[ri.name] = &discovery.Resource{
				Name:     ri.name,
				Version:  ri.hash,
				Resource: &anypb.Any{TypeUrl: typeURL, Value: ri.bytes},
			}
			set.names = append(set.names, ri.name)
			set.bytes += int64(len(ri.bytes))
		}
		slices.Sort(set.names)
		in.mu.Lock()
		if prev := in.sets[key].Value(); prev != nil {
			set = prev // built concurrently by another proxy; share one
		} else {
			in.sets[key] = weak.Make(set)
		}
		in.mu.Unlock()
	}
	if len(list) > 0 {
		in.lists.Store(lk, &listEntry{first: weak.Make(&list[0]), set: set})
	}
	return set, nil
}

func hashHex(v uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return hex.EncodeToString(b[:])
}

func typeURLOf(r types.Resource) string {
	return resource.APITypePrefix + string(proto.MessageName(r))
}

// shortType maps a type URL to Istio's short name: CDS, LDS, RDS, VHDS, EDS, SDS, ECDS, or the
// URL itself.
func shortType(typeURL string) string {
	switch typeURL {
	case resource.ClusterType:
		return "CDS"
	case resource.ListenerType:
		return "LDS"
	case resource.RouteType:
		return "RDS"
	case resource.VirtualHostType:
		return "VHDS"
	case resource.EndpointType:
		return "EDS"
	case resource.SecretType:
		return "SDS"
	case resource.ExtensionConfigType:
		return "ECDS"
	}
	return typeURL
}
