package attributes

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
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
	// CostLimit is the most CEL cost units one evaluation may spend; beyond it the evaluation
	// fails (a filter does not match, a dimension is not set). It bounds comprehensions over
	// headers and string functions on long values.
	CostLimit = 100_000
)

// env is the CEL environment: Envoy's top-level attributes as maps from string to dyn, the
// standard library, cross-type numeric comparisons (as Envoy's CEL runtime compares int with
// uint), and the limits. It is immutable once built.
var env = sync.OnceValues(func() (*cel.Env, error) {
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

// Program is a compiled expression. It is immutable and safe for concurrent use.
type Program struct {
	text string
	prg  cel.Program
	out  *cel.Type // the checked result type
}

// Compile parses, type-checks and plans expr. An error says what is wrong with it: a syntax or
// type error, a limit exceeded, or an attribute strait-proxy does not provide.
func Compile(expr string) (*Program, error) {
	if strings.TrimSpace(expr) == "" {
		return nil, errors.New("empty expression")
	}
	if len(expr) > 4*MaxExpressionLength { // before the parser counts code points
		return nil, fmt.Errorf("expression longer than %d characters", MaxExpressionLength)
	}
	e, err := env()
	if err != nil {
		return nil, fmt.Errorf("building the CEL environment: %w", err)
	}
	checked, iss := e.Compile(expr)
	if iss.Err() != nil {
		return nil, fmt.Errorf("compiling CEL expression: %w", iss.Err())
	}
	if err := checkAttributes(checked.NativeRep().Expr()); err != nil {
		return nil, err
	}
	// OptOptimize folds constants and compiles constant regular expressions now, so that a bad
	// one is a configuration error rather than a per-request one.
	prg, err := e.Program(checked, cel.CostLimit(CostLimit), cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, fmt.Errorf("planning CEL expression: %w", err)
	}
	return &Program{text: expr, prg: prg, out: checked.OutputType()}, nil
}

// CompileBool compiles a predicate: an expression whose type is bool (or dyn, known only when
// evaluated).
func CompileBool(expr string) (*Program, error) {
	p, err := Compile(expr)
	if err != nil {
		return nil, err
	}
	if t := p.out; !t.IsExactType(cel.BoolType) && !t.IsExactType(cel.DynType) {
		return nil, fmt.Errorf("expression is of type %s, not bool", t)
	}
	return p, nil
}

// String returns the expression's text.
func (p *Program) String() string { return p.text }

// Eval evaluates the expression against r. An absent attribute, a type error or the cost limit
// is an error.
func (p *Program) Eval(r *Record) (ref.Val, error) {
	a := getActivation(r)
	defer a.release()
	v, _, err := p.prg.Eval(a)
	if err != nil {
		return nil, err
	}
	return v, nil
}

// Match evaluates a predicate against r as Envoy's CEL access log filter does: true only when
// the result is the boolean true; an error (an absent attribute, a type error) or another type
// is false.
func (p *Program) Match(r *Record) bool {
	v, err := p.Eval(r)
	if err != nil {
		return false
	}
	b, ok := v.(types.Bool)
	return ok && bool(b)
}

// Text evaluates the expression against r as a metric label value: strings as they are,
// numbers, booleans, durations and timestamps as CEL's string() renders them. false when the
// evaluation fails or the value has no string form (a map, a list).
func (p *Program) Text(r *Record) (string, bool) {
	v, err := p.Eval(r)
	if err != nil {
		return "", false
	}
	switch x := v.(type) {
	case types.String:
		return string(x), true
	case types.Int:
		return strconv.FormatInt(int64(x), 10), true
	case types.Bool:
		return strconv.FormatBool(bool(x)), true
	}
	s, ok := v.ConvertToType(types.StringType).(types.String)
	return string(s), ok
}

// checkAttributes refuses a selection of an attribute strait-proxy does not provide
// (request.foo, xds.node) and any use of an Envoy attribute it does not provide at all
// (filter_state), so that an expression never depends silently on a value that is always
// absent. Names bound by comprehensions (x in [..].all(x, ...)) are not attributes.
func checkAttributes(root ast.Expr) error {
	bound := map[string]bool{}
	ast.PostOrderVisit(root, ast.NewExprVisitor(func(e ast.Expr) {
		if e.Kind() == ast.ComprehensionKind {
			c := e.AsComprehension()
			bound[c.IterVar()] = true
			if c.HasIterVar2() {
				bound[c.IterVar2()] = true
			}
			bound[c.AccuVar()] = true
		}
	}))
	var err error
	ast.PostOrderVisit(root, ast.NewExprVisitor(func(e ast.Expr) {
		if err != nil {
			return
		}
		switch e.Kind() {
		case ast.IdentKind:
			n := e.AsIdent()
			for _, u := range unsupportedTop {
				if n == u && !bound[n] {
					err = fmt.Errorf("attribute %s: not supported by strait-proxy yet", n)
				}
			}
		case ast.SelectKind:
			s := e.AsSelect()
			op := s.Operand()
			if op.Kind() != ast.IdentKind || bound[op.AsIdent()] {
				return
			}
			fields, ok := groups[op.AsIdent()]
			if !ok {
				return
			}
			if _, ok := fields[s.FieldName()]; !ok {
				err = fmt.Errorf("attribute %s.%s: not supported by strait-proxy (it provides %s)",
					op.AsIdent(), s.FieldName(), fieldList(op.AsIdent()))
			}
		}
	}))
	return err
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
