package attributes

import (
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// fnImpl implements a function or operator of at most two arguments (the receiver first); the
// arguments are not errors.
type fnImpl func(a *activation, x, y Value) Value

// sig is one overload's static signature.
type sig struct {
	params []*celType
	result *celType
}

func s1(p, r *celType) sig    { return sig{[]*celType{p}, r} }
func s2(p, q, r *celType) sig { return sig{[]*celType{p, q}, r} }

// function is a CEL function strait-proxy implements.
type function struct {
	recv, global bool // the call styles it accepts
	sigs         []sig
	impl         fnImpl
}

var functions map[string]function

func init() {
	getter := func(name string, f func(t time.Time) int64, d func(ns int64) int64) function {
		sigs := []sig{s1(tyTimestamp, tyInt), s2(tyTimestamp, tyString, tyInt)}
		if d != nil {
			sigs = append(sigs, s1(tyDuration, tyInt))
		}
		return function{recv: true, sigs: sigs, impl: func(a *activation, x, y Value) Value {
			switch {
			case x.k == kDuration && d != nil && y.k == kInvalid:
				return intVal(d(x.i))
			case x.k == kTimestamp && (y.k == kInvalid || y.k == kString):
				t := x.time()
				if y.k == kString {
					loc, err := location(y.s)
					if err != nil {
						return errVal(err)
					}
					t = t.In(loc)
				}
				return intVal(f(t))
			}
			return noOverload(name, x, y)
		}}
	}
	strPred := func(name string, f func(s, t string) bool) function {
		return function{recv: true, sigs: []sig{s2(tyString, tyString, tyBool)}, impl: func(a *activation, x, y Value) Value {
			if x.k != kString || y.k != kString {
				return noOverload(name, x, y)
			}
			if !a.chargeBytes(len(x.s)) {
				return errVal(errCostLimit)
			}
			return boolVal(f(x.s, y.s))
		}}
	}
	functions = map[string]function{
		"size": {recv: true, global: true, sigs: []sig{s1(tyString, tyInt), s1(tyBytes, tyInt), s1(tyList, tyInt), s1(tyMap, tyInt)},
			impl: fnSize},
		"contains":   strPred("contains", strings.Contains),
		"startsWith": strPred("startsWith", strings.HasPrefix),
		"endsWith":   strPred("endsWith", strings.HasSuffix),
		"matches":    {recv: true, global: true, sigs: []sig{s2(tyString, tyString, tyBool)}, impl: fnMatches},
		"int": {global: true, sigs: []sig{s1(tyInt, tyInt), s1(tyUint, tyInt), s1(tyDouble, tyInt), s1(tyString, tyInt),
			s1(tyTimestamp, tyInt)}, impl: fnInt},
		"uint": {global: true, sigs: []sig{s1(tyInt, tyUint), s1(tyUint, tyUint), s1(tyDouble, tyUint), s1(tyString, tyUint)},
			impl: fnUint},
		"double": {global: true, sigs: []sig{s1(tyInt, tyDouble), s1(tyUint, tyDouble), s1(tyDouble, tyDouble), s1(tyString, tyDouble)},
			impl: fnDouble},
		"string": {global: true, sigs: []sig{s1(tyInt, tyString), s1(tyUint, tyString), s1(tyDouble, tyString),
			s1(tyBool, tyString), s1(tyString, tyString), s1(tyBytes, tyString), s1(tyTimestamp, tyString),
			s1(tyDuration, tyString)}, impl: fnString},
		"bytes":     {global: true, sigs: []sig{s1(tyBytes, tyBytes), s1(tyString, tyBytes)}, impl: fnBytes},
		"bool":      {global: true, sigs: []sig{s1(tyBool, tyBool), s1(tyString, tyBool)}, impl: fnBool},
		"duration":  {global: true, sigs: []sig{s1(tyString, tyDuration), s1(tyDuration, tyDuration)}, impl: fnDuration},
		"timestamp": {global: true, sigs: []sig{s1(tyString, tyTimestamp), s1(tyTimestamp, tyTimestamp), s1(tyInt, tyTimestamp)}, impl: fnTimestamp},
		"dyn":       {global: true, sigs: []sig{s1(tyDyn, tyDyn)}, impl: func(_ *activation, x, _ Value) Value { return x }},

		"getFullYear":   getter("getFullYear", func(t time.Time) int64 { return int64(t.Year()) }, nil),
		"getMonth":      getter("getMonth", func(t time.Time) int64 { return int64(t.Month()) - 1 }, nil),
		"getDayOfYear":  getter("getDayOfYear", func(t time.Time) int64 { return int64(t.YearDay()) - 1 }, nil),
		"getDayOfMonth": getter("getDayOfMonth", func(t time.Time) int64 { return int64(t.Day()) - 1 }, nil),
		"getDate":       getter("getDate", func(t time.Time) int64 { return int64(t.Day()) }, nil),
		"getDayOfWeek":  getter("getDayOfWeek", func(t time.Time) int64 { return int64(t.Weekday()) }, nil),
		"getHours": getter("getHours", func(t time.Time) int64 { return int64(t.Hour()) },
			func(ns int64) int64 { return ns / int64(time.Hour) }),
		"getMinutes": getter("getMinutes", func(t time.Time) int64 { return int64(t.Minute()) },
			func(ns int64) int64 { return ns / int64(time.Minute) }),
		"getSeconds": getter("getSeconds", func(t time.Time) int64 { return int64(t.Second()) },
			func(ns int64) int64 { return ns / int64(time.Second) }),
		"getMilliseconds": getter("getMilliseconds", func(t time.Time) int64 { return int64(t.Nanosecond() / 1e6) },
			func(ns int64) int64 { return ns / int64(time.Millisecond) }),
	}
}

// location resolves a getter's time zone: an IANA name or a fixed offset "+HH:MM" / "-HH:MM".
func location(tz string) (*time.Location, error) {
	if len(tz) == 6 && (tz[0] == '+' || tz[0] == '-') && tz[3] == ':' {
		h, err1 := strconv.Atoi(tz[1:3])
		m, err2 := strconv.Atoi(tz[4:6])
		if err1 == nil && err2 == nil && h <= 23 && m <= 59 {
			off := h*3600 + m*60
			if tz[0] == '-' {
				off = -off
			}
			return time.FixedZone(tz, off), nil
		}
	}
	if strings.ContainsAny(tz, ".\\") || strings.HasPrefix(tz, "/") || len(tz) > 64 {
		return nil, fmt.Errorf("invalid time zone %q", tz)
	}
	if loc, ok := zones.Load(tz); ok {
		return loc.(*time.Location), nil
	}
	loc, err := time.LoadLocation(tz) // reads the zone database: cached
	if err != nil {
		return nil, err
	}
	if zoneCount.Add(1) <= maxZones {
		zones.Store(tz, loc)
	}
	return loc, nil
}

// zones caches the time zones getters have loaded (at most maxZones: names come from
// configuration, or from request data through an expression).
var (
	zones     sync.Map
	zoneCount atomic.Int32
)

const maxZones = 64

// matchesConst marks a matches call whose pattern was compiled by check (evaluated by eval).
var matchesConst = fnMatches

func fnSize(a *activation, x, _ Value) Value {
	switch x.k {
	case kString:
		if !a.chargeBytes(len(x.s)) {
			return errVal(errCostLimit)
		}
		return intVal(int64(utf8.RuneCountInString(x.s)))
	case kBytes:
		return intVal(int64(len(x.s)))
	case kList:
		return intVal(int64(len(x.list())))
	case kMap:
		return intVal(int64(x.mapper().size()))
	}
	return noOverload("size", x)
}

func fnMatches(a *activation, x, y Value) Value {
	if x.k != kString || y.k != kString {
		return noOverload("matches", x, y)
	}
	if !a.chargeBytes(len(x.s)*4 + len(y.s)*16) {
		return errVal(errCostLimit)
	}
	re, err := compileRegexp(y.s)
	if err != nil {
		return errVal(err)
	}
	return boolVal(re.MatchString(x.s))
}

func fnInt(_ *activation, x, _ Value) Value {
	switch x.k {
	case kInt:
		return x
	case kUint:
		if x.uint() > math.MaxInt64 {
			return errorf("int overflow")
		}
		return intVal(x.i)
	case kDouble:
		if math.IsNaN(x.f) || x.f <= -0x1p63 || x.f >= 0x1p63 {
			return errorf("double out of int range")
		}
		return intVal(int64(x.f))
	case kString:
		i, err := strconv.ParseInt(x.s, 10, 64)
		if err != nil {
			return errorf("cannot convert %q to int", x.s)
		}
		return intVal(i)
	case kTimestamp:
		return intVal(x.i)
	}
	return noOverload("int", x)
}

func fnUint(_ *activation, x, _ Value) Value {
	switch x.k {
	case kUint:
		return x
	case kInt:
		if x.i < 0 {
			return errorf("uint overflow")
		}
		return uintVal(uint64(x.i))
	case kDouble:
		if math.IsNaN(x.f) || x.f < 0 || x.f >= 0x1p64 {
			return errorf("double out of uint range")
		}
		return uintVal(uint64(x.f))
	case kString:
		u, err := strconv.ParseUint(x.s, 10, 64)
		if err != nil {
			return errorf("cannot convert %q to uint", x.s)
		}
		return uintVal(u)
	}
	return noOverload("uint", x)
}

func fnDouble(_ *activation, x, _ Value) Value {
	switch x.k {
	case kDouble:
		return x
	case kInt, kUint:
		return doubleVal(asFloat(x))
	case kString:
		f, err := strconv.ParseFloat(x.s, 64)
		if err != nil { // out of range included
			return errorf("cannot convert %q to double", x.s)
		}
		return doubleVal(f)
	}
	return noOverload("double", x)
}

func fnString(_ *activation, x, _ Value) Value {
	if s, ok := toText(x); ok {
		return stringVal(s)
	}
	if x.k == kBytes {
		return errorf("invalid UTF-8 in bytes, cannot convert to string")
	}
	return noOverload("string", x)
}

func fnBytes(_ *activation, x, _ Value) Value {
	switch x.k {
	case kBytes:
		return x
	case kString:
		return bytesVal(x.s)
	}
	return noOverload("bytes", x)
}

func fnBool(_ *activation, x, _ Value) Value {
	switch x.k {
	case kBool:
		return x
	case kString:
		switch x.s {
		case "1", "t", "true", "TRUE", "True":
			return boolVal(true)
		case "0", "f", "false", "FALSE", "False":
			return boolVal(false)
		}
		return errorf("type conversion error from 'string' to 'bool'")
	}
	return noOverload("bool", x)
}

func fnDuration(_ *activation, x, _ Value) Value {
	switch x.k {
	case kDuration:
		return x
	case kString:
		d, err := time.ParseDuration(x.s)
		if err != nil {
			return errorf("cannot parse duration %q", x.s)
		}
		return durationVal(int64(d))
	}
	return noOverload("duration", x)
}

func fnTimestamp(_ *activation, x, _ Value) Value {
	switch x.k {
	case kTimestamp:
		return x
	case kInt:
		return timestampVal(time.Unix(x.i, 0))
	case kString:
		t, err := time.Parse(time.RFC3339, x.s)
		if err != nil {
			return errorf("cannot parse timestamp %q", x.s)
		}
		return timestampVal(t)
	}
	return noOverload("timestamp", x)
}

// operatorSigs are the static signatures of the arithmetic and ordering operators.
var operatorSigs = func() map[string][]sig {
	num := []*celType{tyInt, tyUint, tyDouble}
	var order []sig
	for _, a := range num {
		for _, b := range num {
			order = append(order, s2(a, b, tyBool))
		}
	}
	for _, t := range []*celType{tyString, tyBytes, tyBool, tyDuration, tyTimestamp} {
		order = append(order, s2(t, t, tyBool))
	}
	arith := []sig{s2(tyInt, tyInt, tyInt), s2(tyUint, tyUint, tyUint), s2(tyDouble, tyDouble, tyDouble)}
	return map[string][]sig{
		"+": append(append([]sig{}, arith...), s2(tyString, tyString, tyString), s2(tyBytes, tyBytes, tyBytes),
			s2(tyList, tyList, tyList), s2(tyDuration, tyDuration, tyDuration),
			s2(tyTimestamp, tyDuration, tyTimestamp), s2(tyDuration, tyTimestamp, tyTimestamp)),
		"-": append(append([]sig{}, arith...), s2(tyDuration, tyDuration, tyDuration),
			s2(tyTimestamp, tyTimestamp, tyDuration), s2(tyTimestamp, tyDuration, tyTimestamp)),
		"*": arith, "/": arith,
		"%": {s2(tyInt, tyInt, tyInt), s2(tyUint, tyUint, tyUint)},
		"<": order, "<=": order, ">": order, ">=": order,
	}
}()

// binaryImpls are the binary operators.
var binaryImpls = map[string]fnImpl{
	"+": opAdd, "-": opSub, "*": opMul, "/": opDiv, "%": opMod,
	"==": func(a *activation, x, y Value) Value { return eq(a, x, y) },
	"!=": func(a *activation, x, y Value) Value {
		v := eq(a, x, y)
		if v.isErr() {
			return v
		}
		return boolVal(!v.bool())
	},
	"<":  ordering("_<_", func(c int) bool { return c < 0 }),
	"<=": ordering("_<=_", func(c int) bool { return c <= 0 }),
	">":  ordering("_>_", func(c int) bool { return c > 0 }),
	">=": ordering("_>=_", func(c int) bool { return c >= 0 }),
	"in": opIn,
}

func eq(a *activation, x, y Value) Value {
	if x.k == kString && y.k == kString && !a.chargeBytes(min(len(x.s), len(y.s))) {
		return errVal(errCostLimit)
	}
	if (x.k == kList || x.k == kMap) && !a.charge(sizeOf(x)) {
		return errVal(errCostLimit)
	}
	return boolVal(equal(x, y))
}

func sizeOf(v Value) int {
	switch v.k {
	case kList:
		return len(v.list())
	case kMap:
		return v.mapper().size()
	}
	return 1
}

func ordering(name string, f func(int) bool) fnImpl {
	return func(a *activation, x, y Value) Value {
		if isNumber(x.k) && isNumber(y.k) {
			c, ok := compareNumbers(x, y)
			return boolVal(ok && f(c))
		}
		c, ok := compare(x, y)
		if !ok {
			return noOverload(name, x, y)
		}
		return boolVal(f(c))
	}
}

func opIn(a *activation, x, y Value) Value {
	switch y.k {
	case kList:
		l := y.list()
		if !a.charge(len(l)) {
			return errVal(errCostLimit)
		}
		for _, e := range l {
			if equal(x, e) {
				return boolVal(true)
			}
		}
		return boolVal(false)
	case kMap:
		_, ok := y.mapper().find(x)
		return boolVal(ok)
	}
	return noOverload("@in", x, y)
}

var errOverflow = errorf("integer overflow")

func opAdd(a *activation, x, y Value) Value {
	switch {
	case x.k == kInt && y.k == kInt:
		s := x.i + y.i
		if (s > x.i) != (y.i > 0) {
			return errOverflow
		}
		return intVal(s)
	case x.k == kUint && y.k == kUint:
		s, c := bits.Add64(x.uint(), y.uint(), 0)
		if c != 0 {
			return errOverflow
		}
		return uintVal(s)
	case x.k == kDouble && y.k == kDouble:
		return doubleVal(x.f + y.f)
	case x.k == kString && y.k == kString, x.k == kBytes && y.k == kBytes:
		if !a.chargeBytes(len(x.s) + len(y.s)) {
			return errVal(errCostLimit)
		}
		return Value{k: x.k, s: x.s + y.s}
	case x.k == kList && y.k == kList:
		l, m := x.list(), y.list()
		if !a.charge(len(l) + len(m)) {
			return errVal(errCostLimit)
		}
		if len(l) == 0 {
			return y
		}
		if len(m) == 0 {
			return x
		}
		return listVal(append(append(make([]Value, 0, len(l)+len(m)), l...), m...))
	case x.k == kDuration && y.k == kDuration:
		s := x.i + y.i
		if (s > x.i) != (y.i > 0) {
			return errOverflow
		}
		return durationVal(s)
	case x.k == kTimestamp && y.k == kDuration:
		return addDuration(x, y.i)
	case x.k == kDuration && y.k == kTimestamp:
		return addDuration(y, x.i)
	}
	return noOverload("_+_", x, y)
}

// addDuration adds ns nanoseconds to the timestamp t, within the timestamp range.
func addDuration(t Value, ns int64) Value {
	sec := t.i + ns/1e9
	nano := int64(t.n) + ns%1e9
	if nano < 0 {
		sec--
		nano += 1e9
	} else if nano >= 1e9 {
		sec++
		nano -= 1e9
	}
	if sec < minTimestamp || sec > maxTimestamp {
		return errorf("timestamp overflow")
	}
	return Value{k: kTimestamp, i: sec, n: int32(nano)}
}

func opSub(a *activation, x, y Value) Value {
	switch {
	case x.k == kInt && y.k == kInt:
		s := x.i - y.i
		if (s < x.i) != (y.i > 0) {
			return errOverflow
		}
		return intVal(s)
	case x.k == kUint && y.k == kUint:
		s, b := bits.Sub64(x.uint(), y.uint(), 0)
		if b != 0 {
			return errOverflow
		}
		return uintVal(s)
	case x.k == kDouble && y.k == kDouble:
		return doubleVal(x.f - y.f)
	case x.k == kDuration && y.k == kDuration:
		s := x.i - y.i
		if (s < x.i) != (y.i > 0) {
			return errOverflow
		}
		return durationVal(s)
	case x.k == kTimestamp && y.k == kTimestamp:
		// Seconds apart fit an int64 of nanoseconds only within ±292 years.
		ds := x.i - y.i
		dn := int64(x.n) - int64(y.n)
		hi, lo := bits.Mul64(uint64(abs64(ds)), 1e9)
		if hi != 0 || lo > math.MaxInt64 {
			return errorf("duration out of range")
		}
		d := int64(lo)
		if ds < 0 {
			d = -d
		}
		s := d + dn
		if (s > d) != (dn > 0) && dn != 0 {
			return errorf("duration out of range")
		}
		return durationVal(s)
	case x.k == kTimestamp && y.k == kDuration:
		if y.i == math.MinInt64 {
			return errOverflow
		}
		return addDuration(x, -y.i)
	}
	return noOverload("_-_", x, y)
}

func abs64(i int64) int64 {
	if i < 0 {
		return -i
	}
	return i
}

func opMul(_ *activation, x, y Value) Value {
	switch {
	case x.k == kInt && y.k == kInt:
		if x.i == 0 || y.i == 0 {
			return intVal(0)
		}
		p := x.i * y.i
		if p/y.i != x.i || (x.i == -1 && y.i == math.MinInt64) || (y.i == -1 && x.i == math.MinInt64) {
			return errOverflow
		}
		return intVal(p)
	case x.k == kUint && y.k == kUint:
		hi, lo := bits.Mul64(x.uint(), y.uint())
		if hi != 0 {
			return errOverflow
		}
		return uintVal(lo)
	case x.k == kDouble && y.k == kDouble:
		return doubleVal(x.f * y.f)
	}
	return noOverload("_*_", x, y)
}

func opDiv(_ *activation, x, y Value) Value {
	switch {
	case x.k == kInt && y.k == kInt:
		if y.i == 0 {
			return errorf("division by zero")
		}
		if x.i == math.MinInt64 && y.i == -1 {
			return errOverflow
		}
		return intVal(x.i / y.i)
	case x.k == kUint && y.k == kUint:
		if y.i == 0 {
			return errorf("division by zero")
		}
		return uintVal(x.uint() / y.uint())
	case x.k == kDouble && y.k == kDouble:
		return doubleVal(x.f / y.f)
	}
	return noOverload("_/_", x, y)
}

func opMod(_ *activation, x, y Value) Value {
	switch {
	case x.k == kInt && y.k == kInt:
		if y.i == 0 {
			return errorf("modulus by zero")
		}
		if x.i == math.MinInt64 && y.i == -1 {
			return errOverflow
		}
		return intVal(x.i % y.i)
	case x.k == kUint && y.k == kUint:
		if y.i == 0 {
			return errorf("modulus by zero")
		}
		return uintVal(x.uint() % y.uint())
	}
	return noOverload("_%_", x, y)
}
