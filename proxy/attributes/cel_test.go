package attributes

import (
	"strings"
	"testing"
)

// TestSyntax covers the lexis and grammar: literal forms and their values, comments, reserved
// words and malformed input.
func TestSyntax(t *testing.T) {
	for _, tc := range []struct{ expr, want string }{
		{`"\x41\101\u0042\U00000043"`, `string:"AABC"`},
		{`b"\xff\377"`, `bytes:"\xff\xff"`},
		{`b"é"`, `bytes:"é"`},
		{`"\303\277"`, `string:"Ã¿"`},
		{`r"\d\n"`, `string:"\\d\\n"`},
		{`br'\x41'`, `bytes:"\\x41"`},
		{`'''a'b''c'''`, `string:"a'b''c"`},
		{"\"\"\"two\nlines\"\"\"", `string:"two\nlines"`},
		{`0xFF`, `int:255`},
		{`0xFFu`, `uint:255`},
		{`-9223372036854775808`, `int:-9223372036854775808`},
		{`1e2`, `double:100`},
		{`.25`, `double:0.25`},
		{`1u`, `uint:1`},
		{"[1, // one\n 2]", `list[int:1,int:2]`},
		{`{"a": [1, {"b": null}]}.a[1].b`, `null_type:null`},
		{`[1,2,3][0] + [1,2,3][2]`, `int:4`},
		{`(1 < 2) == (2 > 1)`, `bool:true`},
		{`true ? 1 : false ? 2 : 3`, `int:1`},
		{`false ? 1 : false ? 2 : 3`, `int:3`},
		{`1 - 2 - 3`, `int:-4`},
		{`8 / 2 / 2`, `int:2`},
		{`2 + 3 * 4 % 5`, `int:4`},
		{`!false && !false || false`, `bool:true`},
		{`1 in [1] == true`, `bool:true`},
	} {
		p, err := Compile(tc.expr)
		if err != nil {
			t.Errorf("Compile(%s): %v", tc.expr, err)
			continue
		}
		v, err := p.Eval(&Record{})
		if got := canonOurs(v, err); got != tc.want {
			t.Errorf("%s = %s (%v), want %s", tc.expr, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ expr, want string }{
		{`if == 1`, "reserved identifier: if"},
		{`while`, "reserved identifier: while"},
		{`request.package`, "reserved identifier: package"},
		{`[1].all(in, true)`, "reserved identifier: in"},
		{`"\q"`, "invalid escape sequence"},
		{`b"\u00e9"`, "not allowed in bytes literals"},
		{`"\ud800"`, "invalid unicode code point"},
		{`"\400"`, "invalid escape sequence"},
		{`"abc`, "unterminated string literal"},
		{"'a\nb'", "newline in string literal"},
		{`9223372036854775808`, "invalid int literal"},
		{`18446744073709551616u`, "invalid uint literal"},
		{`1 # 2`, "token recognition error"},
		{`Msg{a: 1}`, "message construction Msg{...} is not supported by strait-proxy"},
		{`.size(1)`, "not supported by strait-proxy"},
		{`has(a)`, "invalid argument to has() macro"},
		{`[1].map(x.y, 1)`, "argument must be a simple name"},
		{`1 +`, "Syntax error: mismatched input <EOF>"},
		{`f(1,)`, "Syntax error"},
		{`"abc".split("b")`, "CEL function split is not supported by strait-proxy"},
		{`type(1) == int`, "CEL function type is not supported by strait-proxy"},
		{`int`, "type value int: CEL type values are not supported by strait-proxy"},
		{`frobnicate(1)`, "CEL function frobnicate is not supported by strait-proxy (undeclared reference to 'frobnicate')"},
		{`1.getHours()`, "found no matching overload for 'getHours'"},
		{`size(1, 2)`, "found no matching overload for 'size'"},
		{`int(1).startsWith("a")`, "found no matching overload for 'startsWith'"},
		{`"a".matches("(abc){999}")`, "exceeds limit 2000"},
		{`true ? false ? 1 : 2 : 3`, "Syntax error"}, // the middle operand is not a conditional
		{`matches("a", "(")`, "error parsing regexp"},
		{`{[1]: 1}`, "unsupported map key type"},
		{`"a" ? 1 : 2`, "'_?_:_'"},
	} {
		_, err := Compile(tc.expr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Compile(%s) = %v, want an error containing %q", tc.expr, err, tc.want)
		}
	}
}

// TestLimits: the size, nesting and node limits are enforced with clear errors, and what is
// within them compiles.
func TestLimits(t *testing.T) {
	ok := []string{
		strings.Repeat("(", MaxNesting-1) + "1" + strings.Repeat(")", MaxNesting-1),
		"1" + strings.Repeat(" + 1", 400),                                // a long flat chain
		strings.Repeat("response.code == 1 || ", 100) + "false",          // a long disjunction
		"'" + strings.Repeat("é", MaxExpressionLength-10) + "' != ''",    // code points, not bytes
		"[" + strings.Repeat("1,", MaxNodes-10) + "1].size() > 0",        // just under the node limit
		strings.Repeat("!", 20) + "true",                                 // repeated unary operators
		`[1].all(x, [2].all(y, [3].all(z, x < y && y < z)))`,             // nested comprehensions
		`{"a": {"b": {"c": {"d": [[[[1]]]]}}}}.a.b.c.d[0][0][0][0] == 1`, // nested literals
	}
	for _, e := range ok {
		if _, err := Compile(e); err != nil {
			t.Errorf("Compile(%.50s...): %v", e, err)
		}
	}
	for _, tc := range []struct{ expr, want string }{
		{strings.Repeat("(", MaxNesting+1) + "1" + strings.Repeat(")", MaxNesting+1), "recursion limit exceeded"},
		{strings.Repeat("-", MaxNesting+1) + "1", "recursion limit exceeded"},
		{strings.Repeat("[", MaxNesting+1) + strings.Repeat("]", MaxNesting+1), "recursion limit exceeded"},
		{"x" + strings.Repeat(".a", MaxNesting+1), "recursion limit exceeded"},
		{"'" + strings.Repeat("é", MaxExpressionLength) + "'", "size exceeds limit"},
		{"[" + strings.Repeat("1,", MaxNodes) + "1]", "node count exceeds limit"},
		{strings.Repeat("[1].all(x, true) && ", 150) + "true", "node count exceeds limit"}, // macros count expanded
	} {
		_, err := Compile(tc.expr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Compile(%.50s...) = %v, want an error containing %q", tc.expr, err, tc.want)
		}
	}
}

// TestCostLimitWork: comprehensions over headers and string functions on long values are
// bounded: an evaluation over the limit fails; ordinary ones do not come near it.
func TestCostLimitWork(t *testing.T) {
	long := httpRecord()
	h := HTTPHeaders{}
	for i := 0; i < 300; i++ {
		h["X-H"+strings.Repeat("a", i%50)+string(rune('a'+i%26))] = []string{strings.Repeat("v", 4000)}
	}
	long.RequestHeaders = h
	for _, expr := range []string{
		// 300 × 300 × 300 iterations
		`request.headers.all(a, request.headers.all(b, request.headers.all(c, c != "none")))`,
		// string functions over ~1.2 MB of header values, 300 times
		`request.headers.all(a, request.headers.all(b, !request.headers[b].contains("zz")))`,
		`request.headers.exists(a, request.headers.map(b, request.headers[b] + request.headers[a]).size() == 0)`,
		`request.headers.all(a, request.headers.filter(b, request.headers[b].matches("w")).size() == 0)`,
	} {
		p, err := Compile(expr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Eval(long); err == nil || !strings.Contains(err.Error(), "cost limit") {
			t.Errorf("%s: Eval = %v, want the cost limit error", expr, err)
		}
		if p.Match(long) {
			t.Errorf("%s matched over the cost limit", expr)
		}
	}
	// The cost limit is not absorbed by || (it ends the evaluation).
	p, _ := Compile(`true || request.headers.all(a, request.headers.all(b, b != ""))`)
	if !p.Match(long) {
		t.Error("short-circuit: the right side should not be evaluated")
	}
	p, _ = Compile(`request.headers.all(a, request.headers.all(b, request.headers.all(c, c != ""))) || true`)
	if _, err := p.Eval(long); err == nil || !strings.Contains(err.Error(), "cost limit") {
		t.Errorf("over the limit then || true: %v, want the cost limit error", err)
	}
	// Typical filters on typical requests stay far below the limit.
	for _, expr := range []string{
		`request.headers.exists(k, k.startsWith("x-") && request.headers[k].contains("debug"))`,
		`response.code >= 400 && request.headers['x'] == 'y'`,
	} {
		p, _ := Compile(expr)
		a := getActivation(httpRecord())
		a.run(p)
		if a.cost > CostLimit/1000 {
			t.Errorf("%s cost %d", expr, a.cost)
		}
		a.release()
	}
}

// TestEvalNoAlloc: a typical filter allocates nothing per evaluation.
func TestEvalNoAlloc(t *testing.T) {
	r := httpRecord()
	for _, expr := range []string{
		`response.code >= 400 && request.headers['x'] == 'y'`,
		`request.headers["user-agent"].startsWith("curl")`,
		`has(response.code) && !("x-debug" in request.headers)`,
	} {
		p, err := CompileBool(expr)
		if err != nil {
			t.Fatal(err)
		}
		p.Match(r)
		if n := testing.AllocsPerRun(100, func() { p.Match(r) }); n != 0 {
			t.Errorf("%s: %v allocations per Match", expr, n)
		}
	}
}

// TestCompileBoolTypes: CompileBool refuses what is statically not a bool, and accepts dyn.
func TestCompileBoolTypes(t *testing.T) {
	for _, e := range []string{`request.headers["x"]`, `metadata.filter_metadata["a"]["b"]`, `dyn(1)`,
		`[true][0]`, `{"a": true}.a`, `[1].exists(x, x > 0)`, `true ? request.host : false`} {
		if _, err := CompileBool(e); err != nil {
			t.Errorf("CompileBool(%s): %v", e, err)
		}
	}
	for _, tc := range []struct{ expr, typ string }{
		{`1`, "int"}, {`"a"`, "string"}, {`[1].map(x, x)`, "list(int)"}, {`{"a": 1}`, "map(string, int)"},
		{`duration("1s")`, "google.protobuf.Duration"}, {`request.time`, "dyn"}, {`size(request.path)`, "int"},
		{`1u + 2u`, "uint"}, {`null`, "null_type"}, {`true ? 1 : 2`, "int"},
	} {
		_, err := CompileBool(tc.expr)
		if tc.typ == "dyn" {
			if err != nil {
				t.Errorf("CompileBool(%s): %v", tc.expr, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), "of type "+tc.typ+", not bool") {
			t.Errorf("CompileBool(%s) = %v, want type %s", tc.expr, err, tc.typ)
		}
	}
}

// TestAttributeIndex: request["foo"] is refused like request.foo; request["path"] reads the field.
func TestAttributeIndex(t *testing.T) {
	if _, err := Compile(`request["foo"] == "x"`); err == nil || !strings.Contains(err.Error(), `attribute request["foo"]: not supported by strait-proxy`) {
		t.Errorf("request[\"foo\"]: %v", err)
	}
	p, err := CompileBool(`request["path"] == request.path && response["code"] == 503`)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Match(httpRecord()) {
		t.Error("request[\"path\"] did not read request.path")
	}
}

// TestTimeZones: named zones (cached) and fixed offsets; a bad zone is an evaluation error.
func TestTimeZones(t *testing.T) {
	for _, tc := range []struct{ expr, want string }{
		{`request.time.getHours("Asia/Kolkata")`, "int:8"},
		{`request.time.getHours("Asia/Kolkata")`, "int:8"},
		{`request.time.getMinutes("+05:30")`, "int:32"},
		{`request.time.getHours("-03:00")`, "int:0"},
		{`request.time.getDayOfMonth("-04:00")`, "int:2"},
		{`request.time.getHours("Mars/Olympus")`, "error"},
		{`request.time.getHours("../../etc/passwd")`, "error"},
		{`request.time.getHours(request.method)`, "error"},
	} {
		v, err := mustCompile(t, tc.expr).Eval(httpRecord())
		if got := canonOurs(v, err); got != tc.want {
			t.Errorf("%s = %s (%v), want %s", tc.expr, got, err, tc.want)
		}
	}
}

// TestConcurrentEval: a Program is used by many requests at once (run with -race).
func TestConcurrentEval(t *testing.T) {
	p := mustCompile(t, `request.headers.exists(k, k.matches("^x-") && request.headers[k].size() >= 0) && [1, 2].map(x, x * 2)[1] == 4`)
	done := make(chan bool)
	for i := 0; i < 4; i++ {
		go func() {
			ok := true
			for j := 0; j < 200; j++ {
				ok = ok && p.Match(httpRecord()) && !p.Match(tcpRecord())
			}
			done <- ok
		}()
	}
	for i := 0; i < 4; i++ {
		if !<-done {
			t.Error("a concurrent evaluation gave a different result")
		}
	}
}
