package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strait-mesh/strait/controlplane"
	"github.com/strait-mesh/strait/controlplane/config/embedded"
	"github.com/strait-mesh/strait/internal/testenv"
)

// runCLI runs the strait CLI with args and returns its stdout and error.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := New(strings.NewReader(""), &out, &errOut)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func writeToken(t *testing.T, tok string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "admin-token")
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// fakeRoots is a hand-written stand-in for straitd's roots API: it records each request and
// answers with the status and body queued for it.
type fakeRoots struct {
	mu       sync.Mutex
	requests []string // "METHOD PATH AUTHORIZATION"
	status   int
	body     string
}

func (f *fakeRoots) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, r.Method+" "+r.URL.EscapedPath()+" "+r.Header.Get("Authorization"))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(f.status)
	io.WriteString(w, f.body)
}

func (f *fakeRoots) answer(status int, body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status, f.body, f.requests = status, body, nil
}

func (f *fakeRoots) last() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.requests) != 1 {
		return strings.Join(f.requests, "; ")
	}
	return f.requests[0]
}

const (
	fpOld = "1111111111111111111111111111111111111111111111111111111111111111"
	fpNew = "2222222222222222222222222222222222222222222222222222222222222222"
)

func rootsJSON(changed string, roots ...string) string {
	s := `{"mode":"self-signed","trustDomain":"cluster.local","roots":[` + strings.Join(roots, ",") + `]`
	if changed != "" {
		s += `,"changed":` + changed
	}
	return s + "}"
}

func rootJSON(fp, state string) string {
	return `{"fingerprint":"` + fp + `","subject":"O=cluster.local","notBefore":"2026-01-02T03:04:05Z","notAfter":"2036-01-02T03:04:05Z","state":"` + state + `"}`
}

// TestCACommands checks each `strait ca` command against a fake straitd: the request it sends
// (method, path, admin token), what it prints, and how it reports refusals.
func TestCACommands(t *testing.T) {
	f := &fakeRoots{}
	srv := httptest.NewServer(f)
	defer srv.Close()
	tok := writeToken(t, "sat1.cli-test")
	ca := func(args ...string) (string, error) {
		t.Helper()
		return runCLI(t, append([]string{"--straitd", srv.URL, "--admin-token-file", tok, "ca"}, args...)...)
	}
	const auth = "Bearer sat1.cli-test"

	f.answer(http.StatusOK, rootsJSON("", rootJSON(fpNew, "signing"), rootJSON(fpOld, "staged")))
	out, err := ca("roots")
	if err != nil || f.last() != "GET /apis/v1/ca/roots "+auth {
		t.Fatalf("roots: %v; request %q", err, f.last())
	}
	table := regexp.MustCompile(`^FINGERPRINT\s+STATE\s+SUBJECT\s+NOT BEFORE\s+NOT AFTER\n` +
		fpNew + `\s+signing\s+O=cluster.local\s+2026-01-02T03:04:05Z\s+2036-01-02T03:04:05Z\n` +
		fpOld + `\s+staged\s+O=cluster.local\s+2026-01-02T03:04:05Z\s+2036-01-02T03:04:05Z\n$`)
	if !table.MatchString(out) {
		t.Errorf("roots table:\n%s", out)
	}
	out, err = ca("roots", "-o", "json")
	var decoded caRootsResponse
	if err != nil || json.Unmarshal([]byte(out), &decoded) != nil || len(decoded.Roots) != 2 || decoded.Roots[1].State != "staged" {
		t.Errorf("roots -o json: %v\n%s", err, out)
	}
	if _, err := ca("roots", "-o", "yaml"); err == nil {
		t.Error("roots -o yaml was accepted")
	}

	f.answer(http.StatusOK, rootsJSON(rootJSON(fpNew, "staged"), rootJSON(fpOld, "signing"), rootJSON(fpNew, "staged")))
	out, err = ca("stage-root")
	if err != nil || f.last() != "POST /apis/v1/ca/roots/stage "+auth || !strings.Contains(out, "staged root "+fpNew) || !strings.Contains(out, "strait ca activate-root") {
		t.Errorf("stage-root: %v; request %q\n%s", err, f.last(), out)
	}

	f.answer(http.StatusOK, rootsJSON(rootJSON(fpNew, "signing"), rootJSON(fpNew, "signing"), rootJSON(fpOld, "trusted")))
	out, err = ca("activate-root")
	if err != nil || f.last() != "POST /apis/v1/ca/roots/activate "+auth || !strings.Contains(out, "activated root "+fpNew) || !strings.Contains(out, "strait ca remove-root "+fpOld) {
		t.Errorf("activate-root: %v; request %q\n%s", err, f.last(), out)
	}

	f.answer(http.StatusOK, rootsJSON(rootJSON(fpOld, "trusted"), rootJSON(fpNew, "signing")))
	out, err = ca("remove-root", fpOld)
	if err != nil || f.last() != "DELETE /apis/v1/ca/roots/"+fpOld+" "+auth || !strings.Contains(out, "removed root "+fpOld+" (trusted)") {
		t.Errorf("remove-root: %v; request %q\n%s", err, f.last(), out)
	}
	f.answer(http.StatusOK, rootsJSON(rootJSON(fpOld, "trusted")))
	if _, err := ca("remove-root", "a/b"); err != nil || f.last() != "DELETE /apis/v1/ca/roots/a%2Fb "+auth {
		t.Errorf("remove-root a/b: %v; request %q", err, f.last())
	}
	if _, err := ca("remove-root"); err == nil {
		t.Error("remove-root without a fingerprint was accepted")
	}

	// straitd's refusals: its message, and for the token what to do about it.
	f.answer(http.StatusConflict, `{"errors":["root rotation is not available for plug-in certificates: change root-cert.pem"]}`)
	if _, err := ca("stage-root"); err == nil || err.Error() != "strait ca stage-root: root rotation is not available for plug-in certificates: change root-cert.pem" {
		t.Errorf("a refusal: %v", err)
	}
	f.answer(http.StatusUnauthorized, `{"errors":["`+embedded.AdminTokenRequired+`"]}`)
	if _, err := ca("roots"); err == nil || !strings.Contains(err.Error(), "refused the admin token in "+tok) {
		t.Errorf("a refused token: %v", err)
	}
	f.answer(http.StatusBadGateway, `upstream broke`)
	if _, err := ca("roots"); err == nil || !strings.Contains(err.Error(), "502 Bad Gateway: upstream broke") {
		t.Errorf("a non-JSON error: %v", err)
	}
	srv.Close()
	if _, err := ca("roots"); err == nil || !strings.Contains(err.Error(), "is it running?") {
		t.Errorf("straitd down: %v", err)
	}
}

// TestCACommandsAgainstStraitd rotates the root of a real straitd (in-process) with the CLI:
// what the commands print matches what the API did, and the wire format is understood.
func TestCACommandsAgainstStraitd(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	addrs := make(chan string, 1)
	r := testenv.Go(t, "straitd", 10*time.Second, func(ctx context.Context) error {
		return controlplane.Run(ctx, controlplane.Options{
			DataDir: dataDir, HTTPListen: "127.0.0.1:0", MeshListen: "127.0.0.1:0",
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Ready:  func(_, http string) { addrs <- http },
		})
	})
	var base string
	select {
	case base = <-addrs:
	case <-r.Done():
		t.Fatalf("straitd: %v", r.Err())
	case <-time.After(15 * time.Second):
		t.Fatal("straitd did not start")
	}
	tok := filepath.Join(dataDir, "admin-token")
	ca := func(args ...string) string {
		t.Helper()
		out, err := runCLI(t, append([]string{"--straitd", base, "--admin-token-file", tok, "ca"}, args...)...)
		if err != nil {
			t.Fatalf("strait ca %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	list := func() map[string]string {
		t.Helper()
		var resp caRootsResponse
		if err := json.Unmarshal([]byte(ca("roots", "-o", "json")), &resp); err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, r := range resp.Roots {
			if len(r.Fingerprint) != 64 || r.NotAfter.IsZero() || r.Subject == "" {
				t.Errorf("root %+v", r)
			}
			m[r.Fingerprint] = r.State
		}
		return m
	}
	before := list()
	if len(before) != 1 {
		t.Fatalf("roots of a new CA: %v", before)
	}
	var old string
	for fp := range before {
		old = fp
	}
	if out := ca("roots"); !strings.Contains(out, old) || !strings.Contains(out, "signing") {
		t.Errorf("roots table:\n%s", out)
	}
	var staged caRootsResponse
	if err := json.Unmarshal([]byte(ca("stage-root", "-o", "json")), &staged); err != nil || staged.Changed == nil {
		t.Fatalf("stage-root -o json: %v %+v", err, staged)
	}
	next := staged.Changed.Fingerprint
	if got := list(); got[old] != "signing" || got[next] != "staged" || len(got) != 2 {
		t.Fatalf("after stage-root: %v", got)
	}
	if out := ca("activate-root"); !strings.Contains(out, "activated root "+next) || !strings.Contains(out, "remove-root "+old) {
		t.Errorf("activate-root:\n%s", out)
	}
	if got := list(); got[next] != "signing" || got[old] != "trusted" || len(got) != 2 {
		t.Fatalf("after activate-root: %v", got)
	}
	if out := ca("remove-root", strings.ToUpper(old)); !strings.Contains(out, "removed root "+old) {
		t.Errorf("remove-root:\n%s", out)
	}
	if got := list(); got[next] != "signing" || len(got) != 1 {
		t.Fatalf("after remove-root: %v", got)
	}
	out, err := runCLI(t, "--straitd", base, "--admin-token-file", tok, "ca", "remove-root", next)
	if err == nil || !strings.Contains(err.Error(), "signing root") {
		t.Errorf("removing the signing root: %v\n%s", err, out)
	}
}
