package controlplane

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/strait-mesh/strait/controlplane/ca"
	"github.com/strait-mesh/strait/controlplane/config/embedded"
)

// The admin API of the CA's roots (root rotation), under CARootsPath:
//
//	GET    /apis/v1/ca/roots                list the trust bundle's roots and their states
//	POST   /apis/v1/ca/roots/stage          create a new root: trusted, not yet signing
//	POST   /apis/v1/ca/roots/activate       make the staged root the signing root
//	DELETE /apis/v1/ca/roots/{fingerprint}  remove a root from the trust bundle
//
// Every call answers a CARootsResponse; errors are an embedded.ErrorResponse. The whole API is
// behind embedded.RequireAdmin (loopback and the admin token), like the bootstrap tokens.
const (
	// CARootsPath lists the roots; the other calls are below it.
	CARootsPath = "/apis/v1/ca/roots"
	// caRootsPattern is the subtree rootsHandler is mounted on.
	caRootsPattern = "/apis/v1/ca/"
)

// CARoot is one root of the CA's trust bundle as the admin API shows it.
type CARoot struct {
	// Fingerprint is the SHA-256 of the certificate (DER), lowercase hex: how DELETE names it.
	Fingerprint string    `json:"fingerprint"`
	Subject     string    `json:"subject"`
	NotBefore   time.Time `json:"notBefore"`
	NotAfter    time.Time `json:"notAfter"`
	// State is "signing" (anchors the certificates signed now), "staged" (trusted, signing
	// after activate) or "trusted" (trusted only: a retired root, or another plug-in root).
	State string `json:"state"`
}

// CARootsResponse is the answer of every roots API call.
type CARootsResponse struct {
	Mode        string `json:"mode"` // "self-signed" or "plug-in"
	TrustDomain string `json:"trustDomain"`
	// Roots is the trust bundle after the call: the signing root first, then a staged root, then
	// the roots that are only trusted.
	Roots []CARoot `json:"roots"`
	// Changed is the root a stage, activate or remove acted on; absent from a list.
	Changed *CARoot `json:"changed,omitempty"`
}

// rootsAPI serves the roots API over one Authority.
type rootsAPI struct{ a *ca.Authority }

// rootsHandler returns the roots API for mounting on caRootsPattern. With no mesh port (no CA)
// every authorised call answers 404 saying so; without an admin token (no data dir) every call is
// refused, as no caller can prove itself.
func rootsHandler(mp *meshPort, adminToken string) http.Handler {
	if adminToken == "" {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			writeRootsError(w, http.StatusForbidden, errors.New("the CA roots API is off: straitd has no admin token (start it with --data-dir)"))
		})
	}
	mux := http.NewServeMux()
	if mp == nil {
		mux.HandleFunc(caRootsPattern, func(w http.ResponseWriter, _ *http.Request) {
			writeRootsError(w, http.StatusNotFound, errors.New("straitd runs no CA: the mesh port is off (--mesh-address) or no CA directory is configured"))
		})
		return embedded.RequireAdmin(adminToken, mux)
	}
	api := &rootsAPI{a: mp.authority}
	mux.HandleFunc("GET "+CARootsPath, api.list)
	mux.HandleFunc("POST "+CARootsPath+"/stage", api.stage)
	mux.HandleFunc("POST "+CARootsPath+"/activate", api.activate)
	mux.HandleFunc("DELETE "+CARootsPath+"/{fingerprint}", api.remove)
	mux.HandleFunc(caRootsPattern, rootsNotAllowed)
	return embedded.RequireAdmin(adminToken, mux)
}

// rootsNotAllowed answers what the roots API's patterns do not match: 405 with Allow on its paths,
// 404 elsewhere.
func rootsNotAllowed(w http.ResponseWriter, r *http.Request) {
	allow := ""
	switch p := r.URL.Path; {
	case p == CARootsPath:
		allow = "GET, HEAD"
	case p == CARootsPath+"/stage" || p == CARootsPath+"/activate":
		allow = "POST"
	case strings.HasPrefix(p, CARootsPath+"/") && !strings.Contains(p[len(CARootsPath)+1:], "/"):
		allow = "DELETE"
	}
	if allow == "" {
		writeRootsError(w, http.StatusNotFound, fmt.Errorf("no such CA API path %q (see %s)", truncateRootsInput(r.URL.Path, 128), CARootsPath))
		return
	}
	w.Header().Set("Allow", allow)
	writeRootsError(w, http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed on %s (allowed: %s)", truncateRootsInput(r.Method, 16), truncateRootsInput(r.URL.Path, 128), allow))
}

func (api *rootsAPI) list(w http.ResponseWriter, _ *http.Request) {
	writeRootsJSON(w, api.response(nil))
}

func (api *rootsAPI) stage(w http.ResponseWriter, _ *http.Request) {
	if err := api.rotatable(); err != nil {
		writeRootsError(w, http.StatusConflict, err)
		return
	}
	gen := api.a.Generation()
	if staged := rootInState(api.a.Roots(), ca.RootStaged); staged != nil {
		writeRootsError(w, http.StatusConflict, fmt.Errorf("staging a CA root: root %s is already staged; activate it, or remove it to discard it",
			ca.Fingerprint(staged.Cert)))
		return
	}
	cert, err := api.a.StageRoot()
	if err != nil {
		writeRootsError(w, api.status(gen), err)
		return
	}
	changed := caRoot(ca.Root{Cert: cert, State: ca.RootStaged})
	writeRootsJSON(w, api.response(&changed))
}

func (api *rootsAPI) activate(w http.ResponseWriter, _ *http.Request) {
	if err := api.rotatable(); err != nil {
		writeRootsError(w, http.StatusConflict, err)
		return
	}
	gen := api.a.Generation()
	staged := rootInState(api.a.Roots(), ca.RootStaged)
	if staged == nil {
		writeRootsError(w, http.StatusConflict, errors.New("activating the staged CA root: no root is staged (stage one first)"))
		return
	}
	if err := api.a.ActivateStagedRoot(); err != nil {
		writeRootsError(w, api.status(gen), err)
		return
	}
	changed := caRoot(*rootInState(api.a.Roots(), ca.RootSigning))
	writeRootsJSON(w, api.response(&changed))
}

func (api *rootsAPI) remove(w http.ResponseWriter, r *http.Request) {
	fp, err := parseFingerprint(r.PathValue("fingerprint"))
	if err != nil {
		writeRootsError(w, http.StatusBadRequest, err)
		return
	}
	if err := api.rotatable(); err != nil {
		writeRootsError(w, http.StatusConflict, err)
		return
	}
	gen := api.a.Generation()
	roots := api.a.Roots()
	i := slices.IndexFunc(roots, func(r ca.Root) bool { return ca.Fingerprint(r.Cert) == fp })
	if i < 0 {
		writeRootsError(w, http.StatusNotFound, fmt.Errorf("removing a CA root: no root with fingerprint %s in the trust bundle", fp))
		return
	}
	root := roots[i]
	if root.State == ca.RootSigning {
		writeRootsError(w, http.StatusConflict, errors.New("removing a CA root: it is the signing root; stage and activate another root first"))
		return
	}
	if err := api.a.RemoveRoot(fp); err != nil {
		writeRootsError(w, api.status(gen), err)
		return
	}
	changed := caRoot(root)
	writeRootsJSON(w, api.response(&changed))
}

// rotatable refuses root changes of a plug-in CA, whose roots are the operator's files.
func (api *rootsAPI) rotatable() error {
	if api.a.Mode() == "plug-in" {
		return ca.ErrPluginMode
	}
	return nil
}

// rootInState returns the first root in state s, or nil.
func rootInState(roots []ca.Root, s ca.RootState) *ca.Root {
	for _, r := range roots {
		if r.State == s {
			return &r
		}
	}
	return nil
}

// status is the HTTP status of an Authority's refusal that the checks before the call, made at
// generation gen, did not foresee: 409 if another root change came in between (the refusal is
// about that change), else 500 (the change could not be persisted).
func (api *rootsAPI) status(gen uint64) int {
	if api.a.Generation() != gen {
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

// response lists the roots: signing first, then staged, then trusted (newest first).
func (api *rootsAPI) response(changed *CARoot) CARootsResponse {
	roots := api.a.Roots()
	rank := map[ca.RootState]int{ca.RootSigning: 0, ca.RootStaged: 1, ca.RootTrusted: 2}
	slices.SortStableFunc(roots, func(x, y ca.Root) int {
		if d := rank[x.State] - rank[y.State]; d != 0 {
			return d
		}
		return y.Cert.NotBefore.Compare(x.Cert.NotBefore)
	})
	out := CARootsResponse{Mode: api.a.Mode(), TrustDomain: api.a.TrustDomain(), Roots: make([]CARoot, len(roots)), Changed: changed}
	for i, r := range roots {
		out.Roots[i] = caRoot(r)
	}
	return out
}

func caRoot(r ca.Root) CARoot {
	return CARoot{
		Fingerprint: ca.Fingerprint(r.Cert),
		Subject:     r.Cert.Subject.String(),
		NotBefore:   r.Cert.NotBefore.UTC(),
		NotAfter:    r.Cert.NotAfter.UTC(),
		State:       string(r.State),
	}
}

// parseFingerprint accepts a SHA-256 fingerprint as lowercase or uppercase hex, with or without
// the colons openssl prints, and returns it as ca.Fingerprint writes it.
func parseFingerprint(s string) (string, error) {
	fp := strings.ToLower(strings.ReplaceAll(s, ":", ""))
	if b, err := hex.DecodeString(fp); err != nil || len(b) != 32 {
		return "", fmt.Errorf("%q is not a SHA-256 fingerprint (64 hex digits, as `strait ca roots` lists them)", truncateRootsInput(s, 100))
	}
	return fp, nil
}

func truncateRootsInput(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func writeRootsJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}

func writeRootsError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(embedded.ErrorResponse{Errors: []string{err.Error()}})
}
