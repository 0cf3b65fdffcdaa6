package controlplane

import (
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/strait-mesh/strait/controlplane/leader"
	"github.com/strait-mesh/strait/internal/testenv"
)

// straitdReplica is one straitd process of TestTwoReplicasOnKubernetes.
type straitdReplica struct {
	name, ip string
	caDir    string
	p        *testenv.Process
}

func (r *straitdReplica) xds() string  { return r.ip + ":15010" }
func (r *straitdReplica) http() string { return "http://" + r.ip + ":15014" }

// root is the PEM of the replica's self-signed root.
func (r *straitdReplica) root(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.caDir, "root.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// leading reads the replica's strait_leader_election_leading gauge of lease from /metrics.
func (r *straitdReplica) leading(t *testing.T, lease string) bool {
	t.Helper()
	_, body := get(t, r.http()+"/metrics")
	return strings.Contains(body, `strait_leader_election_leading{lease="`+lease+`"} 1`)
}

// sameRoot reports whether PEM bundle holds exactly the one certificate of PEM root.
func sameRoot(bundle, root []byte) bool {
	b, rest := pem.Decode(bundle)
	r, _ := pem.Decode(root)
	return b != nil && r != nil && string(b.Bytes) == string(r.Bytes) && strings.TrimSpace(string(rest)) == ""
}

// TestTwoReplicasOnKubernetes runs two straitd processes against a real API server, as `strait
// install`'s two replicas: exactly one (the first) holds both leases and does the singleton work
// — the webhook configuration's CA bundle, the istio-ca-root-cert ConfigMaps, the status
// conditions — while both serve xDS. Then the leader is killed (SIGKILL: its leases are not
// released) and the other takes over all of it. The replicas get a self-signed CA each (in
// production they share the cacerts Secret) so that the CA bundle and the ConfigMap tell which
// replica wrote them. Last, the new leader is stopped normally and a third replica takes over
// at once. The takeover times are logged; the bound asserted is generous.
func TestTwoReplicasOnKubernetes(t *testing.T) {
	bin := testenv.Binaries(t)
	c, ctx := kubeWithCRDs(t)
	cs := kubernetes.NewForConfigOrDie(c.Config)
	objs := c.Objects(t)
	// The injector's configuration as `strait install` writes it, but never called (no namespace
	// carries its label): only its CA bundle matters here.
	if _, err := objs.Create(ctx, `apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: strait-ha-injector}
webhooks:
- name: namespace.sidecar-injector.istio.io
  clientConfig: {url: "https://127.0.0.74:15017/inject"}
  rules: [{operations: [CREATE], apiGroups: [""], apiVersions: [v1], resources: [pods]}]
  namespaceSelector: {matchLabels: {strait-test: never}}
  failurePolicy: Fail
  sideEffects: None
  admissionReviewVersions: [v1]
`); err != nil {
		t.Fatal(err)
	}

	start := func(name, ip string) *straitdReplica {
		r := &straitdReplica{name: name, ip: ip, caDir: filepath.Join(t.TempDir(), "ca")}
		r.p = testenv.Start(t, name, []string{"POD_NAME=" + name}, filepath.Join(bin, "straitd"),
			"--kubeconfig="+c.Kubeconfig, "--namespace=istio-system", "--ca-dir="+r.caDir,
			"--xds-listen="+r.xds(), "--http-listen="+ip+":15014", "--mesh-address="+ip+":15012",
			"--webhook-listen="+ip+":15017", "--proxy-image=strait/proxy:test", "--injector-webhook-config=strait-ha-injector")
		r.p.WaitOutput(t, regexp.MustCompile(`straitd serving`), 60*time.Second)
		eventually(t, name+" ready", func() bool { code, _ := get(t, r.http()+"/ready"); return code == 200 })
		return r
	}
	revLease := leader.RevisionLease("")
	leases := []string{revLease, leader.StatusLease}
	a := start("straitd-a", "127.0.0.74")
	eventually(t, "a holds both leases", func() bool { return a.leading(t, revLease) && a.leading(t, leader.StatusLease) })
	b := start("straitd-b", "127.0.0.75")

	webhookRoot := func() []byte {
		m, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "strait-ha-injector", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return m.Webhooks[0].ClientConfig.CABundle
	}
	configMapRoot := func() []byte {
		cm, err := cs.CoreV1().ConfigMaps("default").Get(ctx, RootCertConfigMap, metav1.GetOptions{})
		if err != nil {
			return nil
		}
		return []byte(cm.Data[RootCertKey])
	}
	refused := func(name string) string {
		obj := serviceEntry(name, name+".example.com", "[{number: 443, name: tls, protocol: TLS}]\n  endpoints: [{address: bad_host!}]")
		if _, err := objs.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
		return name
	}
	seGVR := schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "serviceentries"}
	dyn := dynamic.NewForConfigOrDie(c.Config)
	statusWritten := func(name string) bool {
		u, err := dyn.Resource(seGVR).Namespace("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return strings.Contains(fmt.Sprint(u.Object["status"]), "spec.endpoints[0].address")
	}

	// a leads: its root is in the webhook configuration and the ConfigMap; b writes nothing.
	eventually(t, "a's root in the webhook configuration", func() bool { return sameRoot(webhookRoot(), a.root(t)) })
	eventually(t, "a's root in the ConfigMap", func() bool { return sameRoot(configMapRoot(), a.root(t)) })
	before := refused("refused-before")
	eventually(t, "the status of a refused object", func() bool { return statusWritten(before) })
	for _, l := range leases {
		if b.leading(t, l) {
			t.Fatalf("b leads %s beside a", l)
		}
		lease, err := cs.CoordinationV1().Leases("istio-system").Get(ctx, l, metav1.GetOptions{})
		if err != nil || lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != "straitd-a" {
			t.Fatalf("lease %s: %v %v", l, lease, err)
		}
	}
	if !sameRoot(webhookRoot(), a.root(t)) || !sameRoot(configMapRoot(), a.root(t)) {
		t.Fatal("b wrote its root while a leads")
	}

	// Both serve xDS.
	cdsA, cdsB := watchClusters(t, ctx, a.xds()), watchClusters(t, ctx, b.xds())
	cdsA.next(t)
	cdsB.next(t)
	if _, err := objs.Create(ctx, serviceEntry("one", "one.example.com", "[{number: 443, name: tls, protocol: TLS}]")); err != nil {
		t.Fatal(err)
	}
	cdsA.waitFor(t, "outbound|443||one.example.com", true)
	cdsB.waitFor(t, "outbound|443||one.example.com", true)

	// a dies without a word.
	killed := time.Now()
	a.p.Signal(syscall.SIGKILL)
	<-a.p.Exited()
	took := map[string]time.Duration{}
	within := func(what string, cond func() bool) {
		t.Helper()
		testenv.WaitFor(t, what, 60*time.Second, cond)
		took[what] = time.Since(killed).Round(100 * time.Millisecond)
	}
	after := refused("refused-after")
	within("b holds both leases", func() bool { return b.leading(t, revLease) && b.leading(t, leader.StatusLease) })
	within("b's root in the webhook configuration", func() bool { return sameRoot(webhookRoot(), b.root(t)) })
	within("b's root in the ConfigMap", func() bool { return sameRoot(configMapRoot(), b.root(t)) })
	within("the status of an object refused after the kill", func() bool { return statusWritten(after) })
	t.Logf("after SIGKILL of the leader (lease %v, retry period %v): %v", leader.DefaultLeaseDuration, leader.DefaultRetryPeriod, took)

	// b serves xDS throughout.
	if _, err := objs.Create(ctx, serviceEntry("two", "two.example.com", "[{number: 443, name: tls, protocol: TLS}]")); err != nil {
		t.Fatal(err)
	}
	cdsB.waitFor(t, "outbound|443||two.example.com", true)
	for _, l := range leases {
		lease, err := cs.CoordinationV1().Leases("istio-system").Get(ctx, l, metav1.GetOptions{})
		if err != nil || *lease.Spec.HolderIdentity != "straitd-b" || *lease.Spec.LeaseTransitions != 1 {
			t.Errorf("lease %s after the takeover: %+v %v", l, lease.Spec, err)
		}
	}
	if !strings.Contains(b.p.Output(), "became the leader") {
		t.Error("b did not log its leadership")
	}

	// b stops normally (SIGTERM, as in a rolling update): it releases its leases and a third
	// replica takes over without waiting for them to run out.
	c3 := start("straitd-c", "127.0.0.76")
	eventually(t, "c ready as a follower", func() bool { return !c3.leading(t, revLease) })
	stopped := time.Now()
	b.p.Signal(syscall.SIGTERM)
	testenv.WaitFor(t, "c holds both leases", 60*time.Second, func() bool {
		return c3.leading(t, revLease) && c3.leading(t, leader.StatusLease)
	})
	t.Logf("after SIGTERM of the leader (it releases its leases): %v", time.Since(stopped).Round(100*time.Millisecond))
	<-b.p.Exited()
}
