package attributes

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"
)

// Limits on an expression from configuration (which users write, through the control plane).
const (
	// MaxExpressionLength is the longest expression accepted, in code points.
	MaxExpressionLength = 4096
	// MaxNesting is the deepest nesting of calls, selections and literals accepted.
	MaxNesting = 32
	// MaxNodes is the most expression nodes accepted, macro expansions included.
	MaxNodes = 1000
	// MaxRegexProgramSize bounds the compiled size of each regular expression (RE2 programs;
	// matching is linear in the input).
	MaxRegexProgramSize = 2000
	// CostLimit is the most cost units one evaluation may spend; beyond it the evaluation fails
	// (a filter does not match, a dimension is not set), whatever && or || would have absorbed.
	// A unit is one expression node evaluated, one element of a comprehension's range, list
	// concatenation or membership test, or 16 bytes of string work (size, contains, startsWith,
	// endsWith, concatenation, equality; matches counts its input four times). It bounds
	// comprehensions over headers and string functions on long values.
	CostLimit = 100_000
)

// Program is a compiled expression. It is immutable and safe for concurrent use.
type Program struct {
	text  string
	root  *node
	slots int      // comprehension variable slots
	out   *celType // the checked result type
}

// Compile parses, type-checks and plans expr, a CEL expression over Envoy's attributes (the
// top-level names request, response, source, destination, connection, upstream, xds and
// metadata, maps from string to dyn). An error says what is wrong with it: a syntax or type
// error, a limit exceeded, a CEL feature strait-proxy does not implement, or an attribute it
// does not provide.
func Compile(expr string) (p *Program, err error) {
	if strings.TrimSpace(expr) == "" {
		return nil, errors.New("empty expression")
	}
	if len(expr) > 4*MaxExpressionLength || utf8.RuneCountInString(expr) > MaxExpressionLength {
		return nil, fmt.Errorf("compiling CEL expression: expression size exceeds limit %d code points", MaxExpressionLength)
	}
	if !utf8.ValidString(expr) {
		return nil, errors.New("compiling CEL expression: not valid UTF-8")
	}
	defer func() {
		// A bug in the parser or checker refuses this expression, not the proxy.
		if r := recover(); r != nil {
			p, err = nil, fmt.Errorf("compiling CEL expression: internal error: %v", r)
		}
	}()
	root, err := parse(expr)
	if err != nil {
		return nil, fmt.Errorf("compiling CEL expression: %w", err)
	}
	slots, err := check(root, expr)
	if err != nil {
		return nil, fmt.Errorf("compiling CEL expression: %w", err)
	}
	return &Program{text: expr, root: root, slots: slots, out: root.typ}, nil
}

// CompileBool compiles a predicate: an expression whose type is bool (or dyn, known only when
// evaluated).
func CompileBool(expr string) (*Program, error) {
	p, err := Compile(expr)
	if err != nil {
		return nil, err
	}
	if t := p.out; !t.isDyn() && t.k != kBool {
		return nil, fmt.Errorf("expression is of type %s, not bool", t)
	}
	return p, nil
}

// String returns the expression's text.
func (p *Program) String() string { return p.text }

// Eval evaluates the expression against r. An absent attribute, a type error or the cost limit
// is an error.
func (p *Program) Eval(r *Record) (Value, error) {
	a := getActivation(r)
	v := a.run(p)
	a.release()
	if v.isErr() {
		return Value{}, v.err()
	}
	return v, nil
}

// run evaluates p; an error is returned as an error value (converted to a Go error, with its
// message, only by Eval).
func (a *activation) run(p *Program) (v Value) {
	defer func() {
		// A bug in the evaluator fails this evaluation, not the proxy.
		if r := recover(); r != nil {
			v = errorf("internal error evaluating CEL expression: %v", r)
		}
	}()
	if len(a.locals) < p.slots {
		a.locals = make([]Value, p.slots)
	}
	v = a.eval(p.root)
	if a.over {
		return errVal(errCostLimit)
	}
	return v
}

// Match evaluates a predicate against r as Envoy's CEL access log filter does: true only when
// the result is the boolean true; an error (an absent attribute, a type error) or another type
// is false.
func (p *Program) Match(r *Record) bool {
	a := getActivation(r)
	v := a.run(p)
	a.release()
	return v.isTrue()
}

// Text evaluates the expression against r as a metric label value: strings as they are,
// numbers, booleans, durations and timestamps as CEL's string() renders them. false when the
// evaluation fails or the value has no string form (a map, a list).
func (p *Program) Text(r *Record) (string, bool) {
	a := getActivation(r)
	v := a.run(p)
	a.release()
	return toText(v) // false for an error
}

// fieldList lists the fields of a top-level attribute, for error messages.
func fieldList(group string) string {
	var ns []string
	for n := range groups[group] {
		ns = append(ns, group+"."+n)
	}
	sort.Strings(ns)
	return strings.Join(ns, ", ")
}
