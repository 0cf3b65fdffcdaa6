package attributes

import (
	"testing"
	"unicode/utf8"
)

// FuzzCompile compiles arbitrary expressions (as a user's Telemetry resource may carry them)
// and evaluates those that compile against an HTTP and a TCP record: nothing may panic, and
// every evaluation ends within the cost limit.
func FuzzCompile(f *testing.F) {
	for _, s := range []string{
		`response.code >= 500`,
		`request.headers["x-user"].matches("^a+$") || request.url_path.startsWith("/api")`,
		`[1,2,3].all(x, [1,2].exists(y, x > y))`,
		`request.headers.exists(k, request.headers[k].size() > 100)`,
		`string(destination.port) + request.host`,
		`has(xds.cluster_name) && xds.cluster_name.split("|").size() == 4`,
		`metadata.filter_metadata["a"]["b"] == 1`,
		`response.flags % 2 == 1 ? upstream.address : "x"`,
		`((((((((((((((((1))))))))))))))))`,
		`"\u00e9" * 3`,
		`request.time + duration("1h") > timestamp("2026-01-01T00:00:00Z")`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		if !utf8.ValidString(expr) {
			return
		}
		p, err := Compile(expr)
		if err != nil {
			return
		}
		for _, r := range []*Record{httpRecord(), tcpRecord(), {}} {
			p.Match(r)
			p.Text(r)
		}
	})
}
