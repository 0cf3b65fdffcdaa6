package jwks

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

func keySet(t *testing.T, private bool) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var key any = &k.PublicKey
	if private {
		key = k
	}
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func waitKeys(t *testing.T, r *Resolver, uri string) (string, error) {
	t.Helper()
	var keys string
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if keys, err = r.Get(uri); err == nil || !strings.Contains(err.Error(), "fetching") {
			return keys, err
		}
		time.Sleep(10 * time.Millisecond)
	}
	return keys, err
}

func TestResolverFetchesCachesAndRefuses(t *testing.T) {
	good := keySet(t, false)
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		switch r.URL.Path {
		case "/good":
			w.Write(good)
		case "/private":
			w.Write(keySet(t, true))
		case "/huge":
			w.Write([]byte(`{"keys":[` + strings.Repeat(" ", 300<<10) + `]}`))
		case "/garbage":
			w.Write([]byte(`<html>`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()

	var updates atomic.Int32
	r := New(Options{AllowPrivate: true, OnUpdate: func() { updates.Add(1) }})
	defer r.Close()
	keys, err := waitKeys(t, r, srv.URL+"/good")
	if err != nil || !strings.Contains(keys, `"kid":"k1"`) || strings.Contains(keys, `"d":`) {
		t.Fatalf("good keys: %q, %v", keys, err)
	}
	if updates.Load() != 1 {
		t.Errorf("OnUpdate called %d times, want 1", updates.Load())
	}
	before := hits.Load()
	if _, err := r.Get(srv.URL + "/good"); err != nil || hits.Load() != before {
		t.Errorf("a second Get fetched again or failed: %v", err)
	}
	for path, want := range map[string]string{"/private": "not a public key", "/huge": "larger than", "/garbage": "not a JSON Web Key Set", "/missing": "404"} {
		if _, err := waitKeys(t, r, srv.URL+path); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error mentioning %q", path, err, want)
		}
	}
	if _, err := r.Get("file:///etc/passwd"); err == nil {
		t.Error("a file: URI was accepted")
	}

	// Without AllowPrivate the loopback server is out of reach.
	strict := New(Options{})
	defer strict.Close()
	if _, err := waitKeys(t, strict, srv.URL+"/good"); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("loopback fetch without AllowPrivate: %v, want a refusal", err)
	}
}
