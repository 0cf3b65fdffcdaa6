package h1

import (
	"strings"
	"testing"
)

// TestServeRepeatedHostAndMethod: the Host value and the method a connection's last request
// had are not checked again for the next request, but a request with another Host value is,
// and each request gets its own method.
func TestServeRepeatedHostAndMethod(t *testing.T) {
	in := "GET /a HTTP/1.1\r\nHost: h.example\r\n\r\n" +
		"GET /b HTTP/1.1\r\nHost: h.example\r\n\r\n" +
		"PROPFIND /c HTTP/1.1\r\nHost: h.example\r\n\r\n" +
		"PROPFIND /d HTTP/1.1\r\nHost: h.example:8080\r\n\r\n" +
		"POST /e HTTP/1.1\r\nHost: h.example:8080\r\nContent-Length: 1\r\n\r\nx" +
		"GET /f HTTP/1.1\r\nHost: h.example@evil\r\n\r\n"
	out, err := serve(t, &Server{}, in)
	if err == nil {
		t.Fatal("the request with an invalid Host was not rejected")
	}
	rs := readResponses(t, out)
	want := []string{"GET /a h.example ", "GET /b h.example ", "PROPFIND /c h.example ",
		"PROPFIND /d h.example:8080 ", "POST /e h.example:8080 "}
	if len(rs) != len(want)+1 {
		t.Fatalf("%d responses, want %d: %q", len(rs), len(want)+1, out)
	}
	for i, w := range want {
		if rs[i].status != 200 || strings.TrimSpace(rs[i].header.Get("X-Echo")) != strings.TrimSpace(w) {
			t.Errorf("response %d: %d %q, want %q", i, rs[i].status, rs[i].header.Get("X-Echo"), w)
		}
	}
	if last := rs[len(want)]; last.status != 400 || !strings.Contains(last.body, "Bad Request") {
		t.Errorf("invalid Host after valid ones: %d %q, want 400", last.status, last.body)
	}
}
