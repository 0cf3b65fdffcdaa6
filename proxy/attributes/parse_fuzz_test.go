package attributes

import (
	"strings"
	"testing"
)

// FuzzParse parses and checks arbitrary input: it never panics, and what it accepts is within
// the limits (expression length, node count, nesting).
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`response.code >= 500`, `[1, 2].all(x, x > 0) ? "a" : 'b'`, `{"a": b"\xff", 1u: -1.5e3}`,
		`r"\d" + '''x''' + """y"""`, `.request.headers["x"]`, `has(a.b)`, `!-!-1`, `a.b(c)[d].e`,
		`"\u00e9\U0001F600\101"`, "1 // c\n+ 2", strings.Repeat("(", 33) + "1" + strings.Repeat(")", 33),
		strings.Repeat("[", 40), strings.Repeat("-", 40) + "1", strings.Repeat("a.", 40) + "b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		if len(expr) > 4*MaxExpressionLength {
			return
		}
		root, err := parse(expr)
		if err != nil {
			if root != nil {
				t.Fatalf("parse(%q) returned a tree and an error", expr)
			}
			return
		}
		if root == nil {
			t.Fatalf("parse(%q) returned neither a tree nor an error", expr)
		}
		nodes, depth := treeSize(root)
		if nodes > MaxNodes {
			t.Fatalf("parse(%q): %d nodes, over the limit", expr, nodes)
		}
		// Binary operator chains are iterative (not nested) in the grammar; every other level
		// of the tree counts against MaxNesting.
		if depth > MaxNesting {
			t.Fatalf("parse(%q): depth %d", expr, depth)
		}
		if _, err := check(root, expr); err != nil {
			return
		}
	})
}

// treeSize counts the nodes of a tree and its nesting depth (binary operators not counted).
func treeSize(n *node) (nodes, depth int) {
	nodes = 1
	if n.op == opCompre {
		nodes += macroNodes
	}
	for _, a := range n.args {
		an, ad := treeSize(a)
		nodes += an
		depth = max(depth, ad)
	}
	switch n.op {
	case opBinary, opAnd, opOr:
		return nodes, depth
	}
	return nodes, depth + 1
}
