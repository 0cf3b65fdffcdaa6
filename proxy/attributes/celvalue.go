package attributes

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// kind is the runtime type of a CEL value.
type kind uint8

const (
	kInvalid kind = iota
	kNull
	kBool
	kInt
	kUint
	kDouble
	kString
	kBytes
	kList
	kMap
	kDuration
	kTimestamp
	kError
)

var kindNames = [...]string{kInvalid: "invalid", kNull: "null_type", kBool: "bool", kInt: "int", kUint: "uint",
	kDouble: "double", kString: "string", kBytes: "bytes", kList: "list", kMap: "map",
	kDuration: "google.protobuf.Duration", kTimestamp: "google.protobuf.Timestamp", kError: "error"}

func (k kind) String() string { return kindNames[k] }

// Value is a CEL value: the result of an evaluation. Scalars are held inline (no allocation);
// lists, maps and errors through o.
type Value struct {
	k kind
	n int32   // timestamp: nanoseconds within the second
	i int64   // bool (0/1), int, uint (bits), duration (ns), timestamp (Unix seconds)
	f float64 // double
	s string  // string, bytes
	o any     // list: []Value; map: mapper; error: error
}

// mapper is a CEL map: a literal one, or one of the attribute maps resolved on demand.
type mapper interface {
	// find looks key up; a key of a type the map cannot hold is simply absent.
	find(key Value) (Value, bool)
	// size is the number of entries.
	size() int
	// keys lists the keys, in a stable order.
	keys() []Value
}

func nullVal() Value { return Value{k: kNull} }
func boolVal(b bool) Value {
	v := Value{k: kBool}
	if b {
		v.i = 1
	}
	return v
}
func intVal(i int64) Value      { return Value{k: kInt, i: i} }
func uintVal(u uint64) Value    { return Value{k: kUint, i: int64(u)} }
func doubleVal(f float64) Value { return Value{k: kDouble, f: f} }
func stringVal(s string) Value  { return Value{k: kString, s: s} }
func bytesVal(s string) Value   { return Value{k: kBytes, s: s} }
func listVal(l []Value) Value   { return Value{k: kList, o: l} }
func mapVal(m mapper) Value     { return Value{k: kMap, o: m} }
func durationVal(d int64) Value { return Value{k: kDuration, i: d} }
func errVal(err error) Value    { return Value{k: kError, o: err} }
func errorf(f string, a ...any) Value {
	return Value{k: kError, o: fmt.Errorf(f, a...)}
}

// Timestamps are valid from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
const (
	minTimestamp = -62135596800
	maxTimestamp = 253402300799
)

func timestampVal(t time.Time) Value {
	s := t.Unix()
	if s < minTimestamp || s > maxTimestamp {
		return errorf("timestamp out of range")
	}
	return Value{k: kTimestamp, i: s, n: int32(t.Nanosecond())}
}

func (v Value) uint() uint64   { return uint64(v.i) }
func (v Value) bool() bool     { return v.i != 0 }
func (v Value) list() []Value  { return v.o.([]Value) }
func (v Value) mapper() mapper { return v.o.(mapper) }
func (v Value) err() error {
	if v.o == errNoSuchKey {
		return fmt.Errorf("%w: %s", errNoSuchKey, strconv.Quote(v.s))
	}
	return v.o.(error)
}
func (v Value) isErr() bool      { return v.k == kError }
func (v Value) time() time.Time  { return time.Unix(v.i, int64(v.n)).UTC() }
func (v Value) isTrue() bool     { return v.k == kBool && v.i != 0 }
func (v Value) isFalse() bool    { return v.k == kBool && v.i == 0 }
func (v Value) duration() int64  { return v.i }
func (v Value) typeName() string { return v.k.String() }
func noOverload(fn string, args ...Value) Value {
	ts := make([]string, len(args))
	for i, a := range args {
		ts[i] = a.typeName()
	}
	return errorf("no such overload: %s(%s)", fn, strings.Join(ts, ", "))
}

// Kind names the value's CEL type ("int", "string", "map", ...).
func (v Value) Kind() string { return v.k.String() }

// Bool returns the value as a bool; false when it is not a bool.
func (v Value) Bool() (b, ok bool) { return v.isTrue(), v.k == kBool }

// Native returns the value as a Go value: nil (null), bool, int64, uint64, float64, string,
// []byte, []any, map[any]any, time.Duration or time.Time; an error value is returned as error.
func (v Value) Native() any {
	switch v.k {
	case kNull:
		return nil
	case kBool:
		return v.bool()
	case kInt:
		return v.i
	case kUint:
		return v.uint()
	case kDouble:
		return v.f
	case kString:
		return v.s
	case kBytes:
		return []byte(v.s)
	case kList:
		l := v.list()
		out := make([]any, len(l))
		for i, e := range l {
			out[i] = e.Native()
		}
		return out
	case kMap:
		m := v.mapper()
		out := map[any]any{}
		for _, k := range m.keys() {
			e, _ := m.find(k)
			out[k.Native()] = e.Native()
		}
		return out
	case kDuration:
		return time.Duration(v.i)
	case kTimestamp:
		return v.time()
	case kError:
		return v.err()
	}
	return nil
}

// String renders the value for diagnostics.
func (v Value) String() string {
	if s, ok := toText(v); ok {
		return s
	}
	switch v.k {
	case kNull:
		return "null"
	case kList:
		var b strings.Builder
		b.WriteByte('[')
		for i, e := range v.list() {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(e.String())
		}
		return b.String() + "]"
	case kMap:
		var b strings.Builder
		b.WriteByte('{')
		m := v.mapper()
		for i, k := range m.keys() {
			if i > 0 {
				b.WriteString(", ")
			}
			e, _ := m.find(k)
			b.WriteString(k.String() + ": " + e.String())
		}
		return b.String() + "}"
	case kError:
		return "error: " + v.err().Error()
	}
	return v.k.String()
}

// toText is CEL's string() conversion.
func toText(v Value) (string, bool) {
	switch v.k {
	case kString:
		return v.s, true
	case kBool:
		return strconv.FormatBool(v.bool()), true
	case kInt:
		return strconv.FormatInt(v.i, 10), true
	case kUint:
		return strconv.FormatUint(v.uint(), 10), true
	case kDouble:
		return strconv.FormatFloat(v.f, 'g', -1, 64), true
	case kBytes:
		if !utf8.ValidString(v.s) {
			return "", false
		}
		return v.s, true
	case kDuration:
		return formatDuration(v.i), true
	case kTimestamp:
		return v.time().Format(time.RFC3339Nano), true
	}
	return "", false
}

// formatDuration renders a duration as CEL does: seconds with a fraction, and "s".
func formatDuration(ns int64) string {
	return strconv.FormatFloat(time.Duration(ns).Seconds(), 'f', -1, 64) + "s"
}

// equal is CEL's heterogeneous equality: values of different types are unequal, except numbers,
// which compare by value across int, uint and double. Neither operand is an error.
func equal(a, b Value) bool {
	if isNumber(a.k) && isNumber(b.k) {
		c, ok := compareNumbers(a, b)
		return ok && c == 0
	}
	if a.k != b.k {
		return false
	}
	switch a.k {
	case kNull:
		return true
	case kBool, kDuration:
		return a.i == b.i
	case kTimestamp:
		return a.i == b.i && a.n == b.n
	case kString, kBytes:
		return a.s == b.s
	case kList:
		x, y := a.list(), b.list()
		if len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equal(x[i], y[i]) {
				return false
			}
		}
		return true
	case kMap:
		x, y := a.mapper(), b.mapper()
		if x.size() != y.size() {
			return false
		}
		for _, k := range x.keys() {
			xv, _ := x.find(k)
			yv, ok := y.find(k)
			if !ok || xv.isErr() || yv.isErr() || !equal(xv, yv) {
				return false
			}
		}
		return true
	}
	return false
}

func isNumber(k kind) bool { return k == kInt || k == kUint || k == kDouble }

// compareNumbers orders two numbers of any numeric types; false when either is NaN.
func compareNumbers(a, b Value) (int, bool) {
	switch {
	case a.k == kDouble || b.k == kDouble:
		x, y := asFloat(a), asFloat(b)
		if math.IsNaN(x) || math.IsNaN(y) {
			return 0, false
		}
		// An int or uint beyond 2^53 is compared exactly against an integral double.
		if a.k != kDouble {
			return -compareIntFloat(b.f, a), true
		}
		if b.k != kDouble {
			return compareIntFloat(a.f, b), true
		}
		return cmp3(x < y, x > y), true
	case a.k == kInt && b.k == kInt:
		return cmp3(a.i < b.i, a.i > b.i), true
	case a.k == kUint && b.k == kUint:
		return cmp3(a.uint() < b.uint(), a.uint() > b.uint()), true
	case a.k == kInt: // b uint
		if a.i < 0 {
			return -1, true
		}
		return cmp3(uint64(a.i) < b.uint(), uint64(a.i) > b.uint()), true
	default: // a uint, b int
		if b.i < 0 {
			return 1, true
		}
		return cmp3(a.uint() < uint64(b.i), a.uint() > uint64(b.i)), true
	}
}

// compareIntFloat compares the double f with the int or uint n.
func compareIntFloat(f float64, n Value) int {
	if n.k == kInt {
		if f < -0x1p63 {
			return -1
		}
		if f >= 0x1p63 {
			return 1
		}
		t := math.Trunc(f)
		ti := int64(t)
		if ti != n.i {
			return cmp3(ti < n.i, ti > n.i)
		}
		return cmp3(f < t, f > t)
	}
	if f < 0 {
		return -1
	}
	if f >= 0x1p64 {
		return 1
	}
	t := math.Trunc(f)
	tu := uint64(t)
	if tu != n.uint() {
		return cmp3(tu < n.uint(), tu > n.uint())
	}
	return cmp3(f < t, f > t)
}

func asFloat(v Value) float64 {
	switch v.k {
	case kInt:
		return float64(v.i)
	case kUint:
		return float64(v.uint())
	}
	return v.f
}

func cmp3(less, greater bool) int {
	if less {
		return -1
	}
	if greater {
		return 1
	}
	return 0
}

// compare orders a and b for <, <=, >, >=: numbers across types, strings, bytes, bools,
// durations and timestamps. ok is false for operands that have no order (an error value is then
// returned by the caller).
func compare(a, b Value) (int, bool) {
	if isNumber(a.k) && isNumber(b.k) {
		return compareNumbers(a, b)
	}
	if a.k != b.k {
		return 0, false
	}
	switch a.k {
	case kBool, kDuration:
		return cmp3(a.i < b.i, a.i > b.i), true
	case kString, kBytes:
		return strings.Compare(a.s, b.s), true
	case kTimestamp:
		if a.i != b.i {
			return cmp3(a.i < b.i, a.i > b.i), true
		}
		return cmp3(a.n < b.n, a.n > b.n), true
	}
	return 0, false
}

// litMap is a map built by a map literal (or converted from protobuf data): keys in insertion
// order.
type litMap struct {
	ks, vs []Value
}

func (m *litMap) find(key Value) (Value, bool) {
	for i, k := range m.ks {
		if keyEqual(k, key) {
			return m.vs[i], true
		}
	}
	return Value{}, false
}

func (m *litMap) size() int     { return len(m.ks) }
func (m *litMap) keys() []Value { return m.ks }

// keyEqual compares map keys (bool, int, uint, string), numbers across types.
func keyEqual(k, key Value) bool {
	if k.k == kString && key.k == kString {
		return k.s == key.s
	}
	return equal(k, key)
}

var errNoSuchKey = errors.New("no such key")

// noSuchKey is the error of a lookup of an absent key. It allocates nothing (an absent header is
// the common case of an access log filter): the message is built when the error is read.
func noSuchKey(k Value) Value {
	if k.k == kString {
		return Value{k: kError, o: errNoSuchKey, s: k.s}
	}
	return errVal(fmt.Errorf("%w: %s", errNoSuchKey, k.String()))
}

// validKey reports whether v may be a map key.
func validKey(v Value) bool {
	switch v.k {
	case kBool, kInt, kUint, kString:
		return true
	}
	return false
}
