package embedded_test

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strait-mesh/strait/cli"
	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/config/embedded"
	"github.com/strait-mesh/strait/controlplane/mesh/meshtest"
)

const goodVS = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: bookinfo
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata:
  name: reviews
  namespace: bookinfo
spec:
  host: reviews
  subsets:
  - name: v1
    labels: {version: v1}
`

// twoBad has two invalid documents and one good one: nothing may be stored.
var twoBad = meshtest.Object("VirtualService", "bad-field", "bookinfo", `  hosts: [ratings]
  htttp: []
`) + "---\n" + meshtest.Object("ServiceEntry", "good", "bookinfo", `  hosts: [api.example.com]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
`) + "---\n" + meshtest.Object("DestinationRule", "bad-port", "bookinfo", `  host: ratings
  trafficPolicy:
    portLevelSettings:
    - port: {number: 70000}
`)

type harness struct {
	t         *testing.T
	path      string
	store     *embedded.Store
	srv       *httptest.Server
	tokenFile string // the admin token, as straitd keeps it beside the store
}

// testAdminToken is the harness's admin token, in admin-token beside the store (mode 0600).
const testAdminToken = "sat1.test-admin-token"

func open(t *testing.T, path string) *harness {
	t.Helper()
	s, err := embedded.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(filepath.Dir(path), "admin-token")
	if err := os.WriteFile(tokenFile, []byte(testAdminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler(testAdminToken))
	h := &harness{t: t, path: path, store: s, srv: srv, tokenFile: tokenFile}
	t.Cleanup(h.close)
	return h
}

func (h *harness) close() {
	if h.srv != nil {
		h.srv.Close()
		h.store.Close()
		h.srv = nil
	}
}

// strait runs the real CLI against the store's API, with the admin token.
func (h *harness) strait(stdin string, args ...string) (string, string, int) {
	return h.straitNoToken(stdin, append([]string{"--admin-token-file", h.tokenFile}, args...)...)
}

// straitNoToken runs the real CLI against the store's API without --admin-token-file.
func (h *harness) straitNoToken(stdin string, args ...string) (string, string, int) {
	var out, errb bytes.Buffer
	code := cli.Run(context.Background(), append([]string{"--straitd", h.srv.URL}, args...), strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), code
}

func TestApplyGetDeleteRoundTripAndPersistence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "reviews.yaml")
	if err := os.WriteFile(file, []byte(goodVS), 0o644); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "store.db")
	h := open(t, db)

	out, errOut, code := h.strait("", "apply", "-f", file)
	if code != 0 {
		t.Fatalf("apply failed: %s", errOut)
	}
	for _, want := range []string{"virtualservice/reviews created", "destinationrule/reviews created"} {
		if !strings.Contains(out, want) {
			t.Errorf("apply output lacks %q:\n%s", want, out)
		}
	}
	out, _, _ = h.strait("", "apply", "-f", file)
	if !strings.Contains(out, "virtualservice/reviews unchanged") {
		t.Errorf("second apply should be unchanged:\n%s", out)
	}

	out, errOut, code = h.strait("", "get", "vs", "reviews", "-n", "bookinfo", "-o", "yaml")
	if code != 0 {
		t.Fatalf("get failed: %s", errOut)
	}
	for _, want := range []string{"kind: VirtualService", "name: reviews", "subset: v1"} {
		if !strings.Contains(out, want) {
			t.Errorf("get -o yaml lacks %q:\n%s", want, out)
		}
	}

	// Persistence: close and reopen the same file.
	h.close()
	h = open(t, db)
	if got := len(h.store.List()); got != 2 {
		t.Fatalf("after reopen: %d objects, want 2", got)
	}
	out, _, code = h.strait("", "get", "destinationrule", "-A")
	if code != 0 || !strings.Contains(out, "bookinfo") || !strings.Contains(out, "reviews") {
		t.Fatalf("get -A after reopen: code %d\n%s", code, out)
	}

	out, errOut, code = h.strait("", "delete", "vs", "reviews", "-n", "bookinfo")
	if code != 0 || !strings.Contains(out, "virtualservice/reviews deleted") {
		t.Fatalf("delete: code %d out %q err %q", code, out, errOut)
	}
	_, errOut, code = h.strait("", "get", "vs", "reviews", "-n", "bookinfo")
	if code == 0 || !strings.Contains(errOut, "not found") {
		t.Fatalf("get after delete: code %d err %q", code, errOut)
	}
	out, errOut, code = h.strait(goodVS, "delete", "-f", "-")
	if code == 0 {
		t.Fatalf("delete -f of a partly missing set should fail (all or nothing), got %q", out)
	}
	if !strings.Contains(errOut, "VirtualService/bookinfo/reviews") {
		t.Errorf("delete error should name the missing object: %q", errOut)
	}
	if got := len(h.store.List()); got != 1 {
		t.Fatalf("failed delete changed the store: %d objects, want 1", got)
	}
}

func TestRejectedApplyReportsEveryErrorAndChangesNothing(t *testing.T) {
	dir := t.TempDir()
	h := open(t, filepath.Join(dir, "store.db"))
	file := filepath.Join(dir, "mixed.yaml")
	if err := os.WriteFile(file, []byte(twoBad), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := h.strait("", "apply", "-f", file)
	if code == 0 {
		t.Fatal("apply of invalid documents succeeded")
	}
	for _, want := range []string{"mixed.yaml", "bad-field", "htttp", "bad-port", "port"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("errors lack %q:\n%s", want, errOut)
		}
	}
	if n := len(h.store.List()); n != 0 {
		t.Fatalf("rejected apply stored %d objects", n)
	}
	// A valid dry run changes nothing either.
	out, _, code := h.strait(goodVS, "apply", "--dry-run", "-f", "-")
	if code != 0 || !strings.Contains(out, "(dry run)") {
		t.Fatalf("dry run: code %d out %q", code, out)
	}
	if n := len(h.store.List()); n != 0 {
		t.Fatalf("dry run stored %d objects", n)
	}
}

func TestRunNotifiesOnChange(t *testing.T) {
	h := open(t, filepath.Join(t.TempDir(), "store.db"))
	ctx, cancel := context.WithCancel(context.Background())
	changed := make(chan struct{}, 4)
	done := make(chan error)
	go func() { done <- h.store.Run(ctx, func() { changed <- struct{}{} }) }()
	objs, errs := config.Decode("test", []byte(goodVS))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	// Run may not have subscribed yet: apply until a notification arrives (bounded).
	for i := 0; ; i++ {
		if _, err := h.store.Apply(objs[:1], false); err != nil {
			t.Fatal(err)
		}
		select {
		case <-changed:
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			return
		default:
		}
		if i > 1000 {
			t.Fatal("no change notification")
		}
		// Make the next apply a real change.
		objs[0].Labels = map[string]string{"n": strings.Repeat("x", i%5+1)}
		<-afterMillis(5)
	}
}

// TestReadAdminTokenRefusesOpenFiles: a token file its group or others can read is refused.
func TestReadAdminTokenRefusesOpenFiles(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "admin-token")
	os.WriteFile(p, []byte("tok\n"), 0o644)
	os.Chmod(p, 0o644)
	if _, err := embedded.ReadAdminToken(p); err == nil {
		t.Error("a group/world-readable token file was accepted")
	}
	os.Chmod(p, 0o600)
	if tok, err := embedded.ReadAdminToken(p); err != nil || tok != "tok" {
		t.Errorf("ReadAdminToken: %q, %v", tok, err)
	}
}

// TestCLIWritesNeedTheAdminToken: `strait apply` and `strait delete` without the admin token, or
// with a wrong one, are refused with what to do and change nothing; `strait get` needs none; the
// token is found through $STRAIT_ADMIN_TOKEN_FILE too; a token file others can read is refused.
func TestCLIWritesNeedTheAdminToken(t *testing.T) {
	t.Setenv("STRAIT_ADMIN_TOKEN_FILE", "")
	dir := t.TempDir()
	h := open(t, filepath.Join(dir, "store.db"))

	_, errOut, code := h.straitNoToken(goodVS, "apply", "-f", "-")
	if code == 0 || !strings.Contains(errOut, "strait apply: straitd requires its admin token") || !strings.Contains(errOut, "pass --admin-token-file") {
		t.Errorf("apply without a token: code %d, %s", code, errOut)
	}
	_, errOut, code = h.straitNoToken("", "delete", "vs", "reviews", "-n", "bookinfo")
	if code == 0 || !strings.Contains(errOut, "strait delete: straitd requires its admin token") {
		t.Errorf("delete without a token: code %d, %s", code, errOut)
	}
	wrong := filepath.Join(dir, "wrong-token")
	if err := os.WriteFile(wrong, []byte("sat1.wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = h.straitNoToken(goodVS, "--admin-token-file", wrong, "apply", "-f", "-")
	if code == 0 || !strings.Contains(errOut, "refused the admin token in "+wrong) {
		t.Errorf("apply with a wrong token: code %d, %s", code, errOut)
	}
	if n := len(h.store.List()); n != 0 {
		t.Fatalf("refused applies stored %d objects", n)
	}

	t.Setenv("STRAIT_ADMIN_TOKEN_FILE", h.tokenFile)
	if out, errOut, code := h.straitNoToken(goodVS, "apply", "-f", "-"); code != 0 || !strings.Contains(out, "virtualservice/reviews created") {
		t.Fatalf("apply with $STRAIT_ADMIN_TOKEN_FILE: code %d, %s%s", code, out, errOut)
	}
	t.Setenv("STRAIT_ADMIN_TOKEN_FILE", "")
	if out, errOut, code := h.straitNoToken("", "get", "vs", "-A"); code != 0 || !strings.Contains(out, "reviews") {
		t.Errorf("get without a token: code %d, %s%s", code, out, errOut)
	}
	_, errOut, code = h.straitNoToken("", "--admin-token-file", wrong, "delete", "vs", "reviews", "-n", "bookinfo")
	if code == 0 || !strings.Contains(errOut, "refused the admin token") {
		t.Errorf("delete with a wrong token: code %d, %s", code, errOut)
	}

	open := filepath.Join(dir, "open-token")
	if err := os.WriteFile(open, []byte(testAdminToken+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(open, 0o644)
	_, errOut, code = h.straitNoToken("", "--admin-token-file", open, "delete", "vs", "reviews", "-n", "bookinfo")
	if code == 0 || !strings.Contains(errOut, "readable by its owner only") {
		t.Errorf("delete with a world-readable token file: code %d, %s", code, errOut)
	}
	if n := len(h.store.List()); n != 2 {
		t.Fatalf("refused deletes: %d objects, want 2", n)
	}
	if _, errOut, code := h.strait("", "delete", "vs", "reviews", "-n", "bookinfo"); code != 0 {
		t.Fatalf("delete with the token: %s", errOut)
	}
}
