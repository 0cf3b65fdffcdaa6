package xds

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"

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
	diffs   sync.Map                       // old version → *setDiff, see diffFrom
}

// proxySnapshot is what the cache serves one proxy: a typeSet per resource type. It is never
// modified after construction.
type proxySnapshot struct {
	sets [types.UnknownType]*typeSet
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

// interner validates, hashes and shares resources within one push epoch. Resource objects are
// keyed by identity: a generator that reuses an object for many proxies (as it should for resources
// that do not depend on the proxy) has it marshaled and validated once per epoch. A new interner
// is started for every push round so that objects of old snapshots can be collected.
type interner struct {
	res   sync.Map // types.Resource → resourceInfo
	lists sync.Map // listKey → *typeSet

	mu   sync.Mutex
	sets map[string]*typeSet // typeURL + "\x00" + version → set
}

func newInterner() *interner {
	return &interner{sets: make(map[string]*typeSet)}
}

// info returns the name, content hash and validation error of r, computing them once per epoch.
func (in *interner) info(r types.Resource) resourceInfo {
	if v, ok := in.res.Load(r); ok {
		return v.(resourceInfo)
	}
	ri := resourceInfo{typeURL: typeURLOf(r), name: cache.GetResourceName(r)}
	if v, ok := r.(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			ri.err = fmt.Errorf("invalid %s %q: %w", shortType(ri.typeURL), ri.name, err)
		}
	}
	if ri.err == nil {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
		if err != nil {
			ri.err = fmt.Errorf("marshaling %q: %w", ri.name, err)
		} else {
			ri.bytes = b
			ri.hash = hashHex(xxhash.Sum64(b))
			ri.item = xxhash.Sum64String(ri.name + "\x00" + ri.hash)
		}
	}
	in.res.Store(r, ri)
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

// listKey identifies a generator's output slice by identity: generators that share a slice
// between proxies (the same backing array and length) get the typeSet without a per-item pass.
type listKey struct {
	typeURL string
	first   *types.Resource
	n       int
}

func (in *interner) typeSet(typeURL string, list []types.Resource) (*typeSet, error) {
	var lk listKey
	if len(list) > 0 {
		lk = listKey{typeURL, &list[0], len(list)}
		if v, ok := in.lists.Load(lk); ok {
			return v.(*typeSet), nil
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
	set, ok := in.sets[key]
	in.mu.Unlock()
	if !ok {
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
		}
		slices.Sort(set.names)
		in.mu.Lock()
		if prev, ok := in.sets[key]; ok {
			set = prev // built concurrently by another proxy; share one
		} else {
			in.sets[key] = set
		}
		in.mu.Unlock()
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

// shortType maps a type URL to Istio's short name: CDS, LDS, RDS, EDS, SDS, or the URL itself.
func shortType(typeURL string) string {
	switch typeURL {
	case resource.ClusterType:
		return "CDS"
	case resource.ListenerType:
		return "LDS"
	case resource.RouteType:
		return "RDS"
	case resource.EndpointType:
		return "EDS"
	case resource.SecretType:
		return "SDS"
	case resource.ExtensionConfigType:
		return "ECDS"
	}
	return typeURL
}
