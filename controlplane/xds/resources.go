package xds

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"

	"github.com/cespare/xxhash/v2"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/strait-mesh/strait/controlplane/translate"
)

// coreTypes are always present in a proxy snapshot, empty if the generator produced none, so that
// every subscribed client gets an answer for them.
var coreTypes = []string{resource.ClusterType, resource.ListenerType, resource.RouteType, resource.EndpointType}

// typeSet is an immutable set of resources of one type with its content-hash version. Sets are
// interned: all proxies whose generated resources of a type are identical share one typeSet, so a
// connected proxy costs a pointer per type, not a copy of its resources.
type typeSet struct {
	typeURL   string
	version   string                           // hash of the names and content hashes of all items
	items     map[string]types.ResourceWithTTL // name → resource (the generator's objects, never copied)
	resources map[string]types.Resource
	versions  map[string]string // name → content hash, for delta xDS
}

// proxySnapshot is what the cache serves one proxy: a typeSet per resource type. It implements
// go-control-plane's cache.ResourceSnapshot and is never modified after construction.
type proxySnapshot struct {
	sets [types.UnknownType]*typeSet
}

var _ cache.ResourceSnapshot = (*proxySnapshot)(nil)

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

// GetVersion returns the content-hash version of one type ("" if absent).
func (s *proxySnapshot) GetVersion(typeURL string) string {
	if t := s.set(typeURL); t != nil {
		return t.version
	}
	return ""
}

// GetResourcesAndTTL returns the shared item map of one type; callers must not modify it.
func (s *proxySnapshot) GetResourcesAndTTL(typeURL string) map[string]types.ResourceWithTTL {
	if t := s.set(typeURL); t != nil {
		return t.items
	}
	return nil
}

// GetResources returns the shared resource map of one type; callers must not modify it.
func (s *proxySnapshot) GetResources(typeURL string) map[string]types.Resource {
	if t := s.set(typeURL); t != nil {
		return t.resources
	}
	return nil
}

// ConstructVersionMap is a no-op: version maps are built when a typeSet is interned.
func (s *proxySnapshot) ConstructVersionMap() error { return nil }

// GetVersionMap returns name → content hash of one type; callers must not modify it.
func (s *proxySnapshot) GetVersionMap(typeURL string) map[string]string {
	if t := s.set(typeURL); t != nil {
		return t.versions
	}
	return nil
}

// versions returns the version of every type present, keyed by type URL.
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
	name string
	hash string
	err  error
}

// interner validates, hashes and shares resources within one push epoch. Resource objects are
// keyed by identity: a generator that reuses an object for many proxies (as it should for resources
// that do not depend on the proxy) has it marshaled and validated once per epoch. A new interner
// is started for every push round so that objects of old snapshots can be collected.
type interner struct {
	res sync.Map // types.Resource → resourceInfo

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
	ri := resourceInfo{name: cache.GetResourceName(r)}
	if v, ok := r.(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			ri.err = fmt.Errorf("invalid %s %q: %w", shortType(typeURLOf(r)), ri.name, err)
		}
	}
	if ri.err == nil {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
		if err != nil {
			ri.err = fmt.Errorf("marshaling %q: %w", ri.name, err)
		} else {
			ri.hash = hashHex(xxhash.Sum64(b))
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

type namedInfo struct {
	resourceInfo
	r types.Resource
}

func (in *interner) typeSet(typeURL string, list []types.Resource) (*typeSet, error) {
	infos := make([]namedInfo, 0, len(list))
	for _, r := range list {
		if r == nil {
			return nil, fmt.Errorf("generator returned a nil %s resource", shortType(typeURL))
		}
		if got := typeURLOf(r); got != typeURL {
			return nil, fmt.Errorf("resource %q of type %s listed under %s", cache.GetResourceName(r), got, typeURL)
		}
		ri := in.info(r)
		if ri.err != nil {
			return nil, ri.err
		}
		infos = append(infos, namedInfo{ri, r})
	}
	slices.SortFunc(infos, func(a, b namedInfo) int {
		switch {
		case a.name < b.name:
			return -1
		case a.name > b.name:
			return 1
		}
		return 0
	})
	h := xxhash.New()
	_, _ = h.WriteString(typeURL)
	for i, ri := range infos {
		if i > 0 && infos[i-1].name == ri.name {
			return nil, fmt.Errorf("duplicate %s resource name %q", shortType(typeURL), ri.name)
		}
		_, _ = h.WriteString("\x00" + ri.name + "\x00" + ri.hash)
	}
	version := hashHex(h.Sum64())
	key := typeURL + "\x00" + version

	in.mu.Lock()
	defer in.mu.Unlock()
	if set, ok := in.sets[key]; ok {
		return set, nil
	}
	set := &typeSet{
		typeURL:   typeURL,
		version:   version,
		items:     make(map[string]types.ResourceWithTTL, len(infos)),
		resources: make(map[string]types.Resource, len(infos)),
		versions:  make(map[string]string, len(infos)),
	}
	for _, ri := range infos {
		set.items[ri.name] = types.ResourceWithTTL{Resource: ri.r}
		set.resources[ri.name] = ri.r
		set.versions[ri.name] = ri.hash
	}
	in.sets[key] = set
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
