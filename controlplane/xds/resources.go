package xds

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"reflect"
	"slices"
	"unsafe"
	"weak"

	"github.com/cespare/xxhash/v2"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/strait-mesh/strait/controlplane/buildcache"
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
	version string                               // hash of the names and content hashes of all items
	wire    map[string]*discovery.Resource       // name → marshaled resource; never modified
	names   []string                             // sorted names of wire
	bytes   int64                                // resource bytes of all items (a full response's size)
	diffs   buildcache.Derived[string, *setDiff] // old version → diff, see diffFrom
	unions  buildcache.Derived[string, *typeSet] // old version → union, see unionWith
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

// interner validates, hashes and shares resources. Its caches are owned by a buildcache.Owner
// (shared with the generator, for one set of metrics and one lifetime rule) and keyed by type,
// never by an object's address:
//
//   - bytes and validation by content: a resource is marshaled deterministically and its bytes
//     are shared with every earlier resource of equal content (blobs, by content hash, compared
//     byte for byte), so equal resources built as different objects share one marshaled copy and
//     one validation;
//   - the check of one object by a weak handle to it (weak.Pointer, objects): a generator that
//     returns one object to many proxies, or carries it over to the next snapshot, has it
//     marshaled once. The runtime never gives an object's handle to another object, even one
//     allocated at the same address once the first was collected, so a new object is always
//     marshaled anew; the contract that makes reuse correct is the Generator's (resources are
//     immutable once returned), not that an address or a returned pointer means equal content;
//   - the set of a whole list by a weak handle to its first element and its length (lists).
//
// Nothing keeps a resource alive: entries of collected objects are swept as the tables grow and
// at each new generation. One interner serves the Server's lifetime.
type interner struct {
	objects *buildcache.Weak[objectKey, resourceInfo]
	lists   *buildcache.Weak[listKey, *typeSet]
	blobs   *buildcache.Weak[uint64, *blob]
	sets    *buildcache.Weak[setKey, weak.Pointer[typeSet]]
}

// objectKey names one live resource object by a weak handle to its first byte.
type objectKey struct{ obj weak.Pointer[byte] }

// listKey names a generator's output slice: its type, a weak handle to its first element (the
// same backing array) and its length.
type listKey struct {
	typeURL string
	first   weak.Pointer[types.Resource]
	n       int
}

// setKey names an interned typeSet by content: its type and version.
type setKey struct{ typeURL, version string }

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
	if e, ok := in.blobs.Load(h); ok {
		if p := e.first.Value(); p != nil {
			if old := unsafe.Slice(p, e.n); bytes.Equal(old, b) {
				return old, e.err, true
			}
		}
	}
	return b, nil, false
}

func newInterner(o *buildcache.Owner) *interner {
	return &interner{
		objects: buildcache.NewWeak(o, "xds-resources", func(k objectKey, _ resourceInfo) bool { return k.obj.Value() != nil }),
		lists:   buildcache.NewWeak(o, "xds-lists", func(k listKey, _ *typeSet) bool { return k.first.Value() != nil }),
		blobs:   buildcache.NewWeak(o, "xds-marshaled", func(_ uint64, b *blob) bool { return b.first.Value() != nil }),
		sets:    buildcache.NewWeak(o, "xds-type-sets", func(_ setKey, p weak.Pointer[typeSet]) bool { return p.Value() != nil }),
	}
}

// objectAddr returns the address of the object r points to.
func objectAddr(r types.Resource) unsafe.Pointer { return reflect.ValueOf(r).UnsafePointer() }

// info returns the name, content hash and validation error of r, computing them once per object.
func (in *interner) info(r types.Resource) resourceInfo {
	key := objectKey{weak.Make((*byte)(objectAddr(r)))}
	if ri, ok := in.objects.Load(key); ok {
		return ri
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
	in.objects.Store(key, ri)
	return ri
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

func (in *interner) typeSet(typeURL string, list []types.Resource) (*typeSet, error) {
	var lk listKey
	if len(list) > 0 {
		lk = listKey{typeURL, weak.Make(&list[0]), len(list)}
		if set, ok := in.lists.Load(lk); ok {
			return set, nil
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
	key := setKey{typeURL, version}
	var set *typeSet
	if p, ok := in.sets.Load(key); ok {
		set = p.Value()
	}
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
		if prev := in.sets.LoadOrStore(key, weak.Make(set)).Value(); prev != nil {
			set = prev // built concurrently by another proxy: share one
		}
	}
	if len(list) > 0 {
		in.lists.Store(lk, set)
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

// sweep drops the entries of collected objects, lists and bytes, and sets no proxy holds.
func (in *interner) sweep() {
	in.objects.Sweep()
	in.lists.Sweep()
	in.blobs.Sweep()
	in.sets.Sweep()
}
