package attributes

import (
	"errors"
	"fmt"
	"math"
)

// errCostLimit is the error of an evaluation that exceeded CostLimit.
var errCostLimit = fmt.Errorf("operation cancelled: actual cost limit exceeded (%d)", CostLimit)

// charge adds n units to the evaluation's cost; false once the limit is exceeded.
func (a *activation) charge(n int) bool {
	a.cost += n
	if a.cost > CostLimit {
		a.over = true
	}
	return !a.over
}

// chargeBytes charges for work over n bytes of strings (or elements of lists).
func (a *activation) chargeBytes(n int) bool { return a.charge(n / 16) }

// eval evaluates n. Errors are values (CEL's), so that && and || can absorb them.
func (a *activation) eval(n *node) Value {
	if !a.charge(1) {
		return errVal(errCostLimit)
	}
	switch n.op {
	case opLit:
		return n.val
	case opIdent:
		if n.slot >= 0 {
			return a.locals[n.slot]
		}
		return mapVal(&a.groups[n.attr])
	case opSelect, opHas:
		if n.afn != nil { // request.path and the like: no map in between
			v, ok := a.attribute(n.afn)
			if n.op == opHas {
				return boolVal(ok)
			}
			if !ok {
				return noSuchKey(stringVal(n.name))
			}
			return v
		}
		x := a.eval(n.args[0])
		if x.isErr() {
			return x
		}
		if x.k != kMap {
			return errorf("no such field '%s' on a value of type %s", n.name, x.typeName())
		}
		v, ok := x.mapper().find(stringVal(n.name))
		if n.op == opHas {
			return boolVal(ok)
		}
		if !ok {
			return noSuchKey(stringVal(n.name))
		}
		return v
	case opIndex:
		return a.index(a.eval(n.args[0]), a.eval(n.args[1]))
	case opAnd, opOr:
		return a.logic(n)
	case opNot:
		x := a.eval(n.args[0])
		if x.isErr() {
			return x
		}
		if x.k != kBool {
			return noOverload("!_", x)
		}
		return boolVal(!x.bool())
	case opNeg:
		x := a.eval(n.args[0])
		switch x.k {
		case kError:
			return x
		case kInt:
			if x.i == math.MinInt64 {
				return errorf("integer overflow")
			}
			return intVal(-x.i)
		case kDouble:
			return doubleVal(-x.f)
		}
		return noOverload("-_", x)
	case opCond:
		c := a.eval(n.args[0])
		if c.isErr() {
			return c
		}
		if c.k != kBool {
			return noOverload("_?_:_", c)
		}
		if c.bool() {
			return a.eval(n.args[1])
		}
		return a.eval(n.args[2])
	case opList:
		l := make([]Value, len(n.args))
		for i, e := range n.args {
			v := a.eval(e)
			if v.isErr() {
				return v
			}
			l[i] = v
		}
		return listVal(l)
	case opMap:
		m := &litMap{ks: make([]Value, 0, len(n.args)/2), vs: make([]Value, 0, len(n.args)/2)}
		for i := 0; i < len(n.args); i += 2 {
			k := a.eval(n.args[i])
			if k.isErr() {
				return k
			}
			v := a.eval(n.args[i+1])
			if v.isErr() {
				return v
			}
			if !validKey(k) {
				return errorf("unsupported key type: %s", k.typeName())
			}
			if _, dup := m.find(k); dup {
				return errorf("Failed with repeated key: %s", k.String())
			}
			m.ks, m.vs = append(m.ks, k), append(m.vs, v)
		}
		return mapVal(m)
	case opCompre:
		return a.compre(n)
	case opBinary:
		x := a.eval(n.args[0])
		if x.isErr() {
			return x
		}
		y := a.eval(n.args[1])
		if y.isErr() {
			return y
		}
		return n.fn(a, x, y)
	case opCall:
		var x, y Value
		if len(n.args) > 0 {
			if x = a.eval(n.args[0]); x.isErr() {
				return x
			}
		}
		if len(n.args) > 1 {
			if y = a.eval(n.args[1]); y.isErr() {
				return y
			}
		}
		if n.re != nil {
			if x.k != kString {
				return noOverload("matches", x, y)
			}
			if !a.chargeBytes(len(x.s) * 4) {
				return errVal(errCostLimit)
			}
			return boolVal(n.re.MatchString(x.s))
		}
		return n.fn(a, x, y)
	}
	return errorf("unknown expression")
}

// logic evaluates && and || with CEL's commutative semantics: the side that decides (false for
// &&, true for ||) wins over an error or a non-boolean on the other side.
func (a *activation) logic(n *node) Value {
	decides := n.op == opOr // the value that decides the result
	x := a.eval(n.args[0])
	if x.k == kBool && x.bool() == decides {
		return x
	}
	y := a.eval(n.args[1])
	if y.k == kBool && y.bool() == decides {
		return y
	}
	switch {
	case x.isErr():
		return x
	case y.isErr():
		return y
	case x.k == kBool && y.k == kBool:
		return boolVal(!decides)
	}
	name := "_&&_"
	if decides {
		name = "_||_"
	}
	return noOverload(name, x, y)
}

// index is x[i] on a list (int index, or uint or integral double) or a map.
func (a *activation) index(x, i Value) Value {
	if x.isErr() {
		return x
	}
	if i.isErr() {
		return i
	}
	switch x.k {
	case kList:
		l := x.list()
		var idx int64
		switch i.k {
		case kInt:
			idx = i.i
		case kUint:
			if i.uint() > math.MaxInt64 {
				return errorf("index out of bounds: %s", i.String())
			}
			idx = i.i
		case kDouble:
			if i.f != math.Trunc(i.f) || i.f < -0x1p63 || i.f >= 0x1p63 {
				return errorf("unsupported index value: %s", i.String())
			}
			idx = int64(i.f)
		default:
			return noOverload("_[_]", x, i)
		}
		if idx < 0 || idx >= int64(len(l)) {
			return errorf("index out of bounds: %d", idx)
		}
		return l[idx]
	case kMap:
		v, ok := x.mapper().find(i)
		if !ok {
			return noSuchKey(i)
		}
		return v
	}
	return noOverload("_[_]", x, i)
}

// errNotIterable is the error of a comprehension over a value that is neither a list nor a map.
var errNotIterable = errors.New("expression cannot be range of a comprehension (must be list or map)")

// compre evaluates a macro: all, exists, exists_one, map, filter.
func (a *activation) compre(n *node) Value {
	r := a.eval(n.args[0])
	if r.isErr() {
		return r
	}
	var items []Value
	switch r.k {
	case kList:
		items = r.list()
	case kMap:
		items = r.mapper().keys()
	default:
		return errVal(errNotIterable)
	}
	if !a.charge(len(items)) {
		return errVal(errCostLimit)
	}
	slot := n.slot
	if len(a.locals) <= slot {
		a.locals = append(a.locals, make([]Value, slot+1-len(a.locals))...)
	}
	saved := a.locals[slot]
	defer func() { a.locals[slot] = saved }()
	var (
		firstErr Value
		hasErr   bool
		count    int
		out      []Value
	)
	for _, it := range items {
		if a.over {
			return errVal(errCostLimit)
		}
		a.locals[slot] = it
		switch n.ck {
		case cAll, cExists:
			want := n.ck == cExists // the value that decides
			v := a.eval(n.args[1])
			if v.k == kBool && v.bool() == want {
				return v
			}
			if v.k != kBool && !hasErr {
				if v.isErr() {
					firstErr = v
				} else {
					firstErr = noOverload("_&&_", v)
				}
				hasErr = true
			}
		case cExistsOne:
			v := a.eval(n.args[1])
			if v.isErr() {
				return v
			}
			if v.k != kBool {
				return noOverload("_?_:_", v)
			}
			if v.bool() {
				count++
			}
		case cMap:
			v := a.eval(n.args[1])
			if v.isErr() {
				return v
			}
			out = append(out, v)
		case cFilter, cMapFilter:
			p := a.eval(n.args[1])
			if p.isErr() {
				return p
			}
			if p.k != kBool {
				return noOverload("_?_:_", p)
			}
			if !p.bool() {
				continue
			}
			v := it
			if n.ck == cMapFilter {
				if v = a.eval(n.args[2]); v.isErr() {
					return v
				}
			}
			out = append(out, v)
		}
	}
	if a.over {
		return errVal(errCostLimit)
	}
	switch n.ck {
	case cAll, cExists:
		if hasErr {
			return firstErr
		}
		return boolVal(n.ck == cAll)
	case cExistsOne:
		return boolVal(count == 1)
	}
	if out == nil {
		out = []Value{}
	}
	return listVal(out)
}
