package attributes

import (
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"google.golang.org/protobuf/types/known/structpb"
)

// activation is one evaluation's state: the Record whose attributes the top-level names resolve
// to, the comprehension variables and the cost spent. Activations are pooled: evaluating an
// expression allocates only the values it builds (lists, maps, strings).
type activation struct {
	r       *Record
	cost    int
	over    bool // the cost limit was exceeded
	locals  []Value
	groups  [len(groupOrder)]group
	headers [3]headerMap // request.headers, response.headers, response.trailers
}

// groupOrder fixes an index per top-level attribute for activation.groups.
var groupOrder = [...]string{nameRequest, nameResponse, nameSource, nameDestination, nameConnection,
	nameUpstream, nameXDS, nameMetadata}

var activationPool = sync.Pool{New: func() any {
	a := &activation{}
	for i, n := range groupOrder {
		a.groups[i] = group{a: a, fields: groups[n]}
	}
	for i := range a.headers {
		a.headers[i].kind = headerKind(i)
	}
	return a
}}

func getActivation(r *Record) *activation {
	a := activationPool.Get().(*activation)
	a.r = r
	for i := range a.headers {
		a.headers[i].r = r
	}
	return a
}

func (a *activation) release() {
	a.r = nil
	for i := range a.headers {
		a.headers[i].r = nil
	}
	clear(a.locals)
	a.cost, a.over = 0, false
	activationPool.Put(a)
}

// stringKeys lists string keys as values.
func stringKeys(ks []string) []Value {
	out := make([]Value, len(ks))
	for i, k := range ks {
		out[i] = stringVal(k)
	}
	return out
}

// group is a top-level attribute (request, response, ...) of the activation's Record: a map
// from field name to value, resolved on demand.
type group struct {
	a      *activation
	fields map[string]attr
}

func (g *group) find(key Value) (Value, bool) {
	if key.k != kString {
		return Value{}, false
	}
	f, ok := g.fields[key.s]
	if !ok {
		return Value{}, false
	}
	return g.a.attribute(f)
}

// attribute resolves one attribute of the activation's Record.
func (a *activation) attribute(f attr) (Value, bool) {
	v, ok := f(a.r)
	if hk, isHeaders := v.o.(headerKind); ok && isHeaders {
		v.o = &a.headers[hk]
	}
	return v, ok
}

func (g *group) keys() []Value {
	var ks []string
	for k, f := range g.fields {
		if _, ok := f(g.a.r); ok {
			ks = append(ks, k)
		}
	}
	sort.Strings(ks)
	return stringKeys(ks)
}

func (g *group) size() int {
	n := 0
	for _, f := range g.fields {
		if _, ok := f(g.a.r); ok {
			n++
		}
	}
	return n
}

// headerMap is request.headers, response.headers or response.trailers: header values by
// lower-cased name (case-insensitive lookup), several values comma-joined. Request headers
// include the pseudo-headers :method, :path, :authority and :scheme; response headers :status.
type headerMap struct {
	r    *Record
	kind headerKind
}

// headerKind says which of a Record's header maps a headerMap is. An attribute function returns
// it as the map's value; the group replaces it by the activation's headerMap of that kind, so
// that reading headers allocates nothing.
type headerKind uint8

const (
	requestHeaderMap headerKind = iota
	responseHeaderMap
	responseTrailerMap
)

func requestHeaders(r *Record) (Value, bool) {
	if r.Protocol == "" {
		return Value{}, false
	}
	return Value{k: kMap, o: requestHeaderMap}, true
}

func responseHeaders(r *Record) (Value, bool) {
	if r.Protocol == "" || r.ResponseCode == 0 {
		return Value{}, false
	}
	return Value{k: kMap, o: responseHeaderMap}, true
}

func responseTrailers(r *Record) (Value, bool) {
	if r.Protocol == "" || r.ResponseCode == 0 {
		return Value{}, false
	}
	return Value{k: kMap, o: responseTrailerMap}, true
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

func (m *headerMap) find(key Value) (Value, bool) {
	if key.k != kString {
		return Value{}, false
	}
	name := key.s
	if strings.HasPrefix(name, ":") {
		v, ok := m.pseudo(strings.ToLower(name))
		return stringVal(v), ok
	}
	vs := values(m.header(), name)
	if len(vs) == 0 {
		return Value{}, false
	}
	return stringVal(joinValues(vs)), true
}

func (m *headerMap) names() []string {
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

func (m *headerMap) keys() []Value { return stringKeys(m.names()) }
func (m *headerMap) size() int     { return len(m.names()) }

// metadataMap is metadata.filter_metadata: the dynamic metadata by filter namespace.
type metadataMap map[string]*structpb.Struct

func (m metadataMap) find(key Value) (Value, bool) {
	if key.k != kString {
		return Value{}, false
	}
	s, ok := m[key.s]
	if !ok {
		return Value{}, false
	}
	return mapVal((*structMap)(s)), true
}

func (m metadataMap) keys() []Value {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return stringKeys(ks)
}

func (m metadataMap) size() int { return len(m) }

// structMap is a protobuf Struct (JSON object) as a CEL map.
type structMap structpb.Struct

func (m *structMap) find(key Value) (Value, bool) {
	if key.k != kString {
		return Value{}, false
	}
	v, ok := (*structpb.Struct)(m).GetFields()[key.s]
	if !ok {
		return Value{}, false
	}
	return fromProtoValue(v), true
}

func (m *structMap) keys() []Value {
	f := (*structpb.Struct)(m).GetFields()
	ks := make([]string, 0, len(f))
	for k := range f {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return stringKeys(ks)
}

func (m *structMap) size() int { return len((*structpb.Struct)(m).GetFields()) }

// fromProtoValue converts a JSON value as CEL does: numbers are doubles.
func fromProtoValue(v *structpb.Value) Value {
	switch k := v.GetKind().(type) {
	case *structpb.Value_NumberValue:
		return doubleVal(k.NumberValue)
	case *structpb.Value_StringValue:
		return stringVal(k.StringValue)
	case *structpb.Value_BoolValue:
		return boolVal(k.BoolValue)
	case *structpb.Value_StructValue:
		return mapVal((*structMap)(k.StructValue))
	case *structpb.Value_ListValue:
		vs := k.ListValue.GetValues()
		l := make([]Value, len(vs))
		for i, e := range vs {
			l[i] = fromProtoValue(e)
		}
		return listVal(l)
	}
	return nullVal()
}
