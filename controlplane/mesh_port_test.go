package controlplane

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/url"
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

	"github.com/strait-mesh/strait/controlplane/config/embedded"
)

// runStraitd runs straitd in-process on loopback ports with dataDir and returns its HTTP
// address and a stop function that waits for Run to return.
func runStraitd(t *testing.T, dataDir string) (string, func()) {
	t.Helper()
	base, r := startStraitd(t, Options{DataDir: dataDir, XDSListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", MeshListen: "127.0.0.1:0"})
	return base, r.Stop
}

func postToken(t *testing.T, base, auth string, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+base+embedded.BootstrapTokensPath, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func csrFor(t *testing.T, spiffeID string) (string, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.CertificateRequest{}
	if spiffeID != "" {
		u, _ := url.Parse(spiffeID)
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), key
}

// TestMeshPortMintsTokensAndSignsCSRs: the admin API mints a bootstrap token only with the admin
// token; the token buys a certificate for its identity (and no other) over TLS on the mesh port;
// the chain verifies against the returned trust bundle; a restart keeps the root and the admin
// token.
func TestMeshPortMintsTokensAndSignsCSRs(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	base, stop := runStraitd(t, dataDir)

	tokenFile := filepath.Join(dataDir, AdminTokenFile)
	fi, err := os.Stat(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin token file mode %v, want 0600", fi.Mode().Perm())
	}
	admin, err := embedded.ReadAdminToken(tokenFile)
	if err != nil {
		t.Fatal(err)
	}

	body := `{"namespace":"shop","serviceAccount":"web","ttlSeconds":600}`
	for _, auth := range []string{"", "Bearer ", "Bearer wrong", "Basic " + admin, admin} {
		if code, b := postToken(t, base, auth, body); code != http.StatusUnauthorized || bytes.Contains(b, []byte("sbt1.")) {
			t.Errorf("Authorization %q: %d %s, want 401 and no token", auth, code, b)
		}
	}
	if code, b := postToken(t, base, "Bearer "+admin, `{"namespace":"Shop!","serviceAccount":"web"}`); code != http.StatusUnprocessableEntity {
		t.Errorf("invalid namespace: %d %s, want 422", code, b)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client := embedded.NewClient(base)
	tok, err := client.MintBootstrapToken(ctx, admin, embedded.BootstrapTokenRequest{Namespace: "shop", ServiceAccount: "web", TTLSeconds: 600})
	if err != nil {
		t.Fatal(err)
	}
	const want = "spiffe://cluster.local/ns/shop/sa/web"
	if tok.Identity != want || !strings.HasPrefix(tok.Token, "sbt1.") || tok.ID == "" || tok.CAAddress == "" {
		t.Fatalf("token response %+v", tok)
	}
	if d := time.Until(tok.Expires); d < 9*time.Minute || d > 11*time.Minute {
		t.Errorf("token expires in %v, want about 10m", d)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(tok.TrustBundle)) {
		t.Fatalf("trust bundle has no certificate: %q", tok.TrustBundle)
	}

	conn, err := grpc.NewClient(tok.CAAddress, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cs := pb.NewIstioCertificateServiceClient(conn)
	withToken := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok.Token)

	csr, key := csrFor(t, want)
	if _, err := cs.CreateCertificate(ctx, &pb.IstioCertificateRequest{Csr: csr}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("CSR without a token: %v, want Unauthenticated", err)
	}
	other, _ := csrFor(t, "spiffe://cluster.local/ns/shop/sa/admin")
	if _, err := cs.CreateCertificate(withToken, &pb.IstioCertificateRequest{Csr: other}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("CSR for another identity: %v, want PermissionDenied", err)
	}
	resp, err := cs.CreateCertificate(withToken, &pb.IstioCertificateRequest{Csr: csr, ValidityDuration: 3600})
	if err != nil {
		t.Fatal(err)
	}
	var chain []*x509.Certificate
	for _, p := range resp.GetCertChain() {
		blk, _ := pem.Decode([]byte(p))
		if blk == nil {
			t.Fatalf("cert chain entry is not PEM: %q", p)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, c)
	}
	leaf := chain[0]
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != want {
		t.Fatalf("leaf URI SANs %v, want exactly %s", leaf.URIs, want)
	}
	if !leaf.PublicKey.(*ecdsa.PublicKey).Equal(&key.PublicKey) {
		t.Fatal("leaf does not carry the CSR's key")
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life > 2*time.Hour {
		t.Errorf("leaf lifetime %v, want about the requested 1h", life)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("leaf does not verify against the trust bundle: %v", err)
	}

	// straitd's /metrics counts the CSRs as Istio's CA does.
	_, metrics := get(t, "http://"+base+"/metrics")
	for _, line := range []string{
		"citadel_server_csr_count 3", "citadel_server_success_cert_issuance_count 1",
		"citadel_server_authentication_failure_count 1", "citadel_server_id_extraction_err_count 1",
		"citadel_server_csr_parsing_err_count 0", "citadel_server_root_cert_expiry_timestamp ",
		"citadel_server_cert_chain_expiry_timestamp ",
	} {
		if !strings.Contains(metrics, "\n"+line) {
			t.Errorf("/metrics lacks %q", line)
		}
	}

	// A restart with the same data dir keeps the root and the admin token.
	stop()
	base2, _ := runStraitd(t, dataDir)
	admin2, err := embedded.ReadAdminToken(tokenFile)
	if err != nil || admin2 != admin {
		t.Fatalf("admin token after restart: %q, %v; want the same", admin2, err)
	}
	tok2, err := embedded.NewClient(base2).MintBootstrapToken(ctx, admin, embedded.BootstrapTokenRequest{Namespace: "shop", ServiceAccount: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if tok2.TrustBundle != tok.TrustBundle {
		t.Fatalf("trust bundle changed across a restart:\n%s\nvs\n%s", tok.TrustBundle, tok2.TrustBundle)
	}
	if d := time.Until(tok2.Expires); d < 59*time.Minute || d > 61*time.Minute {
		t.Errorf("default token lifetime: expires in %v, want about 1h", d)
	}
}

// TestMeshPortOff: without a mesh address straitd serves no CA and no token endpoint.
func TestMeshPortOff(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	base, straitd := startStraitd(t, Options{DataDir: dataDir, XDSListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0"})
	admin, err := embedded.ReadAdminToken(filepath.Join(dataDir, AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	if code, b := postToken(t, base, "Bearer "+admin, `{"namespace":"shop","serviceAccount":"web"}`); code == http.StatusOK {
		t.Fatalf("token minted without a CA: %s", b)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "ca")); err == nil {
		t.Error("a CA directory was created with the mesh port off")
	}
	straitd.Stop() // fails the test if Run returns an error
}

// TestAdminTokenReplacedWhenOpen: a token file others can read is replaced, not trusted.
func TestAdminTokenReplacedWhenOpen(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, AdminTokenFile)
	os.WriteFile(p, []byte("leaked\n"), 0o644)
	os.Chmod(p, 0o644)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	tok, err := loadOrCreateAdminToken(dir, log)
	if err != nil || tok == "leaked" || !strings.HasPrefix(tok, "sat1.") {
		t.Fatalf("got %q, %v; want a new token", tok, err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode().Perm())
	}
	if again, err := loadOrCreateAdminToken(dir, log); err != nil || again != tok {
		t.Fatalf("second start: %q, %v; want the same token", again, err)
	}
}
