package autoregister

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/structpb"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/translate"
	"github.com/strait-mesh/strait/controlplane/xds"
	"github.com/strait-mesh/strait/internal/node"
	"github.com/strait-mesh/strait/internal/testenv"
)

func group() *config.Object {
	return &config.Object{
		Kind: config.WorkloadGroup, Meta: config.Meta{Name: "vms", Namespace: "default"},
		Spec: &networkingv1alpha3.WorkloadGroup{
			Metadata: &networkingv1alpha3.WorkloadGroup_ObjectMeta{
				Labels:      map[string]string{"app": "legacy", "tier": "group"},
				Annotations: map[string]string{"team": "payments"},
			},
			Template: &networkingv1alpha3.WorkloadEntry{
				Ports:          map[string]uint32{"http": 8080},
				Labels:         map[string]string{"version": "v1", "tier": "template"},
				ServiceAccount: "legacy-sa",
				Network:        "net-1",
				Weight:         3,
				Locality:       "eu/west",
			},
		},
	}
}

func lookup(ns, name string) (*config.Object, bool) {
	if ns == "default" && name == "vms" {
		return group(), true
	}
	return nil, false
}

func proxy(t *testing.T, ip, grp string, meta map[string]string) *translate.Proxy {
	t.Helper()
	fields := map[string]*structpb.Value{node.MetaWorkloadGroup: structpb.NewStringValue(grp)}
	for k, v := range meta {
		fields[k] = structpb.NewStringValue(v)
	}
	fields[node.MetaLabels] = structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
		"tier": structpb.NewStringValue("proxy"),
	}})
	p, err := xds.ParseProxy(&corev3.Node{
		Id:       node.NewID(node.Sidecar, ip, "vm-"+ip, "default").String(),
		Metadata: &structpb.Struct{Fields: fields},
	})
	if err != nil {
		t.Fatal(err)
	}
	// As the xDS server binds a proxy authenticated on the mesh port.
	p.ServiceAccount, p.Identity = "legacy-sa", "spiffe://cluster.local/ns/default/sa/legacy-sa"
	return p
}

// TestUnauthenticatedOrForeignProxyIsRefused: a proxy on the plaintext port, or one whose
// identity is another service account than the group's, never registers an endpoint.
func TestUnauthenticatedOrForeignProxyIsRefused(t *testing.T) {
	r := newRegistry(t, nil)
	anon := proxy(t, "10.0.0.8", "vms", nil)
	anon.Identity, anon.ServiceAccount = "", ""
	r.OnConnect(anon)
	foreign := proxy(t, "10.0.0.9", "vms", nil)
	foreign.ServiceAccount, foreign.Identity = "ratings", "spiffe://cluster.local/ns/default/sa/ratings"
	r.OnConnect(foreign)
	if n := len(r.List()); n != 0 {
		t.Fatalf("%d entries registered, want none", n)
	}
	errs := fmt.Sprint(r.Errors())
	for _, want := range []string{"needs a proxy authenticated by its mesh certificate", `runs as service account "legacy-sa"`} {
		if !strings.Contains(errs, want) {
			t.Errorf("errors %s: want %q", errs, want)
		}
	}
}

// manualTimers lets a test fire grace timers by hand.
type manualTimers struct {
	mu  sync.Mutex
	fns []func()
}

func (m *manualTimers) afterFunc(_ time.Duration, f func()) func() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fns = append(m.fns, f)
	return func() bool { return true }
}

func (m *manualTimers) fireAll() {
	m.mu.Lock()
	fns := m.fns
	m.fns = nil
	m.mu.Unlock()
	for _, f := range fns {
		f()
	}
}

func newRegistry(t *testing.T, timers *manualTimers) *Registry {
	t.Helper()
	opts := Options{Lookup: lookup, ControlPlane: "straitd-0"}
	if timers != nil {
		opts.afterFunc = timers.afterFunc
	}
	r, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestEntryFromGroupTemplate(t *testing.T) {
	r := newRegistry(t, nil)
	r.OnConnect(proxy(t, "10.0.0.7", "vms", map[string]string{node.MetaInstanceIPs: "127.0.0.7"}))
	list := r.List()
	if len(list) != 1 {
		t.Fatalf("List() = %d entries, want 1", len(list))
	}
	o := list[0]
	if o.Kind != config.WorkloadEntry || o.Name != "vms-127-0-0-7" || o.Namespace != "default" || o.Origin != Origin {
		t.Errorf("entry = %s %s/%s origin %s", o.Kind, o.Namespace, o.Name, o.Origin)
	}
	we := o.Spec.(*networkingv1alpha3.WorkloadEntry)
	if we.Address != "127.0.0.7" || we.Ports["http"] != 8080 || we.ServiceAccount != "legacy-sa" ||
		we.Network != "net-1" || we.Weight != 3 || we.Locality != "eu/west" {
		t.Errorf("spec = %v", we)
	}
	want := map[string]string{"app": "legacy", "version": "v1", "tier": "proxy"}
	for k, v := range want {
		if we.Labels[k] != v || o.Labels[k] != v {
			t.Errorf("label %s = %q (meta %q), want %q", k, we.Labels[k], o.Labels[k], v)
		}
	}
	if o.Annotations[AnnotationGroup] != "vms" || o.Annotations[AnnotationController] != "straitd-0" ||
		o.Annotations["team"] != "payments" {
		t.Errorf("annotations = %v", o.Annotations)
	}
	if _, err := time.Parse(time.RFC3339Nano, o.Annotations[AnnotationConnectedAt]); err != nil {
		t.Errorf("connectedAt: %v", err)
	}
	if err := config.Validate(o); err != nil {
		t.Errorf("auto-registered entry does not validate: %v", err)
	}
	// The group's template is not modified.
	if tmpl := group().Spec.(*networkingv1alpha3.WorkloadGroup).Template; tmpl.Address != "" {
		t.Errorf("template modified: %v", tmpl)
	}
}

func TestEntryNames(t *testing.T) {
	for _, c := range []struct{ group, ip, network, want string }{
		{"vms", "10.1.2.3", "", "vms-10-1-2-3"},
		{"vms", "fd00::1", "", "vms-fd00--1"},
		{"vms", "10.1.2.3", "net.1", "vms-10-1-2-3-net-1"},
	} {
		if got := EntryName(c.group, c.ip, c.network); got != c.want {
			t.Errorf("EntryName(%q, %q, %q) = %q, want %q", c.group, c.ip, c.network, got, c.want)
		}
	}
}

func TestUnknownGroupIsRefused(t *testing.T) {
	r := newRegistry(t, nil)
	p := proxy(t, "127.0.0.8", "nope", nil)
	r.OnConnect(p)
	if n := len(r.List()); n != 0 {
		t.Fatalf("List() = %d entries for an unknown group", n)
	}
	errs := r.Errors()
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "WorkloadGroup default/nope not found") {
		t.Fatalf("Errors() = %v", errs)
	}
	r.OnDisconnect(p)
	if errs := r.Errors(); len(errs) != 0 {
		t.Errorf("Errors() after disconnect = %v", errs)
	}
	// A proxy without a group is not ours.
	r.OnConnect(proxy(t, "127.0.0.9", "", nil))
	if len(r.List()) != 0 || len(r.Errors()) != 0 {
		t.Errorf("a proxy without AUTO_REGISTER_GROUP was registered or refused")
	}
}

func TestRemovedAfterGraceUnlessReconnected(t *testing.T) {
	timers := &manualTimers{}
	r := newRegistry(t, timers)
	p := proxy(t, "127.0.0.7", "vms", nil)

	// Reconnect within the grace period: the late timer must not remove the entry.
	r.OnConnect(p)
	r.OnDisconnect(p)
	if len(r.List()) != 1 {
		t.Fatalf("entry removed before the grace period")
	}
	r.OnConnect(p)
	timers.fireAll()
	if len(r.List()) != 1 {
		t.Fatalf("entry removed although the proxy reconnected within the grace period")
	}

	// Disconnect for good: removed when the grace period ends.
	r.OnDisconnect(p)
	timers.fireAll()
	if n := len(r.List()); n != 0 {
		t.Fatalf("List() = %d entries after the grace period", n)
	}
}

func TestRunNotifiesChanges(t *testing.T) {
	r, err := New(Options{Lookup: lookup, Grace: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	changes := make(chan int, 16)
	done := make(chan error)
	go func() { done <- r.Run(ctx, func() { changes <- len(r.List()) }) }()
	p := proxy(t, "127.0.0.7", "vms", nil)
	r.OnConnect(p)
	waitChange(t, changes, 1)
	r.OnDisconnect(p) // real timer
	waitChange(t, changes, 0)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func waitChange(t *testing.T, ch chan int, want int) {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case n := <-ch:
			if n == want {
				return
			}
		case <-deadline:
			t.Fatalf("no change to %d entries", want)
		}
	}
}

// nullGenerator serves nothing; these tests only need connections.
type nullGenerator struct{}

func (nullGenerator) Generate(*mesh.Snapshot, *translate.Proxy) (translate.Resources, error) {
	return translate.Resources{}, nil
}

// TestWithXDSServer registers a proxy that connects over real Delta ADS and removes it after the
// grace period that follows its disconnection.
func TestWithXDSServer(t *testing.T) {
	r, err := New(Options{Lookup: lookup, Grace: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := xds.New(xds.Options{Generator: nullGenerator{}, OnConnect: r.OnConnect, OnDisconnect: r.OnDisconnect})
	if err != nil {
		t.Fatal(err)
	}
	srv.Update(&mesh.Snapshot{Version: 1})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The mesh port's TLS: client certificates verified against the mesh root when given.
	ca := testenv.NewCA(t, "cluster.local")
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{ca.Issue(t, testenv.Leaf{DNS: []string{"straitd"}})},
		ClientAuth:   tls.VerifyClientCertIfGiven, ClientCAs: pool,
	})))
	srv.Register(g)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(func() { g.Stop(); srv.Close() })

	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: pool, ServerName: "straitd",
		Certificates: []tls.Certificate{ca.Issue(t, testenv.Leaf{URIs: []string{"spiffe://cluster.local/ns/default/sa/legacy-sa"}})},
	})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := discovery.NewAggregatedDiscoveryServiceClient(cc).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := proxy(t, "127.0.0.7", "vms", nil).Node
	if err := st.Send(&discovery.DeltaDiscoveryRequest{Node: n, TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil { // the (empty) CDS response: the proxy is registered
		t.Fatal(err)
	}
	waitEntries(t, r, 1)
	if got := r.List()[0].Name; got != "vms-127-0-0-7" {
		t.Errorf("entry name = %q", got)
	}
	cancel()
	waitEntries(t, r, 0)
}

func waitEntries(t *testing.T, r *Registry, want int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for len(r.List()) != want {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %d entries, have %d", want, len(r.List()))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSnapshotLookup(t *testing.T) {
	var snap *mesh.Snapshot
	lookup := SnapshotLookup(func() *mesh.Snapshot { return snap })
	if _, ok := lookup("default", "vms"); ok {
		t.Fatal("found a group before any snapshot")
	}
	snap = &mesh.Snapshot{Configs: map[config.Kind][]*config.Object{config.WorkloadGroup: {group()}}}
	if o, ok := lookup("default", "vms"); !ok || o.Name != "vms" {
		t.Errorf("lookup(default, vms) = %v, %v", o, ok)
	}
	if _, ok := lookup("other", "vms"); ok {
		t.Errorf("found a group in the wrong namespace")
	}
}

// TestEntriesSurviveARestart: with a state file, a new Registry (a restarted straitd) serves the
// entries of the old one at once, keeps one whose proxy reconnects, and removes one whose proxy
// does not come back within the restore grace.
func TestEntriesSurviveARestart(t *testing.T) {
	state := filepath.Join(t.TempDir(), "autoregister.json")
	r1, err := New(Options{Lookup: lookup, StateFile: state})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	changes := make(chan int, 16)
	done := make(chan error)
	go func() { done <- r1.Run(ctx, func() { changes <- len(r1.List()) }) }()
	back, gone := proxy(t, "127.0.0.7", "vms", nil), proxy(t, "127.0.0.8", "vms", nil)
	r1.OnConnect(back)
	waitChange(t, changes, 1)
	r1.OnConnect(gone)
	waitChange(t, changes, 2) // persisted after each change
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	timers := &manualTimers{}
	r2, err := New(Options{Lookup: lookup, StateFile: state, afterFunc: timers.afterFunc})
	if err != nil {
		t.Fatal(err)
	}
	if got := r2.List(); len(got) != 2 || got[0].Origin != Origin ||
		got[0].Spec.(*networkingv1alpha3.WorkloadEntry).GetAddress() != "127.0.0.7" {
		t.Fatalf("restored entries: %v", got)
	}
	r2.OnConnect(back)
	timers.fireAll() // the restore grace ends
	got := r2.List()
	if len(got) != 1 || got[0].Spec.(*networkingv1alpha3.WorkloadEntry).GetAddress() != "127.0.0.7" {
		t.Errorf("after the restore grace: %v, want only the reconnected 127.0.0.7", got)
	}
}
