package controlplane

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	pb "istio.io/api/security/v1alpha1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/strait-mesh/strait/controlplane/config/embedded"
	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/internal/testenv/kubeenv"
	"github.com/strait-mesh/strait/proxy/agent"
)

// TestKubernetesSidecarsGetCertificates runs straitd against a real kube-apiserver as an
// injected sidecar meets it: ConfigMap istio-ca-root-cert holds the CA's roots in an existing
// and in a new namespace (not in kube-system), is repaired after an edit and follows a root
// rotation; a projected service-account token (audience istio-ca) buys a certificate for its
// service account over the mesh port, verified with that ConfigMap's root; a token for another
// audience, one of a deleted service account and garbage are refused.
func TestKubernetesSidecarsGetCertificates(t *testing.T) {
	c := kubeenv.Start(t, kubeenv.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	client := kubernetes.NewForConfigOrDie(c.Config)
	createNamespace(t, ctx, c, "istio-system") // straitd's leases
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "before"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	dataDir := filepath.Join(t.TempDir(), "data")
	meshAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	base, _ := startStraitd(t, Options{Kubeconfig: c.Kubeconfig, DataDir: dataDir, HTTPListen: "127.0.0.1:0", MeshListen: meshAddr,
		KubeSkipStatus: true})

	rootCert := func(ns string) string {
		cm, err := client.CoreV1().ConfigMaps(ns).Get(ctx, RootCertConfigMap, metav1.GetOptions{})
		if err != nil {
			return ""
		}
		if cm.Labels["istio.io/config"] != "true" {
			t.Errorf("ConfigMap %s/%s labels %v, want istio.io/config: \"true\"", ns, RootCertConfigMap, cm.Labels)
		}
		return cm.Data[RootCertKey]
	}
	var bundle string
	eventually(t, "the root-cert ConfigMap in an existing namespace", func() bool { bundle = rootCert("before"); return bundle != "" })
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(bundle)) || strings.Count(bundle, "BEGIN CERTIFICATE") != 1 {
		t.Fatalf("root-cert.pem is not the one root: %q", bundle)
	}
	eventually(t, "the root-cert ConfigMap in default", func() bool { return rootCert("default") == bundle })
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the root-cert ConfigMap in a new namespace", func() bool { return rootCert("shop") == bundle })
	if got := rootCert("kube-system"); got != "" {
		t.Error("kube-system got a root-cert ConfigMap")
	}
	// An edit is repaired, other keys kept.
	cm, err := client.CoreV1().ConfigMaps("shop").Get(ctx, RootCertConfigMap, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data = map[string]string{RootCertKey: "tampered", "note": "kept"}
	if _, err := client.CoreV1().ConfigMaps("shop").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the edited ConfigMap repaired", func() bool {
		cm, err := client.CoreV1().ConfigMaps("shop").Get(ctx, RootCertConfigMap, metav1.GetOptions{})
		return err == nil && cm.Data[RootCertKey] == bundle && cm.Data["note"] == "kept"
	})

	// Service-account tokens as the kubelet projects them (TokenRequest; no kubelet needed).
	sas := client.CoreV1().ServiceAccounts("shop")
	for _, name := range []string{"web", "gone"} {
		if _, err := sas.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	token := func(sa, audience string) string {
		exp := int64(600)
		tr, err := sas.CreateToken(ctx, sa, &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
			Audiences: []string{audience}, ExpirationSeconds: &exp}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	good, otherAudience, gone := token("web", "istio-ca"), token("web", "https://kubernetes.default.svc.cluster.local"), token("gone", "istio-ca")
	if err := sas.Delete(ctx, "gone", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	conn, err := grpc.NewClient("passthrough:///"+meshAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cs := pb.NewIstioCertificateServiceClient(conn)
	const want = "spiffe://cluster.local/ns/shop/sa/web"
	csr, _ := csrFor(t, want)
	call := func(tok string) (*pb.IstioCertificateResponse, error) {
		return cs.CreateCertificate(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok), &pb.IstioCertificateRequest{Csr: csr})
	}
	resp, err := call(good)
	if err != nil {
		t.Fatalf("CSR with a service-account token: %v", err)
	}
	blk, _ := pem.Decode([]byte(resp.GetCertChain()[0]))
	if blk == nil {
		t.Fatal("no PEM leaf")
	}
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != want {
		t.Fatalf("leaf URI SANs %v, want %s", leaf.URIs, want)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("the leaf does not verify against root-cert.pem: %v", err)
	}
	for name, tok := range map[string]string{"another audience": otherAudience, "a deleted service account": gone, "garbage": "x.y.z", "not a JWT": "garbage"} {
		// The API server sees deletions through its informers: allow it a moment.
		eventually(t, "a CSR with "+name+" refused", func() bool {
			_, err := call(tok)
			return status.Code(err) == codes.Unauthenticated
		})
	}
	// The token proves its own service account only.
	other, _ := csrFor(t, "spiffe://cluster.local/ns/shop/sa/admin")
	if _, err := cs.CreateCertificate(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+good), &pb.IstioCertificateRequest{Csr: other}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("CSR for another service account: %v, want PermissionDenied", err)
	}

	// strait-proxy's agent, as injected: the projected token file and root-cert.pem.
	tokenFile := filepath.Join(t.TempDir(), "istio-token")
	if err := os.WriteFile(tokenFile, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	ag, err := agent.New(agent.Options{CAAddress: meshAddr, CAServerName: "127.0.0.1", RootsPEM: []byte(bundle),
		BootstrapTokenFile: tokenFile, Namespace: "shop", ServiceAccount: "web", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Go(t, "agent", 10*time.Second, ag.Run)
	if err := ag.WaitReady(ctx); err != nil {
		t.Fatalf("the agent with a service-account token file: %v (last error: %v)", err, ag.LastError())
	}
	if c := ag.Certificate(); c == nil || len(c.Leaf.URIs) != 1 || c.Leaf.URIs[0].String() != want {
		t.Errorf("the agent's certificate: %+v", c)
	}

	// Root rotation: a staged root joins every namespace's root-cert.pem.
	admin, err := embedded.ReadAdminToken(filepath.Join(dataDir, AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+base+CARootsPath+"/stage", nil)
	req.Header.Set("Authorization", "Bearer "+admin)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("staging a root: %s", res.Status)
	}
	for _, ns := range []string{"before", "shop"} {
		eventually(t, "the staged root in "+ns+"'s ConfigMap", func() bool {
			b := rootCert(ns)
			return strings.Count(b, "BEGIN CERTIFICATE") == 2 && strings.Contains(b, bundle)
		})
	}
}
