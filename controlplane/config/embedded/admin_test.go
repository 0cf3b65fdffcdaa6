package embedded

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strait-mesh/strait/controlplane/mesh/meshtest"
)

func TestRequireAdmin(t *testing.T) {
	minted := 0
	h := RequireAdmin("s3cret", BootstrapTokenHandler(func(r BootstrapTokenRequest) (BootstrapTokenResponse, error) {
		minted++
		return BootstrapTokenResponse{Token: "sbt1.x", Identity: "spiffe://cluster.local/ns/" + r.Namespace + "/sa/" + r.ServiceAccount, Expires: time.Now()}, nil
	}))
	cases := []struct {
		remote, auth, body string
		want               int
	}{
		{"127.0.0.1:5000", "Bearer s3cret", `{"namespace":"a","serviceAccount":"b"}`, http.StatusOK},
		{"[::1]:5000", "Bearer s3cret", `{"namespace":"a","serviceAccount":"b"}`, http.StatusOK},
		{"[::ffff:127.0.0.1]:5000", "Bearer s3cret", `{"namespace":"a","serviceAccount":"b"}`, http.StatusOK},
		{"192.0.2.7:5000", "Bearer s3cret", `{"namespace":"a","serviceAccount":"b"}`, http.StatusForbidden},
		{"[2001:db8::1]:5000", "Bearer s3cret", `{"namespace":"a","serviceAccount":"b"}`, http.StatusForbidden},
		{"garbage", "Bearer s3cret", `{"namespace":"a","serviceAccount":"b"}`, http.StatusForbidden},
		{"127.0.0.1:5000", "", `{"namespace":"a","serviceAccount":"b"}`, http.StatusUnauthorized},
		{"127.0.0.1:5000", "Bearer s3cre", `{"namespace":"a","serviceAccount":"b"}`, http.StatusUnauthorized},
		{"127.0.0.1:5000", "bearer s3cret", `{"namespace":"a","serviceAccount":"b"}`, http.StatusUnauthorized},
		{"127.0.0.1:5000", "Bearer s3cret", `{"namespace":"a"}`, http.StatusUnprocessableEntity},
		{"127.0.0.1:5000", "Bearer s3cret", `{"namespace":"a","serviceAccount":"b","ttlSeconds":-1}`, http.StatusUnprocessableEntity},
		{"127.0.0.1:5000", "Bearer s3cret", `{"namespace":"a","serviceAccount":"b","admin":true}`, http.StatusBadRequest},
		{"127.0.0.1:5000", "Bearer s3cret", `{"namespace":"a","serviceAccount":"b"}{}`, http.StatusBadRequest},
		{"127.0.0.1:5000", "Bearer s3cret", strings.Repeat(" ", 5000), http.StatusRequestEntityTooLarge},
	}
	for _, c := range cases {
		rec := serve(h, http.MethodPost, BootstrapTokensPath, c.remote, c.auth, c.body)
		if rec.Code != c.want {
			t.Errorf("%s %q %s: %d %s, want %d", c.remote, c.auth, c.body, rec.Code, rec.Body, c.want)
		}
		if rec.Code != http.StatusOK && strings.Contains(rec.Body.String(), "sbt1.") {
			t.Errorf("refused response carries a token: %s", rec.Body)
		}
	}
	if minted != 3 {
		t.Errorf("minted %d tokens, want 3", minted)
	}
	// An empty admin token admits nobody.
	rec := serve(RequireAdmin("", h), http.MethodPost, BootstrapTokensPath, "127.0.0.1:1", "Bearer ", `{"namespace":"a","serviceAccount":"b"}`)
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("empty admin token: %d, want 401", rec.Code)
	}
}

// TestStoreWritesRequireAdmin: apply and delete (by documents and by name) need a loopback
// client with the admin token; listing does not.
func TestStoreWritesRequireAdmin(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h := s.Handler("s3cret")
	vs := meshtest.Object("VirtualService", "reviews", "default", `  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
`)
	do := func(method, path, remote, auth, body string) int {
		return serve(h, method, path, remote, auth, body).Code
	}
	writes := []struct{ method, path, body string }{
		{http.MethodPost, "/apis/v1/apply", vs},
		{http.MethodPost, "/apis/v1/delete", vs},
		{http.MethodDelete, "/apis/v1/objects/VirtualService/default/reviews", ""},
	}
	for _, w := range writes {
		for _, c := range []struct {
			remote, auth string
			want         int
		}{
			{"127.0.0.1:1", "", http.StatusUnauthorized},
			{"127.0.0.1:1", "Bearer wrong", http.StatusUnauthorized},
			{"127.0.0.1:1", "s3cret", http.StatusUnauthorized},
			{"192.0.2.7:1", "Bearer s3cret", http.StatusForbidden},
		} {
			if got := do(w.method, w.path, c.remote, c.auth, w.body); got != c.want {
				t.Errorf("%s %s from %s with %q: %d, want %d", w.method, w.path, c.remote, c.auth, got, c.want)
			}
		}
	}
	if n := len(s.List()); n != 0 {
		t.Fatalf("refused writes stored %d objects", n)
	}
	if got := do(http.MethodPost, "/apis/v1/apply", "127.0.0.1:1", "Bearer s3cret", vs); got != http.StatusOK {
		t.Fatalf("apply with the token: %d", got)
	}
	if got := do(http.MethodGet, "/apis/v1/objects?kind=VirtualService", "192.0.2.7:1", "", ""); got != http.StatusOK {
		t.Errorf("list without a token: %d, want 200", got)
	}
	if got := do(http.MethodPost, "/apis/v1/delete", "[::1]:1", "Bearer s3cret", vs); got != http.StatusOK {
		t.Errorf("delete with the token: %d", got)
	}
	if got := do(http.MethodPost, "/apis/v1/apply", "127.0.0.1:1", "Bearer s3cret", vs); got != http.StatusOK {
		t.Fatalf("apply with the token: %d", got)
	}
	if got := do(http.MethodDelete, "/apis/v1/objects/VirtualService/default/reviews", "127.0.0.1:1", "Bearer s3cret", ""); got != http.StatusOK {
		t.Errorf("delete by name with the token: %d", got)
	}
	if n := len(s.List()); n != 0 {
		t.Errorf("after deletes: %d objects", n)
	}
	// An empty admin token admits nobody.
	if rec := serve(s.Handler(""), http.MethodPost, "/apis/v1/apply", "127.0.0.1:1", "Bearer ", vs); rec.Code != http.StatusUnauthorized {
		t.Errorf("empty admin token: %d, want 401", rec.Code)
	}
}

// serve has h answer a request from remote with body and, unless auth is "", that Authorization
// header.
func serve(h http.Handler, method, path, remote, auth, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.RemoteAddr = remote
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}
