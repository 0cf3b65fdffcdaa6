package attributes

// The reference for the differential tests: cel-go (a test-only dependency) with the environment
// strait-proxy used before it had its own evaluator, reading the same Records through an adapter
// over this package's attribute maps.

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/cel-go/interpreter"
)

var refEnv = sync.OnceValues(func() (*cel.Env, error) {
	opts := []cel.EnvOption{
		cel.CrossTypeNumericComparisons(true),
		cel.ParserExpressionSizeLimit(MaxExpressionLength),
		cel.ParserRecursionLimit(MaxNesting),
		cel.ExpressionNestingDepthLimit(MaxNesting),
		cel.ExpressionNodeLimit(MaxNodes),
		cel.RegexProgramSizeLimit(MaxRegexProgramSize),
	}
	for _, n := range groupOrder {
		opts = append(opts, cel.Variable(n, cel.MapType(cel.StringType, cel.DynType)))
	}
	for _, n := range unsupportedTop {
		opts = append(opts, cel.Variable(n, cel.DynType))
	}
	return cel.NewEnv(opts...)
})

// refProgram compiles expr with cel-go as strait-proxy did (attribute check included).
func refProgram(expr string) (cel.Program, error) {
	e, err := refEnv()
	if err != nil {
		return nil, err
	}
	checked, iss := e.Compile(expr)
	if iss.Err() != nil {
		return nil, iss.Err()
	}
	return e.Program(checked, cel.CostLimit(CostLimit), cel.EvalOptions(cel.OptOptimize))
}

// refEval evaluates with cel-go against r.
func refEval(p cel.Program, r *Record) (ref.Val, error) {
	a := getActivation(r)
	defer a.release()
	v, _, err := p.Eval(refActivation{a})
	return v, err
}

type refActivation struct{ a *activation }

func (r refActivation) ResolveName(name string) (any, bool) {
	for i, n := range groupOrder {
		if n == name {
			return &refMap{m: &r.a.groups[i]}, true
		}
	}
	return nil, false
}

func (r refActivation) Parent() interpreter.Activation { return nil }

// toRef converts one of this package's values (an attribute's) to cel-go's.
func toRef(v Value) ref.Val {
	switch v.k {
	case kNull:
		return types.NullValue
	case kBool:
		return types.Bool(v.bool())
	case kInt:
		return types.Int(v.i)
	case kUint:
		return types.Uint(v.uint())
	case kDouble:
		return types.Double(v.f)
	case kString:
		return types.String(v.s)
	case kBytes:
		return types.Bytes(v.s)
	case kDuration:
		return types.Duration{Duration: time.Duration(v.i)}
	case kTimestamp:
		return types.Timestamp{Time: v.time()}
	case kList:
		var l []ref.Val
		for _, e := range v.list() {
			l = append(l, toRef(e))
		}
		return types.NewRefValList(types.DefaultTypeAdapter, l)
	case kMap:
		return &refMap{m: v.mapper()}
	}
	return types.NewErr("%v", v.o)
}

// refMap is a mapper as a cel-go map (equal only to itself, as strait-proxy's maps were).
type refMap struct{ m mapper }

var _ traits.Mapper = (*refMap)(nil)

func fromRefKey(k ref.Val) (Value, bool) {
	switch x := k.(type) {
	case types.String:
		return stringVal(string(x)), true
	case types.Int:
		return intVal(int64(x)), true
	case types.Uint:
		return uintVal(uint64(x)), true
	case types.Bool:
		return boolVal(bool(x)), true
	}
	return Value{}, false
}

func (m *refMap) ConvertToNative(reflect.Type) (any, error) { return nil, errors.New("no") }
func (m *refMap) ConvertToType(t ref.Type) ref.Val {
	if t == types.TypeType {
		return types.MapType
	}
	if t == types.MapType {
		return m
	}
	return types.NewErr("type conversion error from map to %s", t.TypeName())
}
func (m *refMap) Equal(o ref.Val) ref.Val { x, ok := o.(*refMap); return types.Bool(ok && x.m == m.m) }
func (m *refMap) Type() ref.Type          { return types.MapType }
func (m *refMap) Value() any              { return m.m }
func (m *refMap) Contains(k ref.Val) ref.Val {
	_, ok := m.Find(k)
	return types.Bool(ok)
}
func (m *refMap) Get(k ref.Val) ref.Val {
	v, ok := m.Find(k)
	if !ok {
		return types.NewErr("no such key: %v", k)
	}
	return v
}
func (m *refMap) Find(k ref.Val) (ref.Val, bool) {
	key, ok := fromRefKey(k)
	if !ok {
		return nil, false
	}
	v, ok := m.m.find(key)
	if !ok {
		return nil, false
	}
	return toRef(v), true
}
func (m *refMap) Iterator() traits.Iterator {
	var l []ref.Val
	for _, k := range m.m.keys() {
		l = append(l, toRef(k))
	}
	return types.NewRefValList(types.DefaultTypeAdapter, l).(traits.Lister).Iterator()
}
func (m *refMap) Size() ref.Val { return types.Int(m.m.size()) }

// canon renders a result for comparison: "error" for any error, else the type and value.
func canonOurs(v Value, err error) string {
	if err != nil {
		return "error"
	}
	return canonValue(v)
}

func canonValue(v Value) string {
	switch v.k {
	case kDouble:
		return "double:" + canonFloat(v.f)
	case kString:
		return "string:" + strconv.Quote(v.s)
	case kBytes:
		return "bytes:" + strconv.Quote(v.s)
	case kTimestamp:
		return "timestamp:" + v.time().Format(time.RFC3339Nano)
	case kList:
		var parts []string
		for _, e := range v.list() {
			parts = append(parts, canonValue(e))
		}
		return "list[" + strings.Join(parts, ",") + "]"
	case kMap:
		var parts []string
		m := v.mapper()
		for _, k := range m.keys() {
			e, _ := m.find(k)
			parts = append(parts, canonValue(k)+"="+canonValue(e))
		}
		sort.Strings(parts)
		return "map{" + strings.Join(parts, ",") + "}"
	case kError:
		return "error"
	}
	return v.k.String() + ":" + v.String()
}

func canonFloat(f float64) string {
	if math.IsNaN(f) {
		return "NaN"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

func canonRef(v ref.Val, err error) string {
	if err != nil || types.IsError(v) {
		return "error"
	}
	switch x := v.(type) {
	case types.Null:
		return "null_type:null"
	case types.Bool:
		return "bool:" + strconv.FormatBool(bool(x))
	case types.Int:
		return "int:" + strconv.FormatInt(int64(x), 10)
	case types.Uint:
		return "uint:" + strconv.FormatUint(uint64(x), 10)
	case types.Double:
		return "double:" + canonFloat(float64(x))
	case types.String:
		return "string:" + strconv.Quote(string(x))
	case types.Bytes:
		return "bytes:" + strconv.Quote(string(x))
	case types.Duration:
		return "google.protobuf.Duration:" + formatDuration(int64(x.Duration))
	case types.Timestamp:
		return "timestamp:" + x.Time.UTC().Format(time.RFC3339Nano)
	case traits.Mapper:
		var parts []string
		for it := x.Iterator(); it.HasNext() == types.True; {
			k := it.Next()
			parts = append(parts, canonRef(k, nil)+"="+canonRef(x.Get(k), nil))
		}
		sort.Strings(parts)
		return "map{" + strings.Join(parts, ",") + "}"
	case traits.Lister:
		var parts []string
		for it := x.Iterator(); it.HasNext() == types.True; {
			parts = append(parts, canonRef(it.Next(), nil))
		}
		return "list[" + strings.Join(parts, ",") + "]"
	}
	return fmt.Sprintf("other:%T:%v", v, v)
}
