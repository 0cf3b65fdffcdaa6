package attributes

import (
	"fmt"
	"regexp"
)

// op is an expression node's operation.
type op uint8

const (
	opLit    op = iota // val
	opIdent            // name (a top-level attribute or a comprehension variable; resolved by check)
	opSelect           // args[0].name
	opHas              // has(args[0].name)
	opIndex            // args[0][args[1]]
	opCall             // name(args...), or args[0].name(args[1:]...) when recv
	opAnd              // args[0] && args[1]
	opOr               // args[0] || args[1]
	opNot              // !args[0]
	opNeg              // -args[0]
	opCond             // args[0] ? args[1] : args[2]
	opList             // [args...]
	opMap              // {args[0]: args[1], ...}
	opCompre           // a macro over args[0] with variable name: all, exists, exists_one, map, filter
	opBinary           // a binary operator, name its symbol ("+", "==", "in", ...)
)

// compreKind is the macro of an opCompre node.
type compreKind uint8

const (
	cAll compreKind = iota
	cExists
	cExistsOne
	cMap       // args[1] is the transform
	cMapFilter // args[1] the predicate, args[2] the transform
	cFilter    // args[1] the predicate
)

// node is one expression node.
type node struct {
	op     op
	name   string // identifier, field, function, operator or comprehension variable
	val    Value  // opLit; a constant folded by check
	args   []*node
	recv   bool // opCall: receiver style
	global bool // opIdent: a leading dot (root scope)
	ck     compreKind
	pos    int

	// Set by check.
	typ  *celType
	slot int            // opIdent: comprehension variable slot, or -1 for a top-level attribute
	attr int            // opIdent: index of the top-level attribute in groupOrder
	fn   fnImpl         // opCall, opBinary
	re   *regexp.Regexp // matches with a constant pattern
	afn  attr           // opSelect, opHas of a top-level attribute's field: the field
}

// parser is a recursive-descent parser of CEL's grammar (langdef "Syntax").
type parser struct {
	lx    lexer
	tok   token
	depth int
	nodes int
}

// parse parses src into an expression tree, within the nesting and node limits.
func parse(src string) (*node, error) {
	p := &parser{lx: lexer{src: src}}
	if err := p.advance(); err != nil {
		return nil, err
	}
	n, err := p.expr()
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tEOF {
		return nil, p.unexpected("end of input")
	}
	return n, nil
}

func (p *parser) advance() error {
	t, err := p.lx.next()
	if err != nil {
		return err
	}
	p.tok = t
	return nil
}

func (p *parser) is(sym string) bool { return p.tok.kind == tPunct && p.tok.text == sym }

func (p *parser) isIdent(name string) bool { return p.tok.kind == tIdent && p.tok.text == name }

func (p *parser) unexpected(want string) error {
	got := "'" + p.tok.text + "'"
	if p.tok.kind == tEOF {
		got = "<EOF>"
	}
	return p.lx.errAt(p.tok.pos, "mismatched input %s expecting %s", got, want)
}

func (p *parser) expect(sym string) error {
	if !p.is(sym) {
		return p.unexpected("'" + sym + "'")
	}
	return p.advance()
}

// newNode counts a node against MaxNodes.
func (p *parser) newNode(o op, pos int, args ...*node) (*node, error) {
	p.nodes++
	if p.nodes > MaxNodes {
		return nil, fmt.Errorf("expression node count exceeds limit %d", MaxNodes)
	}
	return &node{op: o, pos: pos, args: args}, nil
}

// enter counts one level of nesting against MaxNesting.
func (p *parser) enter() error {
	p.depth++
	if p.depth > MaxNesting {
		return fmt.Errorf("expression recursion limit exceeded: %d", MaxNesting)
	}
	return nil
}

func (p *parser) leave() { p.depth-- }

// expr = or ["?" or ":" expr]
func (p *parser) expr() (*node, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.leave()
	c, err := p.binary(0)
	if err != nil {
		return nil, err
	}
	if !p.is("?") {
		return c, nil
	}
	pos := p.tok.pos
	if err := p.advance(); err != nil {
		return nil, err
	}
	t, err := p.binary(0)
	if err != nil {
		return nil, err
	}
	if err := p.expect(":"); err != nil {
		return nil, err
	}
	f, err := p.expr()
	if err != nil {
		return nil, err
	}
	return p.newNode(opCond, pos, c, t, f)
}

// levels are the binary operators by precedence, loosest first; all are left-associative.
var levels = [][]string{{"||"}, {"&&"}, {"==", "!=", "<", "<=", ">", ">=", "in"}, {"+", "-"}, {"*", "/", "%"}}

func (p *parser) binOp(level int) (string, bool) {
	for _, s := range levels[level] {
		if s == "in" {
			if p.isIdent("in") {
				return s, true
			}
			continue
		}
		if p.is(s) {
			return s, true
		}
	}
	return "", false
}

func (p *parser) binary(level int) (*node, error) {
	if level == len(levels) {
		return p.unary()
	}
	l, err := p.binary(level + 1)
	if err != nil {
		return nil, err
	}
	for {
		sym, ok := p.binOp(level)
		if !ok {
			return l, nil
		}
		pos := p.tok.pos
		if err := p.advance(); err != nil {
			return nil, err
		}
		r, err := p.binary(level + 1)
		if err != nil {
			return nil, err
		}
		var n *node
		switch sym {
		case "||":
			n, err = p.newNode(opOr, pos, l, r)
		case "&&":
			n, err = p.newNode(opAnd, pos, l, r)
		default:
			n, err = p.newNode(opBinary, pos, l, r)
			if n != nil {
				n.name = sym
			}
		}
		if err != nil {
			return nil, err
		}
		l = n
	}
}

// unary = member | "!" {"!"} member | "-" {"-"} member
func (p *parser) unary() (*node, error) {
	if p.is("!") || (p.is("-") && !p.signedLiteral()) {
		o := opNot
		if p.is("-") {
			o = opNeg
		}
		pos := p.tok.pos
		if err := p.enter(); err != nil {
			return nil, err
		}
		defer p.leave()
		if err := p.advance(); err != nil {
			return nil, err
		}
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		return p.newNode(o, pos, x)
	}
	return p.member()
}

// signedLiteral reports whether the "-" at hand is the sign of a number literal (an int or double
// literal takes its sign, so that -9223372036854775808 is an int).
func (p *parser) signedLiteral() bool {
	save := p.lx.pos
	t, err := p.lx.next()
	p.lx.pos = save
	return err == nil && (t.kind == tInt || t.kind == tDouble)
}

// member = primary {"." IDENT ["(" args ")"] | "[" expr "]"}
func (p *parser) member() (*node, error) {
	x, err := p.primary()
	if err != nil {
		return nil, err
	}
	levels := 0
	defer func() { p.depth -= levels }()
	for {
		switch {
		case p.is("."):
			if err := p.enter(); err != nil {
				return nil, err
			}
			levels++
			pos := p.tok.pos
			if err := p.advance(); err != nil {
				return nil, err
			}
			if p.tok.kind != tIdent {
				return nil, p.unexpected("IDENTIFIER")
			}
			name := p.tok.text
			if err := p.advance(); err != nil {
				return nil, err
			}
			if p.is("(") {
				args, aerr := p.callArgs(")")
				if aerr != nil {
					return nil, aerr
				}
				x, err = p.call(name, pos, x, args)
			} else {
				if isReservedWord(name) {
					return nil, p.lx.errAt(pos+1, "reserved identifier: %s", name)
				}
				x, err = p.newNode(opSelect, pos, x)
				if x != nil {
					x.name = name
				}
			}
			if err != nil {
				return nil, err
			}
		case p.is("["):
			if err := p.enter(); err != nil {
				return nil, err
			}
			levels++
			pos := p.tok.pos
			if err := p.advance(); err != nil {
				return nil, err
			}
			i, err := p.expr()
			if err != nil {
				return nil, err
			}
			if err := p.expect("]"); err != nil {
				return nil, err
			}
			if x, err = p.newNode(opIndex, pos, x, i); err != nil {
				return nil, err
			}
		case p.is("{") && x.op == opIdent:
			return nil, p.lx.errAt(p.tok.pos, "message construction %s{...} is not supported by strait-proxy", x.name)
		default:
			return x, nil
		}
	}
}

func isReservedWord(s string) bool {
	return reserved[s] || s == "true" || s == "false" || s == "null" || s == "in"
}

// callArgs parses "(" [expr {"," expr}] ")" (or a list's elements, with a trailing comma allowed
// when close is "]").
func (p *parser) callArgs(close string) ([]*node, error) {
	if err := p.advance(); err != nil { // the opening delimiter
		return nil, err
	}
	var args []*node
	if close == "]" && p.is(",") { // [,]: the grammar allows a lone trailing comma
		if err := p.advance(); err != nil {
			return nil, err
		}
		if !p.is(close) {
			return nil, p.unexpected("']'")
		}
	}
	for !p.is(close) {
		a, err := p.expr()
		if err != nil {
			return nil, err
		}
		args = append(args, a)
		if p.is(",") {
			if err := p.advance(); err != nil {
				return nil, err
			}
			if p.is(close) && close == ")" {
				return nil, p.unexpected("an expression")
			}
			continue
		}
		if !p.is(close) {
			return nil, p.unexpected("',' or '" + close + "'")
		}
	}
	return args, p.advance()
}

func (p *parser) primary() (*node, error) {
	t := p.tok
	switch t.kind {
	case tEOF:
		return nil, p.unexpected("an expression")
	case tInt, tUint, tDouble:
		v, err := p.lx.numberValue(t, false)
		if err != nil {
			return nil, err
		}
		return p.lit(v)
	case tString, tBytes:
		return p.lit(t.val)
	case tIdent:
		switch t.text {
		case "true", "false":
			return p.lit(boolVal(t.text == "true"))
		case "null":
			return p.lit(nullVal())
		}
		if isReservedWord(t.text) {
			return nil, p.lx.errAt(t.pos, "reserved identifier: %s", t.text)
		}
		if err := p.advance(); err != nil {
			return nil, err
		}
		if p.is("(") {
			args, err := p.callArgs(")")
			if err != nil {
				return nil, err
			}
			return p.call(t.text, t.pos, nil, args)
		}
		n, err := p.newNode(opIdent, t.pos)
		if n != nil {
			n.name = t.text
		}
		return n, err
	}
	switch t.text {
	case "-": // a signed number literal
		if err := p.advance(); err != nil {
			return nil, err
		}
		v, err := p.lx.numberValue(p.tok, true)
		if err != nil {
			return nil, err
		}
		return p.lit(v)
	case ".":
		if err := p.advance(); err != nil {
			return nil, err
		}
		if p.tok.kind != tIdent || isReservedWord(p.tok.text) {
			return nil, p.unexpected("IDENTIFIER")
		}
		id := p.tok
		if err := p.advance(); err != nil {
			return nil, err
		}
		if p.is("(") {
			return nil, p.lx.errAt(id.pos, "a root-scoped function call (.%s()) is not supported by strait-proxy", id.text)
		}
		n, err := p.newNode(opIdent, id.pos)
		if n != nil {
			n.name, n.global = id.text, true
		}
		return n, err
	case "(":
		if err := p.advance(); err != nil {
			return nil, err
		}
		x, err := p.expr()
		if err != nil {
			return nil, err
		}
		return x, p.expect(")")
	case "[":
		if err := p.enter(); err != nil {
			return nil, err
		}
		defer p.leave()
		elems, err := p.callArgs("]")
		if err != nil {
			return nil, err
		}
		n, err := p.newNode(opList, t.pos, elems...)
		return n, err
	case "{":
		if err := p.enter(); err != nil {
			return nil, err
		}
		defer p.leave()
		if err := p.advance(); err != nil {
			return nil, err
		}
		var kv []*node
		if p.is(",") { // {,}: the grammar allows a lone trailing comma
			if err := p.advance(); err != nil {
				return nil, err
			}
			if !p.is("}") {
				return nil, p.unexpected("'}'")
			}
		}
		for !p.is("}") {
			k, err := p.expr()
			if err != nil {
				return nil, err
			}
			if err := p.expect(":"); err != nil {
				return nil, err
			}
			v, err := p.expr()
			if err != nil {
				return nil, err
			}
			kv = append(kv, k, v)
			if p.is(",") {
				if err := p.advance(); err != nil {
					return nil, err
				}
				continue
			}
			if !p.is("}") {
				return nil, p.unexpected("',' or '}'")
			}
		}
		if err := p.advance(); err != nil {
			return nil, err
		}
		return p.newNode(opMap, t.pos, kv...)
	}
	return nil, p.unexpected("an expression")
}

func (p *parser) lit(v Value) (*node, error) {
	n, err := p.newNode(opLit, p.tok.pos)
	if err != nil {
		return nil, err
	}
	n.val = v
	return n, p.advance()
}

// macroNodes is what a macro's expansion adds to the node count (cel-go's expansion into a
// comprehension adds its accumulator, loop condition, step and result).
const macroNodes = 6

// call builds a function call, expanding the macros has, all, exists, exists_one, map and
// filter.
func (p *parser) call(name string, pos int, target *node, args []*node) (*node, error) {
	if target == nil && name == "has" && len(args) == 1 {
		a := args[0]
		if a.op != opSelect {
			return nil, p.lx.errAt(pos, "invalid argument to has() macro")
		}
		n, err := p.newNode(opHas, pos, a.args[0])
		if n != nil {
			n.name = a.name
		}
		return n, err
	}
	if target != nil {
		var ck compreKind
		ok := true
		switch {
		case name == "all" && len(args) == 2:
			ck = cAll
		case name == "exists" && len(args) == 2:
			ck = cExists
		case name == "exists_one" && len(args) == 2:
			ck = cExistsOne
		case name == "map" && len(args) == 2:
			ck = cMap
		case name == "map" && len(args) == 3:
			ck = cMapFilter
		case name == "filter" && len(args) == 2:
			ck = cFilter
		default:
			ok = false
		}
		if ok {
			v := args[0]
			if v.op != opIdent || v.global {
				return nil, p.lx.errAt(v.pos, "argument must be a simple name")
			}
			p.nodes += macroNodes
			n, err := p.newNode(opCompre, pos, append([]*node{target}, args[1:]...)...)
			if n != nil {
				n.name, n.ck = v.name, ck
			}
			return n, err
		}
	}
	n, err := p.newNode(opCall, pos)
	if err != nil {
		return nil, err
	}
	n.name = name
	if target != nil {
		n.recv = true
		n.args = append([]*node{target}, args...)
	} else {
		n.args = args
	}
	return n, nil
}
