package kube_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	networking "istio.io/api/networking/v1alpha3"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/config/kube"
	"github.com/strait-mesh/strait/internal/testenv/kubeenv"
)

// cluster starts an API server with Strait's CRDs installed.
func cluster(t *testing.T) (*kubeenv.Cluster, *kubeenv.Objects, context.Context) {
	t.Helper()
	c := kubeenv.Start(t, kubeenv.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	if err := kube.InstallCRDs(ctx, c.Config); err != nil {
		t.Fatal(err)
	}
	return c, c.Objects(t), ctx
}

// run starts a source and waits for its first sync. Each change it publishes is signalled on the
// returned channel.
func run(t *testing.T, ctx context.Context, c *kubeenv.Cluster, opts kube.Options) (*kube.Source, <-chan struct{}) {
	t.Helper()
	opts.Debounce, opts.MaxDelay = 10*time.Millisecond, 100*time.Millisecond
	src, err := kube.New(c.Config, opts)
	if err != nil {
		t.Fatal(err)
	}
	changed := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- src.Run(ctx, func() {
			select {
			case changed <- struct{}{}:
			default:
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-src.Synced():
	case err := <-done:
		t.Fatalf("Run returned before syncing: %v", err)
	case <-ctx.Done():
		t.Fatal("source did not sync")
	}
	return src, changed
}

// eventually waits (up to a minute, woken by the source's changes) until cond holds.
func eventually(t *testing.T, src *kube.Source, changed <-chan struct{}, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(time.Minute)
	for !cond() {
		select {
		case <-changed:
		case <-time.After(200 * time.Millisecond):
		case <-deadline:
			var got []string
			for _, o := range src.List() {
				got = append(got, o.Key().String()+"@"+o.ResourceVersion)
			}
			t.Fatalf("timed out waiting for %s; serving %v; errors %v", what, got, src.Errors())
		}
	}
}

// find returns the served object with this key.
func find(src *kube.Source, k config.Key) *config.Object {
	for _, o := range src.List() {
		if o.Key() == k {
			return o
		}
	}
	return nil
}

func vs(host, subset, secondRouteName string) string {
	second := ""
	if secondRouteName != "" {
		second = fmt.Sprintf(`
  - name: %s
    route:
    - destination: {host: reviews}`, secondRouteName)
	}
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [%s]
  http:
  - name: primary
    route:
    - destination: {host: reviews, subset: %s}%s
`, host, subset, second)
}

// TestSourceFollowsAPIServer creates, breaks, mends and deletes objects in a real API server and
// checks what the source serves at each step: an object Strait refuses keeps its last good
// version serving and is reported with its field path.
func TestSourceFollowsAPIServer(t *testing.T) {
	c, objs, ctx := cluster(t)
	src, changed := run(t, ctx, c, kube.Options{WriteStatus: true})
	if len(src.List()) != 0 || len(src.Errors()) != 0 {
		t.Fatalf("empty cluster: objects %v, errors %v", src.List(), src.Errors())
	}

	key := config.Key{Kind: config.VirtualService, Namespace: "bookinfo", Name: "reviews"}
	if _, err := objs.Create(ctx, vs("reviews", "v1", "")); err != nil {
		t.Fatal(err)
	}
	dr := `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external, namespace: bookinfo}
spec:
  hosts: [api.example.com]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
`
	if _, err := objs.Create(ctx, dr); err != nil {
		t.Fatal(err)
	}
	eventually(t, src, changed, "the three objects", func() bool { return len(src.List()) == 3 })
	o := find(src, key)
	if o == nil || o.Origin != kube.Origin || o.ResourceVersion == "" || o.APIVersion != "networking.istio.io/v1" {
		t.Fatalf("VirtualService served as %+v", o)
	}
	subset := func() string {
		o := find(src, key)
		if o == nil {
			return ""
		}
		return o.Spec.(*networking.VirtualService).GetHttp()[0].GetRoute()[0].GetDestination().GetSubset()
	}

	// An update is served.
	if err := objs.Replace(ctx, vs("reviews", "v2", "")); err != nil {
		t.Fatal(err)
	}
	eventually(t, src, changed, "subset v2", func() bool { return subset() == "v2" })

	// The API server takes an object Strait refuses (two routes named alike): the last good
	// version keeps serving and the error names the field.
	if err := objs.Replace(ctx, vs("reviews", "v1", "primary")); err != nil {
		t.Fatal(err)
	}
	eventually(t, src, changed, "the error", func() bool { return len(src.Errors()) == 1 })
	err := src.Errors()[0]
	want := "kubernetes: VirtualService bookinfo/reviews: spec.http[1].name: duplicate route name"
	if !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q, want it to start with %q", err, want)
	}
	if got := subset(); got != "v2" {
		t.Errorf("serving subset %q after a refused update, want the last good v2", got)
	}
	waitCondition(t, ctx, objs, vs("reviews", "", ""), "False", kube.ReasonInvalid,
		`spec.http[1].name: duplicate route name "primary" (also spec.http[0])`)

	// Mended: the new version serves and the error goes.
	if err := objs.Replace(ctx, vs("reviews", "v1", "secondary")); err != nil {
		t.Fatal(err)
	}
	eventually(t, src, changed, "the mended object", func() bool { return subset() == "v1" && len(src.Errors()) == 0 })
	waitCondition(t, ctx, objs, vs("reviews", "", ""), "True", kube.ReasonValid, "accepted by Strait")

	// Deleted: gone, including a refused object's error.
	if err := objs.Replace(ctx, vs("reviews", "v1", "primary")); err != nil {
		t.Fatal(err)
	}
	eventually(t, src, changed, "the error", func() bool { return len(src.Errors()) == 1 })
	if err := objs.Delete(ctx, vs("reviews", "v1", "")+"---\n"+dr); err != nil {
		t.Fatal(err)
	}
	eventually(t, src, changed, "an empty source", func() bool { return len(src.List()) == 0 && len(src.Errors()) == 0 })
}

// waitCondition waits until the object has Strait's status condition with this status, reason
// and message, for its current generation.
func waitCondition(t *testing.T, ctx context.Context, objs *kubeenv.Objects, obj, status, reason, msg string) {
	t.Helper()
	var last map[string]any
	for {
		got, err := objs.Get(ctx, obj)
		if err != nil {
			t.Fatal(err)
		}
		conds, _, _ := unstructured.NestedSlice(got[0].Object, "status", "conditions")
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["type"] != kube.ConditionType {
				continue
			}
			last = m
			if m["status"] == status && m["reason"] == reason && m["message"] == msg && m["observedGeneration"] == got[0].GetGeneration() {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no condition %s=%s (%s: %s); last %v", kube.ConditionType, status, reason, msg, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestSourceNamespaces checks that a source limited to namespaces reads only those, and that a
// Secret of a type that cannot hold credentials is not read at all.
func TestSourceNamespaces(t *testing.T) {
	c, objs, ctx := cluster(t)
	src, changed := run(t, ctx, c, kube.Options{Namespaces: []string{"a", "c"}})
	var docs []string
	for _, ns := range []string{"a", "b", "c"} {
		docs = append(docs, fmt.Sprintf(`apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: %s}
spec: {mtls: {mode: STRICT}}
`, ns))
	}
	docs = append(docs, `apiVersion: v1
kind: Secret
metadata: {name: token, namespace: a}
type: kubernetes.io/basic-auth
stringData: {username: u, password: p}
`)
	if _, err := objs.Create(ctx, strings.Join(docs, "---\n")); err != nil {
		t.Fatal(err)
	}
	eventually(t, src, changed, "two objects", func() bool { return len(src.List()) == 2 })
	for _, o := range src.List() {
		if o.Kind != config.PeerAuthentication || o.Namespace == "b" {
			t.Errorf("served %s", o.Key())
		}
	}
	if errs := src.Errors(); len(errs) != 0 {
		t.Errorf("errors: %v", errs)
	}
}

// TestSourceWithoutCRDs checks that kinds whose CRDs are missing are reported, not waited for.
func TestSourceWithoutCRDs(t *testing.T) {
	c := kubeenv.Start(t, kubeenv.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	src, _ := run(t, ctx, c, kube.Options{})
	errs := src.Errors()
	if len(errs) != len(config.Kinds)-1 { // every kind but Secret
		t.Fatalf("got %d errors, want one per CRD: %v", len(errs), errs)
	}
	if want := "is its CustomResourceDefinition installed?"; !strings.Contains(errs[0].Error(), want) {
		t.Errorf("error %q does not say %q", errs[0], want)
	}
}

// TestRunWithoutAPIServer checks that a source whose API server cannot be reached keeps trying
// (it does not fail straitd) and never reports a sync.
func TestRunWithoutAPIServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	src, err := kube.New(&rest.Config{Host: "https://" + addr}, kube.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if err := src.Run(ctx, nil); err != nil {
		t.Errorf("Run: %v, want nil when its context ends", err)
	}
	select {
	case <-src.Synced():
		t.Error("synced without an API server")
	default:
	}
}

// TestStatusRunner runs two sources whose status writers run only when their StatusRunner says
// so, as straitd's leader election does: the leader's writes the conditions; once it stops, an
// object refused meanwhile gets its condition when the other's writer starts (a new leader),
// from what that source queued while it waited.
func TestStatusRunner(t *testing.T) {
	c, objs, ctx := cluster(t)
	runners := map[string]func(context.Context){}
	runnerOf := func(who string) func(string, func(context.Context)) {
		return func(_ string, run func(context.Context)) { runners[who] = run }
	}
	srcA, changedA := run(t, ctx, c, kube.Options{WriteStatus: true, StatusRunner: runnerOf("a")})
	srcB, changedB := run(t, ctx, c, kube.Options{WriteStatus: true, StatusRunner: runnerOf("b")})
	if runners["a"] == nil || runners["b"] == nil {
		t.Fatal("the status writers were not handed to their runners")
	}
	leaderCtx, stepDown := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() { defer close(stopped); runners["a"](leaderCtx) }()

	if _, err := objs.Create(ctx, vs("reviews", "v1", "primary")); err != nil {
		t.Fatal(err)
	}
	refused := `spec.http[1].name: duplicate route name "primary" (also spec.http[0])`
	waitCondition(t, ctx, objs, vs("reviews", "", ""), "False", kube.ReasonInvalid, refused)
	if err := objs.Replace(ctx, vs("reviews", "v1", "secondary")); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, ctx, objs, vs("reviews", "", ""), "True", kube.ReasonValid, "accepted by Strait")

	// a steps down; the object breaks again while nobody leads.
	stepDown()
	<-stopped
	if err := objs.Replace(ctx, vs("reviews", "v1", "primary")); err != nil {
		t.Fatal(err)
	}
	eventually(t, srcA, changedA, "a's error", func() bool { return len(srcA.Errors()) == 1 })
	eventually(t, srcB, changedB, "b's error", func() bool { return len(srcB.Errors()) == 1 })
	got, err := objs.Get(ctx, vs("reviews", "", ""))
	if err != nil {
		t.Fatal(err)
	}
	if conds, _, _ := unstructured.NestedSlice(got[0].Object, "status", "conditions"); !strings.Contains(fmt.Sprint(conds), "accepted by Strait") {
		t.Fatalf("a condition was written while nobody led: %v", conds)
	}
	// b becomes the leader: it writes what it queued.
	go runners["b"](ctx)
	waitCondition(t, ctx, objs, vs("reviews", "", ""), "False", kube.ReasonInvalid, refused)
}
