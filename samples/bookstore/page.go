package bookstore

import (
	"bytes"
	"html/template"
	"net/http"
)

// renderHTML executes t with data and writes the result with the given status. The page is
// rendered into a buffer first so that a template error becomes a clean 500.
func renderHTML(w http.ResponseWriter, status int, t *template.Template, data any) {
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		http.Error(w, "rendering page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// stars returns n filled stars followed by 5-n empty ones.
func stars(n int) string {
	var b []rune
	for i := range 5 {
		if i < n {
			b = append(b, '★')
		} else {
			b = append(b, '☆')
		}
	}
	return string(b)
}

// layout is shared by every page: a header with the sign-in form, the page body, and a footer
// naming the versions that answered.
const layout = `{{define "head"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Strait bookstore</title>
<style>
body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#222}
header{display:flex;justify-content:space-between;align-items:center;border-bottom:1px solid #ddd}
.err{color:#a00;font-style:italic} .review{border-left:3px solid #ddd;padding-left:1rem;margin:1rem 0}
.black{color:#000} .red{color:#c00} footer{margin-top:2rem;color:#666;font-size:.9rem}
code{background:#f4f4f4;padding:0 .2rem} table td{padding:.1rem .8rem .1rem 0}
</style></head><body>
<header><h1><a href="/" style="color:inherit;text-decoration:none">Strait bookstore</a></h1>
{{if .User}}<form method="post" action="/logout">signed in as <b>{{.User}}</b> <button>sign out</button></form>
{{else}}<form method="post" action="/login"><input name="user" placeholder="user (try jason)" size="14"> <button>sign in</button></form>{{end}}
</header>{{end}}
{{define "foot"}}<footer>{{template "versions" .}}</footer></body></html>{{end}}`

var indexTemplate = template.Must(template.Must(template.New("layout").Parse(layout)).New("index").Parse(`{{template "head" .}}
<h2>Books</h2>
{{if .Error}}<p class="err">{{.Error}}</p>{{else}}<ul>
{{range .Books}}<li><a href="/book/{{.ID}}">{{.Title}}</a> by {{.Author}}</li>
{{end}}</ul>{{end}}
{{define "versions"}}served by <code>{{.Service}} {{.Version}}</code>{{with .Details}} · <code>{{.Service}} {{.Version}}</code>{{end}}{{end}}
{{template "foot" .}}`))

var bookTemplate = template.Must(template.Must(template.New("layout").Funcs(template.FuncMap{"stars": stars}).Parse(layout)).New("book").Parse(`{{template "head" .}}
{{with .Details}}<h2>{{.Title}}</h2>
<p>by {{.Author}}, {{.Year}}</p>
<table>
<tr><td>Type</td><td>{{.Type}}</td></tr><tr><td>Pages</td><td>{{.Pages}}</td></tr>
<tr><td>Publisher</td><td>{{.Publisher}}</td></tr><tr><td>Language</td><td>{{.Language}}</td></tr>
<tr><td>ISBN-10</td><td>{{.ISBN10}}</td></tr><tr><td>ISBN-13</td><td>{{.ISBN13}}</td></tr>
</table>{{else}}<h2>Book {{.ID}}</h2><p class="err">{{.DetailsError}}</p>{{end}}
<h3>Reviews</h3>
{{if .ReviewsError}}<p class="err">{{.ReviewsError}}</p>{{else}}{{range .Reviews}}<div class="review">
<p>{{.Text}}</p><p>— {{.Reviewer}}{{with .Rating}}{{if .Error}} <span class="err">{{.Error}}</span>{{else}} <span class="{{.Color}}">{{stars .Stars}}</span>{{end}}{{end}}</p>
</div>{{else}}<p>No reviews yet.</p>{{end}}{{end}}
{{define "versions"}}served by {{range $s, $v := .Versions}}<code>{{$s}} {{$v}}</code> {{end}}· request <code>{{.RequestID}}</code>{{end}}
{{template "foot" .}}`))
