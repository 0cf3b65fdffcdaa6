package embedded

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/config/validationmetrics"
)

// MaxRequestBytes bounds the body of an apply or delete request.
const MaxRequestBytes = 16 << 20

// Document is one input file (or stdin) of an apply or delete, decoded on the server so that the
// server's validation is the only one that counts.
type Document struct {
	Origin string `json:"origin"` // file name shown in errors
	Data   string `json:"data"`   // YAML or JSON, possibly multi-document
}

// ApplyRequest is the body of POST /apis/v1/apply and POST /apis/v1/delete.
type ApplyRequest struct {
	Documents []Document `json:"documents"`
	DryRun    bool       `json:"dryRun,omitempty"`
}

// ChangesResponse is the success body of apply and delete.
type ChangesResponse struct {
	Changes []Change `json:"changes"`
}

// ErrorResponse is the body of a rejected request: every error found.
type ErrorResponse struct {
	Errors []string `json:"errors"`
}

// ListResponse is the body of GET /apis/v1/objects: objects rendered as Istio JSON.
type ListResponse struct {
	Items []json.RawMessage `json:"items"`
}

// SetValidationCounters makes the apply API count the documents it validates
// (galley_validation_passed / galley_validation_failed). Call it before serving Handler.
func (s *Store) SetValidationCounters(c *validationmetrics.Counters) { s.validation = c }

// Handler serves the store's HTTP API under /apis/v1/. The write routes (apply, delete) are
// behind RequireAdmin(adminToken): loopback clients presenting the admin token only (an empty
// token admits nobody). Reads are open.
func (s *Store) Handler(adminToken string) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /apis/v1/apply", RequireAdmin(adminToken, http.HandlerFunc(s.serveApply)))
	mux.Handle("POST /apis/v1/delete", RequireAdmin(adminToken, http.HandlerFunc(s.serveDeleteDocs)))
	mux.HandleFunc("GET /apis/v1/objects", s.serveList)
	mux.Handle("DELETE /apis/v1/objects/{kind}/{namespace}/{name}", RequireAdmin(adminToken, http.HandlerFunc(s.serveDeleteOne)))
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErrors(w http.ResponseWriter, code int, errs ...error) {
	var msgs []string
	for _, err := range errs {
		msgs = append(msgs, flatten(err)...)
	}
	writeJSON(w, code, ErrorResponse{Errors: msgs})
}

// flatten splits joined errors so that each is reported on its own.
func flatten(err error) []string {
	var out []string
	for _, e := range config.Errors(err) {
		out = append(out, e.Error())
	}
	return out
}

// decodeRequest reads an ApplyRequest (JSON) or, for curl users, a raw YAML body. With validate,
// every object is also validated, so that one response carries every problem, and the
// documents' validations are counted in vc (may be nil).
func decodeRequest(r *http.Request, validate bool, vc *validationmetrics.Counters) ([]*config.Object, bool, []error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxRequestBytes+1))
	if err != nil {
		return nil, false, []error{fmt.Errorf("reading request: %w", err)}
	}
	if len(body) > MaxRequestBytes {
		return nil, false, []error{fmt.Errorf("request body larger than %d bytes", MaxRequestBytes)}
	}
	var req ApplyRequest
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, false, []error{fmt.Errorf("decoding request: %w", err)}
		}
	} else {
		req.Documents = []Document{{Origin: "request", Data: string(body)}}
		req.DryRun = r.URL.Query().Get("dryRun") == "true"
	}
	var objs []*config.Object
	var errs []error
	for _, d := range req.Documents {
		load := config.Decode
		if validate {
			load = config.Load
		}
		o, e := load(d.Origin, []byte(d.Data))
		if validate {
			vc.Record(o, e)
		}
		objs = append(objs, o...)
		errs = append(errs, e...)
	}
	if len(objs) == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("no objects in request"))
	}
	return objs, req.DryRun, errs
}

func (s *Store) serveApply(w http.ResponseWriter, r *http.Request) {
	objs, dryRun, errs := decodeRequest(r, true, s.validation)
	if len(errs) > 0 {
		writeErrors(w, http.StatusUnprocessableEntity, errs...)
		return
	}
	changes, err := s.Apply(objs, dryRun)
	if err != nil {
		writeErrors(w, http.StatusUnprocessableEntity, err)
		return
	}
	writeJSON(w, http.StatusOK, ChangesResponse{Changes: changes})
}

func (s *Store) serveDeleteDocs(w http.ResponseWriter, r *http.Request) {
	objs, _, errs := decodeRequest(r, false, nil)
	if len(errs) > 0 {
		writeErrors(w, http.StatusUnprocessableEntity, errs...)
		return
	}
	keys := make([]config.Key, 0, len(objs))
	for _, o := range objs {
		keys = append(keys, o.Key())
	}
	s.deleteKeys(w, keys)
}

func (s *Store) serveDeleteOne(w http.ResponseWriter, r *http.Request) {
	kind, ok := config.KindFor(r.PathValue("kind"))
	if !ok {
		writeErrors(w, http.StatusBadRequest, fmt.Errorf("unknown kind %q", r.PathValue("kind")))
		return
	}
	s.deleteKeys(w, []config.Key{{Kind: kind, Namespace: r.PathValue("namespace"), Name: r.PathValue("name")}})
}

func (s *Store) deleteKeys(w http.ResponseWriter, keys []config.Key) {
	changes, err := s.Delete(keys)
	switch {
	case errors.Is(err, ErrNotFound):
		writeErrors(w, http.StatusNotFound, err)
	case err != nil:
		writeErrors(w, http.StatusInternalServerError, err)
	default:
		writeJSON(w, http.StatusOK, ChangesResponse{Changes: changes})
	}
}

func (s *Store) serveList(w http.ResponseWriter, r *http.Request) {
	ListHandler(s.List).ServeHTTP(w, r)
}

// ListHandler serves GET /apis/v1/objects?kind=K[&namespace=N][&name=M] from list, which returns
// the objects to choose from. straitd mounts it over all config sources, so that `strait get`
// shows what serves whether it came from a file, the store or auto-registration.
func ListHandler(list func() []*config.Object) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		kind, ok := config.KindFor(q.Get("kind"))
		if !ok {
			writeErrors(w, http.StatusBadRequest, fmt.Errorf("unknown kind %q", q.Get("kind")))
			return
		}
		ns, name := q.Get("namespace"), q.Get("name")
		var objs []*config.Object
		for _, o := range list() {
			if o.Kind == kind && (ns == "" || o.Namespace == ns) && (name == "" || o.Name == name) {
				objs = append(objs, o)
			}
		}
		if name != "" && len(objs) == 0 {
			writeErrors(w, http.StatusNotFound, fmt.Errorf("%s: %w", config.Key{Kind: kind, Namespace: ns, Name: name}, ErrNotFound))
			return
		}
		sort.Slice(objs, func(i, j int) bool {
			if objs[i].Namespace != objs[j].Namespace {
				return objs[i].Namespace < objs[j].Namespace
			}
			return objs[i].Name < objs[j].Name
		})
		resp := ListResponse{Items: []json.RawMessage{}}
		for _, o := range objs {
			b, err := config.MarshalJSON(o)
			if err != nil {
				writeErrors(w, http.StatusInternalServerError, err)
				return
			}
			resp.Items = append(resp.Items, b)
		}
		writeJSON(w, http.StatusOK, resp)
	})
}

// BootstrapTokensPath is where straitd's admin API mints bootstrap tokens.
const BootstrapTokensPath = "/apis/v1/bootstrap-tokens"

// maxTokenRequestBytes bounds the body of a bootstrap token request.
const maxTokenRequestBytes = 4 << 10

// ErrInvalidRequest is wrapped by a mint function's error when the request itself is wrong (an
// invalid namespace or service account): the client gets 422 and the message.
var ErrInvalidRequest = errors.New("invalid request")

// BootstrapTokenRequest is the body of POST /apis/v1/bootstrap-tokens: a token for one namespace
// and service account. TTLSeconds zero means straitd's default (1 h); larger than straitd's
// maximum (24 h) is capped, so read Expires in the response.
type BootstrapTokenRequest struct {
	Namespace      string `json:"namespace"`
	ServiceAccount string `json:"serviceAccount"`
	TTLSeconds     int64  `json:"ttlSeconds,omitempty"`
}

// BootstrapTokenResponse is the success body of POST /apis/v1/bootstrap-tokens.
type BootstrapTokenResponse struct {
	// Token is the secret: the workload presents it once as gRPC metadata
	// "authorization: Bearer <token>" to CreateCertificate on CAAddress.
	Token string `json:"token"`
	// ID names the token in straitd's logs without revealing it.
	ID      string    `json:"id"`
	Expires time.Time `json:"expires"`
	// Identity is the SPIFFE ID the token proves.
	Identity string `json:"identity"`
	// TrustBundle is the mesh's roots (PEM), to verify straitd's serving certificate on CAAddress
	// and mesh peers.
	TrustBundle string `json:"trustBundle"`
	// CAAddress is the host:port of straitd's TLS mesh port (the CSR API).
	CAAddress string `json:"caAddress"`
}

// BootstrapTokenHandler serves POST /apis/v1/bootstrap-tokens with mint, which straitd implements
// over its CA. It authorises nothing itself: mount it behind RequireAdmin.
func BootstrapTokenHandler(mint func(BootstrapTokenRequest) (BootstrapTokenResponse, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeErrors(w, http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed", r.Method))
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxTokenRequestBytes+1))
		if err != nil {
			writeErrors(w, http.StatusBadRequest, fmt.Errorf("reading request: %w", err))
			return
		}
		if len(body) > maxTokenRequestBytes {
			writeErrors(w, http.StatusRequestEntityTooLarge, fmt.Errorf("request body larger than %d bytes", maxTokenRequestBytes))
			return
		}
		var req BootstrapTokenRequest
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeErrors(w, http.StatusBadRequest, fmt.Errorf("decoding request: %w", err))
			return
		}
		if dec.More() {
			writeErrors(w, http.StatusBadRequest, errors.New("decoding request: trailing data after the JSON object"))
			return
		}
		var errs []error
		if req.Namespace == "" {
			errs = append(errs, errors.New("namespace is required"))
		}
		if req.ServiceAccount == "" {
			errs = append(errs, errors.New("serviceAccount is required"))
		}
		if req.TTLSeconds < 0 {
			errs = append(errs, errors.New("ttlSeconds must not be negative"))
		}
		if len(errs) > 0 {
			writeErrors(w, http.StatusUnprocessableEntity, errs...)
			return
		}
		resp, err := mint(req)
		w.Header().Set("Cache-Control", "no-store")
		switch {
		case errors.Is(err, ErrInvalidRequest):
			writeErrors(w, http.StatusUnprocessableEntity, err)
		case err != nil:
			writeErrors(w, http.StatusServiceUnavailable, err)
		default:
			writeJSON(w, http.StatusOK, resp)
		}
	})
}

// AdminTokenRequired is the message of a 401 from RequireAdmin.
const AdminTokenRequired = "the admin API requires straitd's admin token (Authorization: Bearer, from <data-dir>/admin-token)"

// RequireAdmin admits a request to h only from a loopback client that presents the admin token
// as "Authorization: Bearer <token>": 403 for any other client address, 401 for a missing or
// wrong token. The comparison takes constant time. An empty token admits nobody.
func RequireAdmin(token string, h http.Handler) http.Handler {
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !loopbackClient(r.RemoteAddr) {
			writeErrors(w, http.StatusForbidden, errors.New("the admin API accepts loopback clients only"))
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		sum := sha256.Sum256([]byte(strings.TrimSpace(got)))
		if !ok || token == "" || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="straitd"`)
			writeErrors(w, http.StatusUnauthorized, errors.New(AdminTokenRequired))
			return
		}
		h.ServeHTTP(w, r)
	})
}

func loopbackClient(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return false
	}
	addr, err := netip.ParseAddr(host)
	return err == nil && addr.Unmap().IsLoopback()
}
