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
const twoBad = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bad-field, namespace: bookinfo}
spec:
  hosts: [ratings]
  htttp: []
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: good, namespace: bookinfo}
spec:
  hosts: [api.example.com]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: bad-port, namespace: bookinfo}
spec:
  host: ratings
  trafficPolicy:
    portLevelSettings:
    - port: {number: 70000}
`

type harness struct {
	t     *testing.T
	path  string
	store *embedded.Store
	srv   *httptest.Server
}

func open(t *testing.T, path string) *harness {
	t.Helper()
	s, err := embedded.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	h := &harness{t: t, path: path, store: s, srv: srv}
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

// strait runs the real CLI against the store's API.
func (h *harness) strait(stdin string, args ...string) (string, string, int) {
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
