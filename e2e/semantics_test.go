package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// semanticsVS holds the finer points of Istio's HTTP routing for the host sem.example: rules
// that combine fields, delegation, per-destination header operations, redirect ports and
// disabled mirroring. A delegate VirtualService "sem-child" holds the routes under /d/.
var semanticsVS = edgeVS("sem", "e2e", "[sem.example]", `  http:
  - match: [{uri: {exact: /s/exact}}]
    rewrite: {uri: /replaced}
    route: [{destination: {host: web.e2e.svc.cluster.local, subset: a}}]
  - match: [{uri: {regex: "/s/re/[a-z]+"}, ignoreUriCase: true}]
    route: [{destination: {host: web.e2e.svc.cluster.local, subset: a}}]
  - match: [{uri: {prefix: /s/dest-headers}}]
    route:
    - destination: {host: web.e2e.svc.cluster.local, subset: a}
      weight: 50
      headers: {request: {set: {x-dest: to-a}}, response: {set: {x-dest-resp: from-a}}}
    - destination: {host: web.e2e.svc.cluster.local, subset: b}
      weight: 50
      headers: {request: {set: {x-dest: to-b}}, response: {set: {x-dest-resp: from-b}}}
  - match: [{uri: {prefix: /s/redirect-request-port}}]
    redirect: {uri: /moved, derivePort: FROM_REQUEST_PORT}
  - match: [{uri: {prefix: /s/redirect-https}}]
    redirect: {scheme: https, uri: /secure}
  - match: [{uri: {prefix: /s/redirect-port}}]
    redirect: {authority: other.example, port: 8443, redirectCode: 308}
  - match: [{uri: {prefix: /s/no-mirror}}]
    route: [{destination: {host: web.e2e.svc.cluster.local, subset: a}}]
    mirror: {host: web.e2e.svc.cluster.local, subset: b}
    mirrorPercentage: {value: 0}
  - match: [{uri: {prefix: /s/cors-regex}}]
    corsPolicy: {allowOrigins: [{regex: "https://.*\\.ok\\.example"}], allowMethods: [GET]}
    route: [{destination: {host: web.e2e.svc.cluster.local, subset: a}}]
  - match: [{uri: {prefix: /d/}}]
    delegate: {name: sem-child, namespace: e2e}
  - route: [{destination: {host: web.e2e.svc.cluster.local, subset: d}}]
---
`) + edgeVS("sem-hosts", "e2e", `[app.example.com, "*.wild.example"]`, `  http:
  - route: [{destination: {host: web.e2e.svc.cluster.local, subset: b}}]
`) + `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: sem-child, namespace: e2e}
spec:
  http:
  - match: [{uri: {prefix: /d/child}, headers: {x-k: {exact: "yes"}}}]
    route: [{destination: {host: web.e2e.svc.cluster.local, subset: a}}]
  - match: [{uri: {prefix: /d/child}}]
    route: [{destination: {host: web.e2e.svc.cluster.local, subset: b}}]
`

// testRoutingSemantics runs the sem.example cases of TestHTTPRouting against base, where
// semanticsVS is served. b is the backend of subset b (the mirror target).
func testRoutingSemantics(t *testing.T, base string, b *echoBackend) {
	const host = "sem.example"
	get := func(path string, hdr http.Header) *reply {
		t.Helper()
		return mustDo(t, h1Client, request{URL: base + path, Host: host, Header: hdr})
	}
	port := strings.TrimPrefix(base[strings.LastIndex(base, ":"):], ":")

	t.Run("rewrite of an exact match", func(t *testing.T) {
		rep := get("/s/exact?q=1", nil)
		if rep.Echo == nil || rep.Echo.Backend != "a" || rep.Echo.Path != "/replaced" || rep.Echo.Query != "q=1" {
			t.Fatalf("%d %+v; want a to see /replaced?q=1", rep.Code, rep.Echo)
		}
	})

	t.Run("regex with ignoreUriCase", func(t *testing.T) {
		// Envoy ignores case_sensitive for safe_regex paths, so Istio's ignoreUriCase does not
		// apply to a uri regex: the upper-case path falls through.
		for path, want := range map[string]string{"/s/re/abc": "a", "/S/RE/ABC": "d", "/s/re/ab1": "d"} {
			if rep := get(path, nil); rep.Echo == nil || rep.Echo.Backend != want {
				t.Errorf("%s: %d %.100s, want %s", path, rep.Code, rep.Body, want)
			}
		}
	})

	t.Run("per-destination headers", func(t *testing.T) {
		seen := map[string]int{}
		for i := 0; i < 40 && len(seen) < 2; i++ {
			rep := get("/s/dest-headers", nil)
			if rep.Echo == nil {
				t.Fatalf("%d %.200s", rep.Code, rep.Body)
			}
			be := rep.Echo.Backend
			if got := rep.Echo.Headers["x-dest"]; got != "to-"+be {
				t.Fatalf("backend %s saw x-dest %q, want to-%s", be, got, be)
			}
			if got := rep.Header.Get("x-dest-resp"); got != "from-"+be {
				t.Fatalf("response from %s carries x-dest-resp %q, want from-%s", be, got, be)
			}
			seen[be]++
		}
		if len(seen) != 2 {
			t.Fatalf("50/50 split reached only %s in 40 requests", fmtCounts(seen))
		}
	})

	t.Run("redirect ports", func(t *testing.T) {
		cases := []struct {
			path     string
			code     int
			location string
		}{
			{"/s/redirect-request-port", http.StatusMovedPermanently, "http://" + host + ":" + port + "/moved"},
			{"/s/redirect-https", http.StatusMovedPermanently, "https://" + host + "/secure"},
			{"/s/redirect-port/x", http.StatusPermanentRedirect, "http://other.example:8443/s/redirect-port/x"},
		}
		for _, c := range cases {
			rep := mustDo(t, h1Client, request{URL: base + c.path, Host: host + ":" + port})
			if rep.Code != c.code || rep.Header.Get("Location") != c.location {
				t.Errorf("%s: %d Location %q; want %d %q", c.path, rep.Code, rep.Header.Get("Location"), c.code, c.location)
			}
		}
	})

	t.Run("mirror at 0%", func(t *testing.T) {
		before := b.Hits()
		for i := 0; i < 5; i++ {
			if rep := get("/s/no-mirror", nil); rep.Echo == nil || rep.Echo.Backend != "a" {
				t.Fatalf("%d %.200s", rep.Code, rep.Body)
			}
		}
		// Mirrored requests are sent before the answer; give a stray one a moment to land.
		time.Sleep(200 * time.Millisecond)
		if n := b.Hits() - before; n != 0 {
			t.Fatalf("mirrorPercentage 0 still mirrored %d requests", n)
		}
	})

	t.Run("cors regex origin", func(t *testing.T) {
		pre := func(origin string) string {
			rep := mustDo(t, h1Client, request{Method: http.MethodOptions, URL: base + "/s/cors-regex", Host: host,
				Header: http.Header{"Origin": {origin}, "Access-Control-Request-Method": {"GET"}}})
			return rep.Header.Get("Access-Control-Allow-Origin")
		}
		if got := pre("https://app.ok.example"); got != "https://app.ok.example" {
			t.Errorf("matching origin: Access-Control-Allow-Origin %q", got)
		}
		if got := pre("https://app.ok.example.evil"); got != "" {
			t.Errorf("origin matching only a prefix of the regex allowed: %q", got)
		}
	})

	t.Run("virtual host domains", func(t *testing.T) {
		cases := []struct{ host, want string }{
			{"app.example.com", "b"},
			{"app.example.com:" + port, "b"},
			{"APP.Example.COM", "b"},
			{"x.wild.example", "b"},
			// Istio adds "*.wild.example:*", which Envoy reads as a suffix wildcard ending in a
			// literal "*": a wildcard host with a port falls to the "*" VirtualService (routes).
			{"x.y.wild.example:" + port, "a"},
			{"wild.example", "a"}, // not under the wildcard: the "*" VirtualService (routes)
		}
		for _, c := range cases {
			rep := mustDo(t, h1Client, request{URL: base + "/m/exact", Host: c.host})
			if rep.Echo == nil || rep.Echo.Backend != c.want {
				t.Errorf("Host %s: %d %.100s, want %s", c.host, rep.Code, rep.Body, c.want)
			}
		}
	})

	t.Run("delegate", func(t *testing.T) {
		cases := []struct {
			path string
			hdr  http.Header
			want string
		}{
			{"/d/child/x", http.Header{"X-K": {"yes"}}, "a"},
			{"/d/child/x", nil, "b"},
			{"/d/other", nil, "d"}, // no delegate route matches: falls through the root's rules
		}
		for _, c := range cases {
			rep := get(c.path, c.hdr)
			if rep.Echo == nil || rep.Echo.Backend != c.want {
				t.Errorf("%s %v: %d %.100s, want %s", c.path, c.hdr, rep.Code, rep.Body, c.want)
			}
		}
	})
}
