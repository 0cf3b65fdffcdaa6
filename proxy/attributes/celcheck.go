package attributes

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"
)

// celType is a static type: a kind, with element (list) or key and value (map) types. kInvalid
// is dyn: known only when evaluated.
type celType struct {
	k         kind
	elem, key *celType // list(elem); map(key, elem)
}

var (
	tyDyn       = &celType{}
	tyNull      = &celType{k: kNull}
	tyBool      = &celType{k: kBool}
	tyInt       = &celType{k: kInt}
	tyUint      = &celType{k: kUint}
	tyDouble    = &celType{k: kDouble}
	tyString    = &celType{k: kString}
	tyBytes     = &celType{k: kBytes}
	tyDuration  = &celType{k: kDuration}
	tyTimestamp = &celType{k: kTimestamp}
	tyList      = &celType{k: kList, elem: tyDyn}
	tyMap       = &celType{k: kMap, key: tyDyn, elem: tyDyn}
	tyAttrMap   = &celType{k: kMap, key: tyString, elem: tyDyn}
)

func (t *celType) isDyn() bool { return t.k == kInvalid }

func (t *celType) String() string {
	switch t.k {
	case kInvalid:
		return "dyn"
	case kList:
		return "list(" + t.elem.String() + ")"
	case kMap:
		return "map(" + t.key.String() + ", " + t.elem.String() + ")"
	}
	return t.k.String()
}

// assignable reports whether a value of type b may be used where a is expected (dyn on either
// side matches anything).
func assignable(a, b *celType) bool {
	if a.isDyn() || b.isDyn() {
		return true
	}
	if a.k != b.k {
		return false
	}
	switch a.k {
	case kList:
		return assignable(a.elem, b.elem)
	case kMap:
		return assignable(a.key, b.key) && assignable(a.elem, b.elem)
	}
	return true
}

// join is the type of a value that is of type a or of type b: dyn unless they are the same.
func join(a, b *celType) *celType {
	if a.isDyn() || b.isDyn() || a.k != b.k {
		return tyDyn
	}
	switch a.k {
	case kList:
		return &celType{k: kList, elem: join(a.elem, b.elem)}
	case kMap:
		return &celType{k: kMap, key: join(a.key, b.key), elem: join(a.elem, b.elem)}
	}
	return a
}

// typeNames are CEL's type identifiers: type values, which strait-proxy does not support.
var typeNames = map[string]bool{"int": true, "uint": true, "double": true, "bool": true, "string": true,
	"bytes": true, "list": true, "map": true, "null_type": true, "type": true, "dyn": true}

// unsupportedFuncs are functions of CEL's standard library and common extensions that
// strait-proxy does not implement; naming them gets a clear refusal.
var unsupportedFuncs = map[string]bool{"type": true, "split": true, "join": true, "lowerAscii": true,
	"upperAscii": true, "replace": true, "trim": true, "substring": true, "indexOf": true,
	"lastIndexOf": true, "charAt": true, "format": true, "quote": true, "reverse": true,
	"optMap": true, "optFlatMap": true, "orValue": true, "hasValue": true, "value": true,
	"transformList": true, "transformMap": true, "transformMapEntry": true, "sort": true,
	"sortBy": true, "distinct": true, "flatten": true, "slice": true, "range": true,
	"ip": true, "cidr": true, "url": true, "isIP": true, "isURL": true, "greatest": true,
	"least": true, "sets": true, "base64": true, "encode": true, "decode": true, "getDayOfWeekName": true}

// checker resolves names, checks types and folds constants.
type checker struct {
	scopes   []string  // comprehension variables, innermost last
	varTypes []varType // their types
	maxVar   int       // deepest comprehension nesting seen
	scratch  *activation
	src      string // the expression, for error positions
}

// check type-checks root in place: names resolved to attributes or comprehension variables,
// functions to their implementations, constant regular expressions compiled, constant
// sub-expressions folded. It returns the number of comprehension variable slots evaluation needs.
func check(root *node, src string) (int, error) {
	c := &checker{scratch: &activation{}, src: src}
	if err := c.visit(root); err != nil {
		return 0, err
	}
	return c.maxVar, nil
}

// errorf is a check error at n's position ("line:col: ...").
func (c *checker) errorf(n *node, f string, a ...any) error {
	line, col := 1, 1
	for _, r := range c.src[:min(n.pos, len(c.src))] {
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return fmt.Errorf("%d:%d: "+f, append([]any{line, col}, a...)...)
}

func (c *checker) lookupVar(name string) int {
	for i := len(c.scopes) - 1; i >= 0; i-- {
		if c.scopes[i] == name {
			return i
		}
	}
	return -1
}

func (c *checker) visit(n *node) error {
	switch n.op {
	case opLit:
		n.typ = litType(n.val)
		return nil
	case opIdent:
		return c.ident(n)
	}
	if n.op != opCompre {
		for _, a := range n.args {
			if err := c.visit(a); err != nil {
				return err
			}
		}
	}
	switch n.op {
	case opSelect, opHas:
		return c.sel(n)
	case opIndex:
		return c.index(n)
	case opAnd, opOr:
		for _, a := range n.args {
			if !assignable(tyBool, a.typ) {
				return c.errorf(n, "found no matching overload for '%s' applied to '(%s, %s)'",
					map[op]string{opAnd: "_&&_", opOr: "_||_"}[n.op], n.args[0].typ, n.args[1].typ)
			}
		}
		n.typ = tyBool
	case opNot:
		if !assignable(tyBool, n.args[0].typ) {
			return c.errorf(n, "found no matching overload for '!_' applied to '(%s)'", n.args[0].typ)
		}
		n.typ = tyBool
	case opNeg:
		t := n.args[0].typ
		if !t.isDyn() && t.k != kInt && t.k != kDouble {
			return c.errorf(n, "found no matching overload for '-_' applied to '(%s)'", t)
		}
		n.typ = t
	case opCond:
		if !assignable(tyBool, n.args[0].typ) {
			return c.errorf(n, "found no matching overload for '_?_:_' applied to '(%s, %s, %s)'",
				n.args[0].typ, n.args[1].typ, n.args[2].typ)
		}
		if !assignable(n.args[1].typ, n.args[2].typ) {
			return c.errorf(n, "found no matching overload for '_?_:_' applied to '(%s, %s, %s)'",
				n.args[0].typ, n.args[1].typ, n.args[2].typ)
		}
		n.typ = join(n.args[1].typ, n.args[2].typ)
	case opList:
		t := (*celType)(nil)
		for _, a := range n.args {
			if t == nil {
				t = a.typ
			} else {
				t = join(t, a.typ)
			}
		}
		if t == nil {
			t = tyDyn
		}
		n.typ = &celType{k: kList, elem: t}
	case opMap:
		var kt, vt *celType
		for i := 0; i < len(n.args); i += 2 {
			k, v := n.args[i].typ, n.args[i+1].typ
			if !k.isDyn() && !validKeyKind(k.k) {
				return c.errorf(n, "unsupported map key type: %s", k)
			}
			if kt == nil {
				kt, vt = k, v
			} else {
				kt, vt = join(kt, k), join(vt, v)
			}
		}
		if kt == nil {
			kt, vt = tyDyn, tyDyn
		}
		n.typ = &celType{k: kMap, key: kt, elem: vt}
	case opCompre:
		return c.compre(n)
	case opBinary:
		if err := c.binary(n); err != nil {
			return err
		}
	case opCall:
		if err := c.call(n); err != nil {
			return err
		}
	}
	c.fold(n)
	return nil
}

func validKeyKind(k kind) bool { return k == kBool || k == kInt || k == kUint || k == kString }

func litType(v Value) *celType {
	switch v.k {
	case kNull:
		return tyNull
	case kBool:
		return tyBool
	case kInt:
		return tyInt
	case kUint:
		return tyUint
	case kDouble:
		return tyDouble
	case kString:
		return tyString
	case kBytes:
		return tyBytes
	case kDuration:
		return tyDuration
	case kTimestamp:
		return tyTimestamp
	case kList:
		return tyList
	case kMap:
		return tyMap
	}
	return tyDyn
}

func (c *checker) ident(n *node) error {
	n.slot = -1
	if !n.global {
		if s := c.lookupVar(n.name); s >= 0 {
			n.slot = s
			n.typ = tyDyn
			for i := len(c.varTypes) - 1; i >= 0; i-- {
				if c.varTypes[i].name == n.name {
					n.typ = c.varTypes[i].t
					break
				}
			}
			return nil
		}
	}
	for i, g := range groupOrder {
		if g == n.name {
			n.attr = i
			n.typ = tyAttrMap
			return nil
		}
	}
	for _, u := range unsupportedTop {
		if n.name == u {
			return c.errorf(n, "attribute %s: not supported by strait-proxy yet", n.name)
		}
	}
	if typeNames[n.name] {
		return c.errorf(n, "type value %s: CEL type values are not supported by strait-proxy", n.name)
	}
	return c.errorf(n, "undeclared reference to '%s'", n.name)
}

// sel checks a field selection (or has()): on a map or dyn; a selection of a top-level
// attribute must name a field strait-proxy provides.
func (c *checker) sel(n *node) error {
	x := n.args[0]
	if x.op == opIdent && x.slot < 0 {
		fields := groups[groupOrder[x.attr]]
		f, ok := fields[n.name]
		n.afn = f
		if !ok {
			return c.errorf(n, "attribute %s.%s: not supported by strait-proxy (it provides %s)",
				x.name, n.name, fieldList(x.name))
		}
	}
	t := x.typ
	switch {
	case t.isDyn():
		n.typ = tyDyn
	case t.k == kMap && assignable(t.key, tyString):
		n.typ = t.elem
	default:
		return c.errorf(n, "type '%s' does not support field selection", t)
	}
	if n.op == opHas {
		n.typ = tyBool
	}
	return nil
}

func (c *checker) index(n *node) error {
	// request["path"] is request.path: a field strait-proxy does not provide is refused alike.
	if g, k := n.args[0], n.args[1]; g.op == opIdent && g.slot < 0 && k.op == opLit && k.val.k == kString {
		if _, ok := groups[groupOrder[g.attr]][k.val.s]; !ok {
			return c.errorf(n, "attribute %s[%q]: not supported by strait-proxy (it provides %s)",
				g.name, k.val.s, fieldList(g.name))
		}
	}
	x, i := n.args[0].typ, n.args[1].typ
	switch {
	case x.isDyn():
		n.typ = tyDyn
	case x.k == kList && assignable(tyInt, i):
		n.typ = x.elem
	case x.k == kMap && assignable(x.key, i):
		n.typ = x.elem
	default:
		return c.errorf(n, "found no matching overload for '_[_]' applied to '(%s, %s)'", x, i)
	}
	return nil
}

// varType is a comprehension variable's static type.
type varType struct {
	name string
	t    *celType
}

func (c *checker) compre(n *node) error {
	rng := n.args[0]
	if err := c.visit(rng); err != nil {
		return err
	}
	var vt *celType
	switch t := rng.typ; {
	case t.isDyn():
		vt = tyDyn
	case t.k == kList:
		vt = t.elem
	case t.k == kMap:
		vt = t.key
	default:
		return c.errorf(n, "expression of type '%s' cannot be range of a comprehension (must be list, map, or dynamic)", t)
	}
	c.scopes = append(c.scopes, n.name)
	c.varTypes = append(c.varTypes, varType{n.name, vt})
	n.slot = len(c.scopes) - 1
	c.maxVar = max(c.maxVar, len(c.scopes))
	defer func() {
		c.scopes = c.scopes[:len(c.scopes)-1]
		c.varTypes = c.varTypes[:len(c.varTypes)-1]
	}()
	for _, a := range n.args[1:] {
		if err := c.visit(a); err != nil {
			return err
		}
	}
	switch n.ck {
	case cAll, cExists, cExistsOne:
		if !assignable(tyBool, n.args[1].typ) {
			return c.errorf(n, "found no matching overload for '_&&_' applied to '(bool, %s)'", n.args[1].typ)
		}
		n.typ = tyBool
	case cFilter:
		if !assignable(tyBool, n.args[1].typ) {
			return c.errorf(n, "found no matching overload for '_?_:_' applied to '(%s, ...)'", n.args[1].typ)
		}
		n.typ = &celType{k: kList, elem: vt}
	case cMap:
		n.typ = &celType{k: kList, elem: n.args[1].typ}
	case cMapFilter:
		if !assignable(tyBool, n.args[1].typ) {
			return c.errorf(n, "found no matching overload for '_?_:_' applied to '(%s, ...)'", n.args[1].typ)
		}
		n.typ = &celType{k: kList, elem: n.args[2].typ}
	}
	return nil
}

func typeList(args []*node) string {
	ts := make([]string, len(args))
	for i, a := range args {
		ts[i] = a.typ.String()
	}
	return strings.Join(ts, ", ")
}

func (c *checker) binary(n *node) error {
	a, b := n.args[0].typ, n.args[1].typ
	switch n.name {
	case "==", "!=":
		if !assignable(a, b) {
			return c.errorf(n, "found no matching overload for '_%s_' applied to '(%s, %s)'", n.name, a, b)
		}
		n.typ = tyBool
		n.fn = binaryImpls[n.name]
		return nil
	case "in":
		switch {
		case b.isDyn():
		case b.k == kList && assignable(b.elem, a):
		case b.k == kMap && assignable(b.key, a):
		default:
			return c.errorf(n, "found no matching overload for '@in' applied to '(%s, %s)'", a, b)
		}
		n.typ = tyBool
		n.fn = binaryImpls[n.name]
		return nil
	}
	t, err := resolve(operatorSigs[n.name], n.args, "_"+n.name+"_")
	if err != nil {
		return c.errorf(n, "%w", err)
	}
	n.typ = t
	n.fn = binaryImpls[n.name]
	return nil
}

// resolve finds the overloads of sigs that accept args' types: an error when none does, the
// result type when all that do agree (dyn otherwise).
func resolve(sigs []sig, args []*node, name string) (*celType, error) {
	var res *celType
	for _, s := range sigs {
		if len(s.params) != len(args) {
			continue
		}
		ok := true
		for i, p := range s.params {
			if !assignable(p, args[i].typ) {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		r := s.result
		if r == tyList && len(args) == 2 && args[0].typ.k == kList && args[1].typ.k == kList {
			r = join(args[0].typ, args[1].typ)
		}
		if res == nil {
			res = r
		} else if res != r {
			res = join(res, r)
		}
	}
	if res == nil {
		return nil, fmt.Errorf("found no matching overload for '%s' applied to '(%s)'", name, typeList(args))
	}
	return res, nil
}

func (c *checker) call(n *node) error {
	f, ok := functions[n.name]
	if !ok {
		if unsupportedFuncs[n.name] || typeNames[n.name] {
			return c.errorf(n, "CEL function %s is not supported by strait-proxy", n.name)
		}
		return c.errorf(n, "CEL function %s is not supported by strait-proxy (undeclared reference to '%s')", n.name, n.name)
	}
	if n.recv && !f.recv || !n.recv && !f.global {
		style := "global"
		if n.recv {
			style = "receiver"
		}
		return c.errorf(n, "found no matching overload for '%s' applied as a %s call to '(%s)'", n.name, style, typeList(n.args))
	}
	t, err := resolve(f.sigs, n.args, n.name)
	if err != nil {
		return c.errorf(n, "%w", err)
	}
	n.typ = t
	n.fn = f.impl
	if n.name == "matches" && n.args[1].op == opLit && n.args[1].val.k == kString {
		re, err := compileRegexp(n.args[1].val.s)
		if err != nil {
			return c.errorf(n.args[1], "%w", err)
		}
		n.re = re
		n.fn = matchesConst
	}
	return nil
}

// compileRegexp compiles an RE2 pattern within MaxRegexProgramSize.
func compileRegexp(pattern string) (*regexp.Regexp, error) {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return nil, err // "error parsing regexp: ..."
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		return nil, err
	}
	if len(prog.Inst) > MaxRegexProgramSize {
		return nil, fmt.Errorf("regular expression %q: program size %d exceeds limit %d", pattern, len(prog.Inst), MaxRegexProgramSize)
	}
	return regexp.Compile(pattern)
}

// fold replaces a call, operator, list or map whose operands are all constants by its value,
// unless evaluating it fails (the error then happens at evaluation, as CEL defines).
func (c *checker) fold(n *node) {
	switch n.op {
	case opCall, opBinary, opList, opMap, opNot, opNeg, opAnd, opOr, opCond, opIndex:
	default:
		return
	}
	for _, a := range n.args {
		if a.op != opLit {
			return
		}
	}
	v := c.scratch.eval(n)
	if v.isErr() || c.scratch.over {
		c.scratch.cost, c.scratch.over = 0, false
		return
	}
	c.scratch.cost = 0
	n.op, n.args, n.val, n.fn = opLit, nil, v, nil
}
