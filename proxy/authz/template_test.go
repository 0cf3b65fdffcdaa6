package authz

import (
	"strings"
	"testing"
)

// Templates Envoy's uri_template_lib accepts and refuses (after its own tests).
var (
	validTemplates = []string{
		"/", "/**", "/*", "/**.mpd", "/v1/**", "/a/b/c/", "/*/", "/**/", "/*/**", "/**/foo", "/**/a/b.txt",
		"/api/*/{resource=*}/{method=**}", "/media/{country}/{lang=*}/**", "/{foo}/{bar}/{fo}/{fum}/*",
		"/media/{contentId=**}", "/api/{version=*}/{url=**}", "/api/{VERSION}/{version}/{verSION}",
		"/media/abcdefghijklmnopqrstuvwxyz/*", "/{var=a/*/b}/c", "/{x=*}.jpg", "/videos/*/*/*.m4s",
		"/{a}/{b}/{c}/{d}/{e}", "/{abcdefghijklmnop}", "/a-b._~%20!$&'()+,;:@", "/*(", "/{x=foo}bar",
	}
	invalidTemplates = []string{
		"", "media", "/a//b", "//", "/a/**/*", "/**/**", "/**/{var}", "/{x=**}/*", "/media/{country=**}/{lang=*}/**",
		"/api/{version}/{version}", "/{a}/{b}/{c}/{d}/{e}/{f}", "/{abcdefghijklmnopq}", "/{1a}", "/{_a}", "/{=*}",
		"/{a=}", "/{a", "/a*", "/a b", "/a=b", "/{a=b/}", "/*.jpg/x", "/a?b", "/a#b", "/{a=**x}", "/***",
		"/api/v*/1234", "/api/{version=v*}/1234", "/api/{version=*beta}/1234", "/media/eff456/ll-sd-out.{ext}",
		"/media/eff456/ll-sd-out.**", "/link/{id=*}/asset*", "/media/{id=/*}/*", "/media/{contentId=/**}",
		"/api/{version.major}/{version.minor}", "/media/*{*}*", "/media/{*}/", "/media/*/index?a=2",
		"/\x01\x02", "/*(/**", "/caf\xc3\xa9", "/{a}}", "/a/{b}c/d",
	}
)

func TestParseURITemplate(t *testing.T) {
	for _, tmpl := range validTemplates {
		if _, err := parseURITemplate(tmpl); err != nil {
			t.Errorf("parseURITemplate(%q): %v", tmpl, err)
		}
	}
	for _, tmpl := range invalidTemplates {
		if _, err := parseURITemplate(tmpl); err == nil {
			t.Errorf("parseURITemplate(%q) succeeded", tmpl)
		}
	}
}

var templatePathCases = []struct {
	tmpl, path string
	want       bool
}{
	{"/", "/", true},
	{"/", "/a", false},
	{"/", "", false},
	{"/*", "/a", true},
	{"/*", "/", false},
	{"/*", "/a/", false},
	{"/*/", "/a/", true},
	{"/*/", "/a", false},
	{"/**", "/", true},
	{"/**", "/a/b/c", true},
	{"/**", "/a//b", true},
	{"/**", "/a b", false},
	{"/**", "/a=b", false},
	{"/**", "/%2F..%2F", true},
	{"/a/**", "/a", false},
	{"/a/**", "/a/", true},
	{"/a/**", "/ab", false},
	{"/**/foo", "//foo", true},
	{"/**/foo", "/foo", false},
	{"/**/foo", "/x/y/foo", true},
	{"/**/foo", "/x/y/foox", false},
	{"/**/a/b.txt", "/q/a/b.txt", true},
	{"/**/a/b.txt", "/q/a/bxtxt", false},
	{"/**.mpd", "/content/123/india/dash/55/manifest.mpd", true},
	{"/**.mpd", "/.mpd", true},
	{"/**.mpd", "/mpd", false},
	{"/videos/*/*/*.m4s", "/videos/123414/hls/1080p5000_00001.m4s", true},
	{"/videos/*/*/*.m4s", "/videos/123414/hls/.m4s", false},
	{"/videos/{file}", "/videos/1080p5000_00001.m4s", true},
	{"/api/*/{resource=*}/{method=**}", "/api/1/2/3/4", true},
	{"/api/*/{resource=*}/{method=**}", "/api/1/2", false},
	{"/api/*/{resource=*}/{method=**}", "/api/1/2/", true},
	{"/{var=a/*/b}/c", "/a/x/b/c", true},
	{"/{var=a/*/b}/c", "/a/x/y/b/c", false},
	{"/{x=*}.jpg", "/cat.jpg", true},
	{"/{x=*}.jpg", "/a.b.jpg", true},
	{"/{x=*}.jpg", "/.jpg", false},
	{"/{x=foo}bar", "/foobar", true},
	{"/{x=foo}bar", "/foo", false},
	{"/*(", "/a(", true},
	{"/*(", "/(", false},
	{"/a/b/c/", "/a/b/c/", true},
	{"/a/b/c/", "/a/b/c", false},
	{"/**/", "/", false},
	{"/**/", "//", true},
	{"/**/", "/a/b/", true},
	{"/*/**", "/a", false},
	{"/*/**", "/a/", true},
	{"/a", "/A", false},
	{"/a/*", "/a/caf\xc3\xa9", false},
}

func TestURITemplateMatch(t *testing.T) {
	for _, tc := range templatePathCases {
		ut, err := parseURITemplate(tc.tmpl)
		if err != nil {
			t.Fatalf("parseURITemplate(%q): %v", tc.tmpl, err)
		}
		if got := ut.match(tc.path); got != tc.want {
			t.Errorf("template %q path %q: match %v, want %v", tc.tmpl, tc.path, got, tc.want)
		}
		re, err := templateRegex(tc.tmpl)
		if err != nil {
			t.Fatalf("templateRegex(%q): %v", tc.tmpl, err)
		}
		if got := re.MatchString(tc.path); got != tc.want {
			t.Errorf("template %q path %q: Envoy's regex %s says %v, want %v", tc.tmpl, tc.path, re, got, tc.want)
		}
	}
}

func TestStripQueryAndFragment(t *testing.T) {
	for in, want := range map[string]string{
		"/a": "/a", "/a?b": "/a", "/a#b": "/a", "/a#b?c": "/a", "/a?b#c": "/a", "?": "", "": "",
	} {
		if got := stripQueryAndFragment(in); got != want {
			t.Errorf("stripQueryAndFragment(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzURITemplate checks that the template matcher accepts exactly the paths Envoy's regular
// expression for the template accepts, and that parsing never panics.
func FuzzURITemplate(f *testing.F) {
	for _, tmpl := range validTemplates {
		f.Add(tmpl, "/a/b.c")
	}
	for _, tmpl := range invalidTemplates {
		f.Add(tmpl, "/")
	}
	for _, tc := range templatePathCases {
		f.Add(tc.tmpl, tc.path)
	}
	f.Fuzz(func(t *testing.T, tmpl, path string) {
		ut, err := parseURITemplate(tmpl)
		if err != nil {
			return
		}
		if len(tmpl) > 256 {
			return // the proto refuses it; the regex would still compile
		}
		re, err := templateRegex(tmpl)
		if err != nil {
			t.Fatalf("templateRegex(%q): %v", tmpl, err)
		}
		p := stripQueryAndFragment(path)
		if got, want := ut.match(p), re.MatchString(p); got != want {
			t.Fatalf("template %q path %q: match %v, Envoy's regex %s says %v", tmpl, p, got, re, want)
		}
		// A path built to fit the template must match it.
		if built := buildPath(ut); !ut.match(built) {
			t.Fatalf("template %q does not match its own path %q", tmpl, built)
		}
	})
}

// buildPath returns a path that the template matches.
func buildPath(t *uriTemplate) string {
	var b strings.Builder
	for i, c := range t.comps {
		b.WriteByte('/')
		switch c.kind {
		case tmplLit:
			b.WriteString(c.lit)
		case tmplSeg:
			b.WriteString("x")
		case tmplText:
			if i%2 == 0 {
				b.WriteString("y/z")
			}
		}
	}
	if len(t.comps) == 0 {
		b.WriteByte('/')
	}
	b.WriteString(t.suffix)
	return b.String()
}
