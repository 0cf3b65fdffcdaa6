package controlplane

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strait-mesh/strait/controlplane/ca"
	"github.com/strait-mesh/strait/controlplane/config/embedded"
	"github.com/strait-mesh/strait/internal/testenv"
)

const testAdminToken = "sat1.test-admin-token"

// rootsCall sends one request to h as a loopback client with the admin token (auth "" for none)
// and returns the status, the decoded answer (on 200) and the errors (otherwise).
func rootsCall(t *testing.T, h http.Handler, method, path, auth string) (int, CARootsResponse, []string) {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	req.RemoteAddr = "127.0.0.1:40000"
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q, want application/json", method, path, ct)
	}
	var out CARootsResponse
	var er embedded.ErrorResponse
	if rec.Code == http.StatusOK {
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("%s %s: decoding %q: %v", method, path, rec.Body, err)
		}
	} else if err := json.Unmarshal(rec.Body.Bytes(), &er); err != nil || len(er.Errors) == 0 {
		t.Fatalf("%s %s: %d without JSON errors: %q", method, path, rec.Code, rec.Body)
	}
	return rec.Code, out, er.Errors
}

// newRootsTestAuthority creates an Authority from o, logging nowhere.
func newRootsTestAuthority(t *testing.T, o ca.Options) *ca.Authority {
	t.Helper()
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := ca.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// states returns fingerprint → state of a listing, and checks its order (signing first).
func states(t *testing.T, r CARootsResponse) map[string]string {
	t.Helper()
	m := map[string]string{}
	for i, root := range r.Roots {
		m[root.Fingerprint] = root.State
		if (i == 0) != (root.State == "signing") {
			t.Errorf("root %d is %s: the signing root must come first, alone", i, root.State)
		}
		if root.Subject == "" || !root.NotBefore.Before(root.NotAfter) {
			t.Errorf("root %d: subject %q, validity %v..%v", i, root.Subject, root.NotBefore, root.NotAfter)
		}
	}
	return m
}

func wantStates(t *testing.T, step string, r CARootsResponse, want map[string]string) {
	t.Helper()
	got := states(t, r)
	if len(got) != len(want) {
		t.Fatalf("%s: roots %v, want %v", step, got, want)
	}
	for fp, s := range want {
		if got[fp] != s {
			t.Fatalf("%s: roots %v, want %v", step, got, want)
		}
	}
}

func wantError(t *testing.T, step string, code int, errs []string, wantCode int, wantMsg string) {
	t.Helper()
	if code != wantCode || len(errs) != 1 || !strings.Contains(errs[0], wantMsg) {
		t.Errorf("%s: %d %q, want %d with %q", step, code, errs, wantCode, wantMsg)
	}
}

// TestRootsAPIRotation runs a whole root rotation through the API over a real self-signed
// Authority: list, stage, activate, remove, with the refusals of each step, and checks that every
// change is persisted (a new Authority over the same dir sees it).
func TestRootsAPIRotation(t *testing.T) {
	dir := t.TempDir()
	a := newRootsTestAuthority(t, ca.Options{Dir: dir, TrustDomain: "example.org"})
	h := rootsHandler(&meshPort{authority: a}, testAdminToken)
	call := func(method, path string) (int, CARootsResponse, []string) {
		t.Helper()
		return rootsCall(t, h, method, path, testAdminToken)
	}

	code, list, _ := call(http.MethodGet, CARootsPath)
	if code != http.StatusOK || list.Mode != "self-signed" || list.TrustDomain != "example.org" || len(list.Roots) != 1 || list.Changed != nil {
		t.Fatalf("list: %d %+v", code, list)
	}
	first := list.Roots[0]
	signing, _ := a.SigningCertificate()
	if first.Fingerprint != ca.Fingerprint(signing) || first.State != "signing" || !strings.Contains(first.Subject, "example.org") {
		t.Fatalf("first root %+v", first)
	}
	old := first.Fingerprint

	code, staged, _ := call(http.MethodPost, CARootsPath+"/stage")
	if code != http.StatusOK || staged.Changed == nil || staged.Changed.State != "staged" {
		t.Fatalf("stage: %d %+v", code, staged)
	}
	next := staged.Changed.Fingerprint
	wantStates(t, "staged", staged, map[string]string{old: "signing", next: "staged"})
	if len(a.TrustBundle()) != 2 {
		t.Errorf("the CA's trust bundle holds %d roots after staging", len(a.TrustBundle()))
	}
	code, _, errs := call(http.MethodPost, CARootsPath+"/stage")
	wantError(t, "stage twice", code, errs, http.StatusConflict, "already staged")
	code, _, errs = call(http.MethodDelete, CARootsPath+"/"+old)
	wantError(t, "remove the signing root", code, errs, http.StatusConflict, "signing root")

	// A restart sees the staged root.
	b := newRootsTestAuthority(t, ca.Options{Dir: dir, TrustDomain: "example.org"})
	_, again, _ := rootsCall(t, rootsHandler(&meshPort{authority: b}, testAdminToken), http.MethodGet, CARootsPath, testAdminToken)
	wantStates(t, "staged, restarted", again, map[string]string{old: "signing", next: "staged"})

	code, activated, _ := call(http.MethodPost, CARootsPath+"/activate")
	if code != http.StatusOK || activated.Changed == nil || activated.Changed.Fingerprint != next || activated.Changed.State != "signing" {
		t.Fatalf("activate: %d %+v", code, activated)
	}
	wantStates(t, "activated", activated, map[string]string{next: "signing", old: "trusted"})
	if signing, _ := a.SigningCertificate(); ca.Fingerprint(signing) != next {
		t.Error("the CA does not sign with the activated root")
	}
	code, _, errs = call(http.MethodPost, CARootsPath+"/activate")
	wantError(t, "activate without a staged root", code, errs, http.StatusConflict, "no root is staged")

	// Fingerprints are accepted as openssl prints them (upper case, colons).
	var colons []string
	for i := 0; i < len(old); i += 2 {
		colons = append(colons, strings.ToUpper(old[i:i+2]))
	}
	code, removed, _ := call(http.MethodDelete, CARootsPath+"/"+strings.Join(colons, ":"))
	if code != http.StatusOK || removed.Changed == nil || removed.Changed.Fingerprint != old || removed.Changed.State != "trusted" {
		t.Fatalf("remove: %d %+v", code, removed)
	}
	wantStates(t, "removed", removed, map[string]string{next: "signing"})
	code, _, errs = call(http.MethodDelete, CARootsPath+"/"+old)
	wantError(t, "remove twice", code, errs, http.StatusNotFound, "no root with fingerprint")
	code, _, errs = call(http.MethodDelete, CARootsPath+"/not-a-fingerprint")
	wantError(t, "remove a malformed fingerprint", code, errs, http.StatusBadRequest, "not a SHA-256 fingerprint")

	// A staged root can be discarded.
	_, staged, _ = call(http.MethodPost, CARootsPath+"/stage")
	code, discarded, _ := call(http.MethodDelete, CARootsPath+"/"+staged.Changed.Fingerprint)
	if code != http.StatusOK || discarded.Changed.State != "staged" {
		t.Fatalf("discard: %d %+v", code, discarded)
	}
	wantStates(t, "discarded", discarded, map[string]string{next: "signing"})

	b = newRootsTestAuthority(t, ca.Options{Dir: dir, TrustDomain: "example.org"})
	_, again, _ = rootsCall(t, rootsHandler(&meshPort{authority: b}, testAdminToken), http.MethodGet, CARootsPath, testAdminToken)
	wantStates(t, "after a restart", again, map[string]string{next: "signing"})

	// Other methods and paths.
	for _, tc := range []struct {
		method, path string
		code         int
		allow        string
	}{
		{http.MethodPut, CARootsPath, http.StatusMethodNotAllowed, "GET, HEAD"},
		{http.MethodGet, CARootsPath + "/stage", http.StatusMethodNotAllowed, "POST"},
		{http.MethodGet, CARootsPath + "/" + next, http.StatusMethodNotAllowed, "DELETE"},
		{http.MethodGet, "/apis/v1/ca/other", http.StatusNotFound, ""},
	} {
		req := httptest.NewRequest(tc.method, tc.path, nil)
		req.RemoteAddr = "127.0.0.1:40000"
		req.Header.Set("Authorization", "Bearer "+testAdminToken)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.code || rec.Header().Get("Allow") != tc.allow || !strings.Contains(rec.Body.String(), `"errors"`) {
			t.Errorf("%s %s: %d Allow %q %q, want %d Allow %q", tc.method, tc.path, rec.Code, rec.Header().Get("Allow"), rec.Body, tc.code, tc.allow)
		}
	}
}

// TestRootsAPIAuthorization: the API admits loopback callers with the admin token only, says so
// when straitd has no admin token, and says when straitd runs no CA.
func TestRootsAPIAuthorization(t *testing.T) {
	a := newRootsTestAuthority(t, ca.Options{Dir: t.TempDir()})
	h := rootsHandler(&meshPort{authority: a}, testAdminToken)
	for _, path := range []string{CARootsPath, CARootsPath + "/stage"} {
		method := http.MethodGet
		if path != CARootsPath {
			method = http.MethodPost
		}
		code, _, errs := rootsCall(t, h, method, path, "")
		wantError(t, "no token", code, errs, http.StatusUnauthorized, "admin token")
		code, _, errs = rootsCall(t, h, method, path, "sat1.wrong")
		wantError(t, "wrong token", code, errs, http.StatusUnauthorized, "admin token")

		req := httptest.NewRequest(method, path, nil) // from 192.0.2.1
		req.Header.Set("Authorization", "Bearer "+testAdminToken)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusForbidden {
			t.Errorf("%s %s from another host: %d", method, path, rec.Code)
		}
	}
	if n := len(a.TrustBundle()); n != 1 {
		t.Errorf("a refused call changed the trust bundle: %d roots", n)
	}

	code, _, errs := rootsCall(t, rootsHandler(&meshPort{authority: a}, ""), http.MethodGet, CARootsPath, testAdminToken)
	wantError(t, "no admin token", code, errs, http.StatusForbidden, "--data-dir")
	code, _, errs = rootsCall(t, rootsHandler(nil, testAdminToken), http.MethodGet, CARootsPath, testAdminToken)
	wantError(t, "no CA", code, errs, http.StatusNotFound, "runs no CA")
	code, _, errs = rootsCall(t, rootsHandler(nil, testAdminToken), http.MethodGet, CARootsPath, "")
	wantError(t, "no CA, no token", code, errs, http.StatusUnauthorized, "admin token")
}

// TestRootsAPIPluginMode: a plug-in CA lists its roots and refuses every change with the CA's
// ErrPluginMode message.
func TestRootsAPIPluginMode(t *testing.T) {
	root := testenv.NewCA(t, "Org Root")
	keyDER, err := x509.MarshalPKCS8PrivateKey(root.Key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, data := range map[string][]byte{
		ca.PluginCACert:   root.PEM,
		ca.PluginRootCert: root.PEM,
		ca.PluginCAKey:    pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	a := newRootsTestAuthority(t, ca.Options{PluginDir: dir})
	h := rootsHandler(&meshPort{authority: a}, testAdminToken)
	code, list, _ := rootsCall(t, h, http.MethodGet, CARootsPath, testAdminToken)
	if code != http.StatusOK || list.Mode != "plug-in" || len(list.Roots) != 1 || list.Roots[0].Fingerprint != ca.Fingerprint(root.Cert) {
		t.Fatalf("list: %d %+v", code, list)
	}
	for _, tc := range []struct{ method, path string }{
		{http.MethodPost, CARootsPath + "/stage"},
		{http.MethodPost, CARootsPath + "/activate"},
		{http.MethodDelete, CARootsPath + "/" + ca.Fingerprint(root.Cert)},
	} {
		code, _, errs := rootsCall(t, h, tc.method, tc.path, testAdminToken)
		wantError(t, tc.method+" "+tc.path, code, errs, http.StatusConflict, ca.ErrPluginMode.Error())
	}
}

// TestRootsAPIMountedByRun: straitd serves the roots API on its HTTP port, behind the admin
// token from its data dir.
func TestRootsAPIMountedByRun(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	base, _ := startStraitd(t, Options{DataDir: dataDir, HTTPListen: "127.0.0.1:0", MeshListen: "127.0.0.1:0"})
	tok, err := embedded.ReadAdminToken(filepath.Join(dataDir, AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	get := func(auth string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+base+CARootsPath, nil)
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(""); code != http.StatusUnauthorized {
		t.Errorf("without the admin token: %d %s", code, body)
	}
	code, body := get(tok)
	var list CARootsResponse
	if code != http.StatusOK || json.Unmarshal([]byte(body), &list) != nil || len(list.Roots) != 1 || list.Roots[0].State != "signing" {
		t.Errorf("with the admin token: %d %s", code, body)
	}
}
