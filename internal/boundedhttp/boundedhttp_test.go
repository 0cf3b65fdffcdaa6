package boundedhttp

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestGet(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/doc":
			w.Write([]byte("accept=" + r.Header.Get("Accept")))
		case "/big":
			w.Write([]byte(strings.Repeat("x", 101)))
		case "/exact":
			w.Write([]byte(strings.Repeat("x", 100)))
		case "/moved":
			http.Redirect(w, r, "/doc", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	client := &http.Client{CheckRedirect: NoRedirects}
	ctx := context.Background()

	if body, err := Get(ctx, client, srv.URL+"/doc", "text/plain", 100); err != nil || string(body) != "accept=text/plain" {
		t.Errorf("Get /doc: %q, %v", body, err)
	}
	if body, err := Get(ctx, client, srv.URL+"/exact", "text/plain", 100); err != nil || len(body) != 100 {
		t.Errorf("Get /exact: %d bytes, %v", len(body), err)
	}
	for path, want := range map[string]string{
		"/big":     "body larger than 100 bytes",
		"/missing": "status 404 Not Found",
		"/moved":   "status 302 Found",
	} {
		if _, err := Get(ctx, client, srv.URL+path, "text/plain", 100); err == nil || err.Error() != want {
			t.Errorf("Get %s: %v, want %q", path, err, want)
		}
	}
	if _, err := Get(ctx, client, "http://[::1", "text/plain", 100); err == nil {
		t.Error("a malformed URL was fetched")
	}
}
