package attributes

import (
	"regexp"
	"strings"

	"github.com/google/cel-go/common/types/ref"
	"testing"
	"unicode/utf8"
)

// diffRecords are the Records the differential tests evaluate against: an HTTP request, a TCP
// connection and an empty Record (every attribute absent but response.flags and connection.mtls).
func diffRecords() []*Record { return []*Record{httpRecord(), tcpRecord(), {}} }

// diffExprs is the differential table: each expression is evaluated by this package and by
// cel-go over diffRecords, and the results must agree (same type and value, or both an error,
// compile errors included).
var diffExprs = []string{
	// literals
	`1`, `-1`, `0x1F`, `-0x10`, `1u`, `0xFFu`, `18446744073709551615u`, `9223372036854775807`,
	`-9223372036854775808`, `1.5`, `.5`, `1e3`, `1.5e-3`, `1e400`, `-1e400`, `1e-400`, `-2.5`, `true`, `false`, `null`,
	`"abc"`, `'abc'`, `"""a"b"""`, `'''a'b'''`, `r"\n"`, `R'\d+'`, `"\n\t\\\""`, `"\x41\u00e9\U0001F600"`,
	`"\101\102"`, `b"abc"`, `b"\xff\377"`, `B'\x00'`, `rb"\x"`, `"\a\b\f\v\?\'\""`, `'\u00e9'.size()`,
	`[]`, `[1, 2, 3]`, `[1, "a", true]`, `{}`, `{"a": 1, "b": 2}`, `{1: "x", 2u: "y", true: "z"}`,
	`{"a": 1}["a"]`, `[1,2,][1]`, `{"a": 1,}.a`,
	"'''a\r\nb'''", "r'''a\rb'''", "\"\"\"a\r\"\"\"", "b'''\r\n'''",
	// comments and whitespace
	"1 + // one\n 2", "\t1\r\n==\f1",
	// arithmetic and overflow
	`1 + 2 * 3`, `(1 + 2) * 3`, `7 / 2`, `-7 / 2`, `7 % 3`, `-7 % 3`, `7u / 2u`, `7u % 2u`, `1.0 / 0.0`,
	`-1.0 / 0.0`, `0.0 / 0.0 == 0.0 / 0.0`, `9223372036854775807 + 1`, `-9223372036854775808 - 1`,
	`9223372036854775807 * 2`, `-9223372036854775808 / -1`, `-9223372036854775808 % -1`, `1 / 0`, `1 % 0`,
	`1u - 2u`, `18446744073709551615u + 1u`, `4294967296u * 4294967296u`, `1u / 0u`, `1.5 * 2.0`, `2.0 - 0.5`,
	`-(-9223372036854775807)`, `- -1`, `!true`, `!!false`, `"a" + "b"`, `b"a" + b"b"`, `[1] + [2, 3]`,
	`1 + 1u`, `1 + 1.0`, `"a" + 1`, `3 - 5`, `-(1.5)`,
	// comparisons, cross-type numbers, heterogeneous equality
	`1 == 1`, `1 == 1u`, `1 == 1.0`, `dyn(1) == 1u`, `dyn(1) == 1.0`, `dyn(1) == "1"`, `1 < 2u`, `2u < 1.5`,
	`-1 < 1u`, `1.5 > 1`, `1 <= 1.0`, `18446744073709551615u > 9223372036854775807`, `"a" < "b"`,
	`"abc" >= "abd"`, `b"a" < b"b"`, `false < true`, `null == null`, `[1, 2] == [1, 2]`, `[1, 2] != [2, 1]`,
	`{"a": 1} == {"a": 1}`, `{"a": 1} == {"a": 2}`, `[1, "a"] == [1, "a"]`, `dyn([1]) == dyn(["a"])`,
	`duration("1s") < duration("2s")`, `timestamp("2026-01-01T00:00:00Z") > timestamp("2025-01-01T00:00:00Z")`,
	`dyn(1) < "a"`, `1 == "a"`, `dyn([1, 2]) == [1.0, 2u]`,
	// logic with errors absorbed
	`true || 1 / 0 == 1`, `1 / 0 == 1 || true`, `false && 1 / 0 == 1`, `1 / 0 == 1 && false`,
	`1 / 0 == 1 && true`, `true || false`, `false || false`, `dyn(1) || true`, `dyn(1) && true`,
	`true ? 1 : 2`, `false ? 1 : 2`, `1 / 0 == 1 ? 1 : 2`, `dyn(1) ? 1 : 2`, `true ? "a" : 1`,
	// in
	`1 in [1, 2]`, `3 in [1, 2]`, `1u in [1, 2]`, `"a" in {"a": 1}`, `"b" in {"a": 1}`, `1 in {1u: "a"}`,
	`2.0 in [1, 2]`, `"a" in ["a"]`,
	// macros
	`[1, 2, 3].all(x, x > 0)`, `[1, 2, 3].all(x, x > 1)`, `[1, 2, 3].exists(x, x > 2)`,
	`[1, 2, 3].exists(x, x > 5)`, `[1, 2, 3].exists_one(x, x > 2)`, `[1, 2, 3].exists_one(x, x > 1)`,
	`[1, 2, 3].map(x, x * 2)`, `[1, 2, 3].map(x, x > 1, x * 10)`, `[1, 2, 3].filter(x, x % 2 == 1)`,
	`{"a": 1, "b": 2}.all(k, k.size() == 1)`, `{"a": 1, "b": 2}.map(k, k + "!").size()`,
	`[0, 1].all(x, 1 / x > 0)`, `[0, 1].exists(x, 1 / x > 0)`, `[1, 0].exists(x, 1 / x > 5)`,
	`[0, 1].exists_one(x, 1 / x == 1)`, `[[1, 2], [3]].map(l, l.size())`, `[1, 2].all(x, [3, 4].all(y, y > x))`,
	`[1, 2].map(x, [x].map(y, y + x))`, `has({"a": 1}.a)`, `has({"a": 1}.b)`, `[1, 2].all(x, x)`,
	`[].all(x, x > 0)`, `[].exists(x, x > 0)`, `1.all(x, true)`,
	// functions
	`size("héllo")`, `"héllo".size()`, `size(b"abc")`, `size([1, 2])`, `size({"a": 1})`, `"abc".contains("b")`,
	`"abc".startsWith("ab")`, `"abc".endsWith("bc")`, `"abc".matches("^a.c$")`, `matches("abc", "b")`,
	`"abc".matches("[")`, `"ABC".matches("(?i)abc")`, `int("42")`, `int("x")`, `int(1.9)`, `int(-1.9)`,
	`int(1e19)`, `int(18446744073709551615u)`, `int(42u)`, `uint(42)`, `uint(-1)`, `uint("7")`, `uint(2.5)`,
	`double(1)`, `double("1.5")`, `double(2u)`, `string(1)`, `string(1u)`, `string(1.5)`, `string(true)`,
	`string(b"abc")`, `string(b"\xff")`, `string(duration("90s"))`, `string(timestamp("2026-05-04T03:02:01.5Z"))`,
	`bytes("abc")`, `bool("true")`, `bool("nope")`, `duration("1h30m")`, `duration("-1.5s")`, `duration("x")`,
	`timestamp("2026-05-04T03:02:01Z")`, `timestamp("2026-05-04T05:02:01+02:00")`, `timestamp("bad")`,
	`int(timestamp("1970-01-01T00:01:00Z"))`, `timestamp(60)`, `dyn("a")`,
	`timestamp("2026-05-04T03:02:01Z").getFullYear()`, `timestamp("2026-05-04T03:02:01Z").getMonth()`,
	`timestamp("2026-05-04T03:02:01Z").getDayOfYear()`, `timestamp("2026-05-04T03:02:01Z").getDayOfMonth()`,
	`timestamp("2026-05-04T03:02:01Z").getDate()`, `timestamp("2026-05-04T03:02:01Z").getDayOfWeek()`,
	`timestamp("2026-05-04T03:02:01.250Z").getMilliseconds()`, `timestamp("2026-05-04T03:02:01Z").getHours("+05:30")`,
	`timestamp("2026-05-04T03:02:01Z").getMinutes("-01:15")`, `timestamp("2026-05-04T23:02:01Z").getDate("Asia/Tokyo")`,
	`duration("3h25m").getHours()`, `duration("3h25m").getMinutes()`, `duration("3h25m7s").getSeconds()`,
	`duration("1.5s").getMilliseconds()`, `timestamp("2026-01-01T00:00:00Z") + duration("36h")`,
	`duration("1h") + timestamp("2026-01-01T00:00:00Z")`, `timestamp("2026-01-02T00:00:00Z") - timestamp("2026-01-01T00:00:00Z")`,
	`timestamp("2026-01-01T00:00:00Z") - duration("1s")`, `duration("1s") + duration("500ms")`,
	`duration("1s") - duration("2s")`, `timestamp("9999-12-31T23:59:59Z") + duration("1s")`,
	// attributes
	`request.path`, `request.url_path`, `request.query`, `request.host`, `request.method`, `request.scheme`,
	`request.headers["user-agent"]`, `request.headers["USER-AGENT"]`, `request.headers["x-multi"]`,
	`request.headers["x-missing"]`, `request.headers[":path"]`, `request.time`, `request.duration`,
	`request.size`, `request.total_size`, `request.headers_bytes`, `request.referer`, `request.useragent`,
	`request.id`, `request.protocol`, `response.code`, `response.code >= 500`, `response.code_details`,
	`response.flags`, `response.grpc_status`, `response.headers["content-type"]`, `response.headers[":status"]`,
	`response.trailers["grpc-status"]`, `response.size`, `response.total_size`, `source.address`, `source.port`,
	`destination.address`, `destination.port`, `connection.mtls`, `connection.requested_server_name`,
	`connection.uri_san_peer_certificate`, `connection.dns_san_peer_certificate`,
	`connection.subject_peer_certificate`, `connection.subject_local_certificate`,
	`connection.sha256_peer_certificate_digest`, `upstream.address`, `upstream.port`, `upstream.local_address`,
	`upstream.transport_failure_reason`, `upstream.request_attempt_count`, `xds.cluster_name`, `xds.route_name`,
	`metadata.filter_metadata["envoy.filters.http.rbac"]["n"]`, `metadata.filter_metadata["envoy.filters.http.rbac"].shadow_effective_policy_id`,
	`response.code >= 400 && request.headers["x"] == "y"`, `response.code >= 500 || request.method == "GET"`,
	`has(response.code)`, `has(request.headers)`, `"user-agent" in request.headers`, `"x" in request.headers`,
	`request.headers.exists(k, k.startsWith("x-"))`, `request.headers.all(k, k.size() > 1)`,
	`request.headers.filter(k, k.startsWith("x-"))`, `size(request.headers)`, `request.headers.size() > 3`,
	`request.headers.exists_one(k, k == "referer")`, `request.headers.map(k, request.headers[k].size())`,
	`response.flags % 2 == 1 ? upstream.address : "x"`, `string(destination.port) + request.host`,
	`upstream.request_attempt_count == 2`, `upstream.request_attempt_count > 1u`, `response.code == 503u`,
	`response.code == 503.0`, `request.duration > duration("1s")`, `request.time.getHours()`,
	`request.time + duration("1h") > timestamp("2026-01-01T00:00:00Z")`, `request.headers[1]`,
	`1 in request.headers`, `request.path.matches("^/api/v[0-9]+/")`, `request.path.matches(request.method)`,
	`xds.cluster_name.startsWith("outbound|") && xds.cluster_name.endsWith(".local")`,
	`request.host.contains(":") ? request.host : request.host + ":80"`, `request == request`,
	`size(request)`, `request.size() > 0`, `{"a": request.method}.a`, `[request.method, response.code]`,
	`[1, 2].all(request, request > 0)`, `.request.method`, `response.code + 1u`, `response.code + 1`,
	`response.code * response.code`, `response.grpc_status != 0 || response.code == 200`,
	// edge cases of conversions, formatting and ordering
	`string(1e100)`, `string(1.0)`, `string(-0.0)`, `string(0.1 + 0.2)`, `string(123456789.0)`, `string(1e-7)`,
	`double("inf")`, `double("-Infinity")`, `double("NaN") == double("NaN")`, `double("1e400")`, `int("-0")`,
	`int("+1")`, `int(" 1")`, `uint("+1")`, `uint("-0")`, `int(-9223372036854775808.0)`, `int(9223372036854775807.0)`,
	`uint(18446744073709551615.0)`, `double(18446744073709551615u)`, `duration("1.5h")`, `duration("-0s")`,
	`duration("1h1m1s1ms1us1ns")`, `duration("2562047h")`, `duration("3000000h")`, `duration("1d")`,
	`string(duration("-1.000000001s"))`, `string(duration("0s"))`, `string(duration("100ms"))`,
	`timestamp("2026-05-04T03:02:01.123456789Z")`, `timestamp("2026-05-04T03:02:01z")`,
	`timestamp("0001-01-01T00:00:00Z")`, `timestamp("9999-12-31T23:59:59.999999999Z")`,
	`timestamp("2026-05-04 03:02:01Z")`, `timestamp("2026-13-04T03:02:01Z")`, `timestamp(-62135596800)`,
	`timestamp(-62135596801)`, `timestamp(253402300800)`, `timestamp("0001-01-01T00:00:00Z") - duration("1ns")`,
	`timestamp("9999-12-31T00:00:00Z") - timestamp("0001-01-01T00:00:00Z")`,
	`timestamp("2026-03-29T01:30:00Z").getHours("Europe/Berlin")`, `timestamp("2026-05-04T03:02:01Z").getDayOfWeek("America/Los_Angeles")`,
	`timestamp("2026-05-04T03:02:01Z").getHours("Nowhere/Nothing")`, `timestamp("2026-05-04T03:02:01Z").getHours("UTC")`,
	`timestamp("2026-05-04T03:02:01Z").getSeconds()`, `timestamp("2026-12-31T03:02:01Z").getDayOfYear()`,
	`timestamp("2026-05-04T03:02:01Z").getMinutes("+14:00")`, `timestamp("2026-05-04T03:02:01Z").getHours("05:00")`,
	`duration("-90m").getHours()`, `duration("-1500ms").getSeconds()`, `duration("1h").getMilliseconds()`,
	`"é" < "f"`, `"ÿ" > "þ"`, `"a" < "ab"`, `b"ÿ" > b"a"`, `"" < "a"`, `size("")`, `"".contains("")`,
	`"abc".startsWith("")`, `"🙂".size()`, `size(b"🙂")`, `"x" + "🙂" == "x🙂"`,
	`1.0 == 1`, `0.0 == -0.0`, `-0.0 < 0.0`, `double("NaN") < 1.0`, `double("NaN") > 1`, `double("NaN") == 1`,
	`1e300 * 1e300`, `-1e300 * 1e300`, `9007199254740993 == 9007199254740992.0`, `9007199254740993 > 9007199254740992.0`,
	`18446744073709551615u == 18446744073709551616.0`, `-1 < 18446744073709551615u`, `dyn(1u) == -1`,
	`{1: "a"}[1u]`, `{1u: "a"}[1]`, `{1: "a"}[1.0]`, `{"a": 1}[dyn(1)]`, `1.5 in {1: "a"}`, `1.0 in {1: "a"}`,
	`[1, 2, 3][1.0]`, `[1, 2, 3][dyn(1u)]`, `[1, 2, 3][dyn(1.5)]`, `dyn([1, 2])[5]`, `[[1], [2]][1][0]`,
	`{"a": {"b": 1}}.a.b`, `{"a": 1}.b`, `has({"a": {"b": 1}}.a.b)`, `has({"a": {"b": 1}}.a.c)`,
	`dyn(1).a`, `has(dyn(1).a)`, `size(dyn(1))`, `dyn("abc").size()`, `dyn(1) + 1u`, `dyn(1) + 1`,
	`dyn(true) && 1 == 1`, `!dyn(1)`, `-dyn("a")`, `dyn(1) in [1]`, `"a" in dyn("abc")`,
	`[1, 2] + []`, `[] + [1]`, `[1] + dyn("a")`, `[1, 2].map(x, x / 0)`, `[1, 2].filter(x, x / 0 == 1)`,
	`[1, 2].map(x, x > 1, x / 0)`, `[1, 2].filter(x, 1)`, `[1, 2].exists_one(x, 1)`, `[1].all(x, x == 1 || 1 / 0 == 1)`,
	`[1, 2].map(x, [x, x * 2])`, `[1, 2].map(x, {x: x})`, `[1, 2].all(x, [x].exists(y, y == x))`,
	`[1, 2].exists(x, x == 2) ? "yes" : "no"`, `{"a": 1, "b": 2}.exists_one(k, k == "a")`,
	`{"a": 1, "b": 2}.filter(k, k == "b")`, `{"a": 1}.map(k, 1 / 0).size()`,
	`request.headers.exists(k, request.headers[k] == "")`, `request.headers.filter(k, k.startsWith(":"))`,
	`request.headers.map(k, k).size() == size(request.headers)`, `response.headers.all(k, k == ":status" || k == "content-type")`,
	`response.trailers.map(k, response.trailers[k])`, `request.headers["x-multi"].size()`, `request.headers["X-Empty"] == ""`,
	`request.headers[":method"] + request.headers[":path"]`, `request.headers[":status"]`, `response.headers[":path"]`,
	`metadata.filter_metadata["envoy.filters.http.rbac"]`, `metadata.filter_metadata.exists(k, k.contains("rbac"))`,
	`metadata.filter_metadata["x"]`, `size(metadata.filter_metadata)`, `"envoy.filters.http.rbac" in metadata.filter_metadata`,
	`int(metadata.filter_metadata["envoy.filters.http.rbac"].n) + 1`, `metadata.filter_metadata["envoy.filters.http.rbac"].n == 3`,
	`source.address.startsWith(string(source.port))`, `upstream.port + destination.port`, `response.flags / 0x20 == 1025`,
	`response.flags.size()`, `response.code.matches("5")`, `string(response.code).matches("^5")`,
	`request.url_path.matches("(?i)/API/")`, `request.time - timestamp("2026-01-01T00:00:00Z") > duration("1h")`,
	`request.duration.getMilliseconds()`, `request.time.getDayOfWeek()`, `connection.mtls == true`, `connection.mtls == 1`,
	`upstream.request_attempt_count - 2u`, `upstream.request_attempt_count - 3u`, `response.grpc_status in [14, 15]`,
	`response.code in {503: true}`, `request.size + response.size`, `request.headers_bytes > response.headers_bytes`,
	`[request.method, request.scheme].exists(x, x == "http")`, `{"m": request.method, "s": request.scheme}.m`,
	`request.method == "POST" ? request.headers["content-length"] : "0"`, `int(request.headers["content-length"])`,
	// compile errors
	`foo`, `request.foo`, `xds.node`, `filter_state`, `1 +`, `(1`, `[1`, `{1: }`, `a.b.c(`, `1 == `, `if`,
	`true.if`, `"abc".split("b")`, `type(1)`, `int`, `1 == "a"`, `!1`, `-"a"`, `1 && true`, `"a" ? 1 : 2`,
	`{[1]: 2}`, `"abc"[0]`, `1.foo`, `has(1)`, `{1: 2}["a"]`, `[1][true]`, `"abc".size(1)`, `size()`,
	`"\z"`, `"\u00"`, `'unterminated`, `"a` + "\n" + `"`, `1..2`, `@`, `a.1`, `[1, 2].map(1, 2)`,
	`[1].all(x.y, true)`, `Foo{}`, `{1: 1, 1: 2}`, `{dyn(1): 1, dyn(1): 2}`, `[1, 2][2]`, `[1, 2][-1]`,
	`{"a": 1}["b"]`, `[1, 2][1u]`, `[,]`, `{,}`, `[,1]`, `!!0`, `- -"a"`, "//\r1", `0x`, `1e`, `1u2`, `"\377" == "\u00ff"`, `"\ud800"`,
}

// TestDifferential evaluates diffExprs with this package and with cel-go.
func TestDifferential(t *testing.T) {
	if len(diffExprs) < 150 {
		t.Fatalf("the table has %d expressions, want at least 150", len(diffExprs))
	}
	values := 0
	for _, expr := range diffExprs {
		if why, ok := specDeviations[expr]; ok {
			if want, ok := deviationResults[expr]; ok {
				v, err := mustCompile(t, expr).Eval(httpRecord())
				if got := canonOurs(v, err); got != want {
					t.Errorf("%q = %s, want %s (%s)", expr, got, want, why)
				}
			} else if _, err := Compile(expr); err == nil {
				if _, err := mustCompile(t, expr).Eval(httpRecord()); err == nil {
					t.Errorf("%q evaluated, want an error (%s)", expr, why)
				}
			}
			continue
		}
		values += diffOne(t, expr, true)
	}
	// Most comparisons are of values, not of errors on both sides.
	if values < 600 {
		t.Errorf("only %d comparisons of values", values)
	}
	t.Logf("%d expressions, %d agreeing values", len(diffExprs), values)
}

// specDeviations are expressions where cel-go departs from CEL's language definition and this
// package follows it; they must be errors here.
var specDeviations = map[string]string{
	`{[1]: 2}`:                              "map keys must be int, uint, bool or string",
	`{1: 1, 1: 2}`:                          "duplicate map keys are an error",
	`{dyn(1): 1, dyn(1): 2}`:                "duplicate map keys are an error",
	`!!0`:                                   "each ! applies (cel-go's parser drops pairs of them)",
	`- -"a"`:                                "each - applies (cel-go's parser drops pairs of them)",
	`9007199254740993 > 9007199254740992.0`: "numbers compare exactly across types (cel-go converts the int to a double)",
	`timestamp("2026-05-04T03:02:01Z").getHours("05:00")`: "a fixed time zone has a sign (langdef, Timezones)",
	`has(dyn(1).a)`:                          "has() of a field of a value that is neither a map nor a message is an error",
	`int(request.headers["content-length"])`: "int() of a string read from a map (cel-go: no such overload)",
	"//\r1":                                  "a comment ends at any line break, \\r included (langdef NEWLINE)",
}

// repeatedUnary matches the repeated unary operators cel-go's parser drops in pairs.
var repeatedUnary = regexp.MustCompile(`!\s*!|-\s*-`)

// deviationResults are the results (on httpRecord) of the specDeviations that are not errors.
var deviationResults = map[string]string{
	`9007199254740993 > 9007199254740992.0`:  "bool:true",
	`int(request.headers["content-length"])`: "int:12",
	"//\r1":                                  "int:1",
}

// deviates reports whether err is one of this package's errors where cel-go departs from the
// language definition (specDeviations).
func deviates(err error) bool {
	s := err.Error()
	return strings.Contains(s, "repeated key") || strings.Contains(s, "key type")
}

func mustCompile(t *testing.T, expr string) *Program {
	t.Helper()
	p, err := Compile(expr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// diffOne compares the two implementations on expr. A compile error counts as an error on every
// record (cel-go folds constants when planning, so some of its evaluation errors are compile
// errors). Where this package refuses a feature it does not implement or an attribute it does not
// provide, by name, there is nothing to compare; strict (the table) allows that only for the
// attributes, which strait-proxy refused with cel-go too.
func diffOne(t *testing.T, expr string, strict bool) (values int) {
	t.Helper()
	ours, oerr := Compile(expr)
	theirs, terr := refProgram(expr)
	if oerr != nil && terr == nil && refusedFeature(oerr) {
		if strict && !strings.Contains(oerr.Error(), "attribute ") && !expectRefused[expr] {
			t.Errorf("%q: refused (%v), cel-go compiles it", expr, oerr)
		}
		return 0
	}
	for i, r := range diffRecords() {
		var v Value
		err := oerr
		if err == nil {
			v, err = ours.Eval(r)
		}
		var rv ref.Val
		rerr := terr
		if rerr == nil {
			rv, rerr = refEval(theirs, r)
		}
		if isCostErr(err) || isCostErr(rerr) {
			continue // the two cost models differ
		}
		if !strict && err != nil && rerr == nil && (deviates(err) || repeatedUnary.MatchString(expr)) {
			continue // see specDeviations
		}
		if !strict && strings.Contains(expr, "//") && strings.Contains(expr, "\r") {
			continue // see specDeviations: cel-go ends comments at \n only
		}
		got, want := canonOurs(v, err), canonRef(rv, rerr)
		if got != want {
			t.Errorf("%q (record %d): ours %s (%v), cel-go %s (%v)", expr, i, got, err, want, rerr)
		} else if got != "error" {
			values++
		}
	}
	return values
}

// expectRefused are the table's expressions that cel-go accepts and strait-proxy refuses by name.
var expectRefused = map[string]bool{`type(1)`: true, `int`: true}

func isCostErr(err error) bool { return err != nil && strings.Contains(err.Error(), "cost limit") }

// refusedFeature reports whether a compile error is a refusal of something strait-proxy does
// not implement, or one of its limits, rather than a disagreement.
func refusedFeature(err error) bool {
	s := err.Error()
	return strings.Contains(s, "not supported by strait-proxy") || strings.Contains(s, "exceeds limit") ||
		strings.Contains(s, "recursion limit")
}

// FuzzDifferential compiles arbitrary expressions with both implementations: where both compile,
// the results over diffRecords must agree (except where a cost limit ends either). Where only
// cel-go compiles, this package must have refused a feature it does not implement (or a limit).
func FuzzDifferential(f *testing.F) {
	for _, s := range diffExprs[:40] {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		if !utf8.ValidString(expr) || len(expr) > 512 {
			return
		}
		diffOne(t, expr, false)
	})
}
