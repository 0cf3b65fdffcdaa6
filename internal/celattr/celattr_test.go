package celattr

import (
	"strings"
	"testing"

	"github.com/google/cel-go/cel"
)

func TestCompile(t *testing.T) {
	for _, tc := range []struct {
		expr, err string
	}{
		{`response.code >= 400`, ""},
		{`request.headers['x-user'] == 'admin'`, ""},
		{`request.url_path.startsWith('/api') && connection.mtls`, ""},
		{`upstream.request_attempt_count > 1u`, ""},
		{`filter_state['wasm.upstream_peer'] != ''`, ""},
		{`xds.cluster_name`, ""},
		{`'literal'`, ""},
		{``, "expression is empty"},
		{`request.foo == 'x'`, "undeclared reference to 'request'"},
		{`response.code >=`, "Syntax error"},
		{`response.code == 'a'`, "found no matching overload"},
		{strings.Repeat("(", 40) + "1" + strings.Repeat(")", 40), "recursion"},
		{strings.Repeat("a", MaxExpressionLength+1), "more than the limit"},
	} {
		_, err := Compile(tc.expr)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%.40q: %v", tc.expr, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%.40q: got %v, want an error containing %q", tc.expr, err, tc.err)
		case err != nil && strings.Contains(err.Error(), "\n"):
			t.Errorf("%.40q: error is not one line: %q", tc.expr, err)
		}
	}
}

func TestCompileFilter(t *testing.T) {
	if _, err := CompileFilter(`response.code >= 500`); err != nil {
		t.Fatal(err)
	}
	if _, err := CompileFilter(`request.path`); err == nil || !strings.Contains(err.Error(), "want bool") {
		t.Fatalf("got %v, want a type error", err)
	}
}

// TestEvaluate checks that the dotted attribute names resolve from a flat activation, as the
// proxy supplies them.
func TestEvaluate(t *testing.T) {
	ast, err := CompileFilter(`response.code >= 400 && request.headers['x-debug'] == '1'`)
	if err != nil {
		t.Fatal(err)
	}
	env, _ := Env()
	prg, err := env.Program(ast, cel.CostLimit(1000))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		code int64
		want bool
	}{{503, true}, {200, false}} {
		out, _, err := prg.Eval(map[string]any{"response.code": tc.code, "request.headers": map[string]string{"x-debug": "1"}})
		if err != nil {
			t.Fatal(err)
		}
		if out.Value() != tc.want {
			t.Errorf("code %d: got %v, want %v", tc.code, out.Value(), tc.want)
		}
	}
}

func TestAttributesCopy(t *testing.T) {
	a := Attributes()
	a[0].Name = "changed"
	if Attributes()[0].Name == "changed" {
		t.Fatal("Attributes shares its slice")
	}
}
