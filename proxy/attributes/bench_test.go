package attributes

import "testing"

// BenchmarkMatch measures one access log filter evaluation per request (activation from the
// pool, the attribute looked up on demand).
func BenchmarkMatch(b *testing.B) {
	for _, bc := range []struct{ name, expr string }{
		{"code", `response.code >= 500`},
		{"header", `request.headers["user-agent"].startsWith("curl")`},
		{"and", `response.code >= 500 && request.url_path.startsWith("/api")`},
		{"typical", `response.code >= 400 && request.headers['x'] == 'y'`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p, err := CompileBool(bc.expr)
			if err != nil {
				b.Fatal(err)
			}
			r := httpRecord()
			b.ReportAllocs()
			for b.Loop() {
				p.Match(r)
			}
		})
	}
}

// BenchmarkText measures one dimension (request.host) per request.
func BenchmarkText(b *testing.B) {
	p, err := Compile(`request.host`)
	if err != nil {
		b.Fatal(err)
	}
	r := httpRecord()
	b.ReportAllocs()
	for b.Loop() {
		p.Text(r)
	}
}
