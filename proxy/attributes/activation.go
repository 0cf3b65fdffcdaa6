package attributes

import (
	"errors"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/cel-go/interpreter"
)

// activation resolves the top-level attribute names against one Record. Activations are pooled:
// evaluating an expression allocates only the values it reads.
type activation struct {
	r      *Record
	groups [len(groupOrder)]group
}

// groupOrder fixes an index per top-level attribute for activation.groups.
var groupOrder = [...]string{nameRequest, nameResponse, nameSource, nameDestination, nameConnection,
	nameUpstream, nameXDS, nameMetadata}

var activationPool = sync.Pool{New: func() any {
	a := &activation{}
	for i, n := range groupOrder {
		a.groups[i] = group{a: a, fields: groups[n]}
		a.groups[i].self = &a.groups[i]
	}
	return a
}}

func getActivation(r *Record) *activation {
	a := activationPool.Get().(*activation)
	a.r = r
	return a
}

func (a *activation) release() {
	a.r = nil
	activationPool.Put(a)
}

// ResolveName implements interpreter.Activation.
func (a *activation) ResolveName(name string) (any, bool) {
	for i, n := range groupOrder {
		if n == name {
			return &a.groups[i], true
		}
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (a *activation) Parent() interpreter.Activation { return nil }

// lookup is the CEL map behaviour shared by the lazily resolved maps of this package: a
// string-keyed map whose entries are looked up on demand (find) and listed only when iterated.
type lookup interface {
	find(key string) (ref.Val, bool)
	keys() []string
}

var errNotString = errors.New("attribute map keys are strings")

// findKey implements traits.Mapper's Find.
func findKey(l lookup, key ref.Val) (ref.Val, bool) {
	k, ok := key.(types.String)
	if !ok {
		return types.NewErrFromString(errNotString.Error()), false
	}
	return l.find(string(k))
}

// getKey implements traits.Indexer's Get: an absent key is an error, as in Envoy.
func getKey(l lookup, key ref.Val) ref.Val {
	v, ok := findKey(l, key)
	if ok || types.IsError(v) {
		return v
	}
	return types.NewErrFromString("no such key: " + strconv.Quote(string(key.(types.String))))
}

func containsKey(l lookup, key ref.Val) ref.Val {
	v, ok := findKey(l, key)
	if types.IsError(v) {
		return v
	}
	return types.Bool(ok)
}

func keyIterator(l lookup) traits.Iterator {
	return types.NewStringList(types.DefaultTypeAdapter, l.keys()).(traits.Lister).Iterator()
}

// convert implements ConvertToType for the maps.
func convertMap(v ref.Val, t ref.Type) ref.Val {
	if t == types.TypeType {
		return types.MapType
	}
	if t == types.MapType {
		return v
	}
	return types.NewErrFromString("type conversion error from map to " + t.TypeName())
}

// mapValue is the CEL map behaviour (ref.Val and traits.Mapper) of a lookup: the lazily resolved
// maps of this package embed it, with self set to themselves.
type mapValue struct{ self lookup }

// ConvertToNative implements ref.Val.
func (m *mapValue) ConvertToNative(reflect.Type) (any, error) {
	return nil, errors.New("attribute maps do not convert to native values")
}

// ConvertToType implements ref.Val.
func (m *mapValue) ConvertToType(t ref.Type) ref.Val { return convertMap(m.self.(ref.Val), t) }

// Equal implements ref.Val: an attribute map equals only itself.
func (m *mapValue) Equal(o ref.Val) ref.Val {
	l, ok := o.(lookup)
	return types.Bool(ok && l == m.self)
}

// Type implements ref.Val.
func (m *mapValue) Type() ref.Type { return types.MapType }

// Value implements ref.Val.
func (m *mapValue) Value() any { return m.self }

// Contains implements traits.Container.
func (m *mapValue) Contains(k ref.Val) ref.Val { return containsKey(m.self, k) }

// Get implements traits.Indexer.
func (m *mapValue) Get(k ref.Val) ref.Val { return getKey(m.self, k) }

// Find implements traits.Mapper.
func (m *mapValue) Find(k ref.Val) (ref.Val, bool) { return findKey(m.self, k) }

// Iterator implements traits.Iterable.
func (m *mapValue) Iterator() traits.Iterator { return keyIterator(m.self) }

// Size implements traits.Sizer.
func (m *mapValue) Size() ref.Val { return types.Int(len(m.self.keys())) }

// group is a top-level attribute (request, response, ...) of the activation's Record.
type group struct {
	mapValue
	a      *activation
	fields map[string]attr
}

var _ traits.Mapper = (*group)(nil)

func (g *group) find(key string) (ref.Val, bool) {
	f, ok := g.fields[key]
	if !ok {
		return nil, false
	}
	return f(g.a.r)
}

func (g *group) keys() []string {
	var ks []string
	for k, f := range g.fields {
		if _, ok := f(g.a.r); ok {
			ks = append(ks, k)
		}
	}
	sort.Strings(ks)
	return ks
}

// headerMap is request.headers, response.headers or response.trailers: header values by
// lower-cased name (case-insensitive lookup), several values comma-joined. Request headers
// include the pseudo-headers :method, :path, :authority and :scheme; response headers :status.
type headerMap struct {
	mapValue
	r    *Record
	kind headerKind
}

type headerKind uint8

const (
	requestHeaderMap headerKind = iota
	responseHeaderMap
	responseTrailerMap
)

var _ traits.Mapper = (*headerMap)(nil)

func requestHeaders(r *Record) (ref.Val, bool) {
	if r.Protocol == "" {
		return nil, false
	}
	return newHeaderMap(r, requestHeaderMap), true
}

func responseHeaders(r *Record) (ref.Val, bool) {
	if r.Protocol == "" || r.ResponseCode == 0 {
		return nil, false
	}
	return newHeaderMap(r, responseHeaderMap), true
}

func responseTrailers(r *Record) (ref.Val, bool) {
	if r.Protocol == "" || r.ResponseCode == 0 {
		return nil, false
	}
	return newHeaderMap(r, responseTrailerMap), true
}

func newHeaderMap(r *Record, kind headerKind) *headerMap {
	m := &headerMap{r: r, kind: kind}
	m.self = m
	return m
}

var (
	requestPseudo  = []string{":authority", ":method", ":path", ":scheme"}
	responsePseudo = []string{":status"}
)

// pseudo returns a pseudo-header's value.
func (m *headerMap) pseudo(name string) (string, bool) {
	r := m.r
	switch m.kind {
	case requestHeaderMap:
		switch name {
		case ":method":
			return r.Method, r.Method != ""
		case ":path":
			return r.Path, r.Path != ""
		case ":authority":
			return r.Authority, r.Authority != ""
		case ":scheme":
			return r.Scheme, r.Scheme != ""
		}
	case responseHeaderMap:
		if name == ":status" {
			return strconv.Itoa(r.ResponseCode), true
		}
	}
	return "", false
}

func (m *headerMap) header() Headers {
	switch m.kind {
	case requestHeaderMap:
		return m.r.RequestHeaders
	case responseTrailerMap:
		return m.r.ResponseTrailers
	}
	return m.r.ResponseHeaders
}

func (m *headerMap) find(name string) (ref.Val, bool) {
	if strings.HasPrefix(name, ":") {
		v, ok := m.pseudo(strings.ToLower(name))
		return types.String(v), ok
	}
	vs := values(m.header(), name)
	if len(vs) == 0 {
		return nil, false
	}
	return types.String(joinValues(vs)), true
}

func (m *headerMap) keys() []string {
	var ks []string
	pseudo := requestPseudo
	if m.kind != requestHeaderMap {
		pseudo = responsePseudo
	}
	for _, n := range pseudo {
		if _, ok := m.pseudo(n); ok {
			ks = append(ks, n)
		}
	}
	rangeHeaders(m.header(), func(name, _ string) bool {
		ks = append(ks, strings.ToLower(name))
		return true
	})
	sort.Strings(ks)
	return slices.Compact(ks) // a name with several values once
}
