package e2e

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
)

// issue returns a leaf certificate for name signed by ca, for server or client authentication.
func issue(t *testing.T, ca tls.Certificate, name string, client bool) tls.Certificate {
	t.Helper()
	usage := x509.ExtKeyUsageServerAuth
	if client {
		usage = x509.ExtKeyUsageClientAuth
	}
	signer := &testenv.CA{Cert: ca.Leaf, Key: ca.PrivateKey.(crypto.Signer)}
	return signer.Issue(t, testenv.Leaf{Serial: time.Now().UnixNano(), DNS: []string{name}, Usage: []x509.ExtKeyUsage{usage}})
}

// edgeTLSClient is an HTTPS client of the gateway's TLS port on loopback: it dials port whatever
// the URL's host, verifies the server as edge.example against roots, and presents certs.
func edgeTLSClient(t *testing.T, port int, roots *x509.CertPool, certs ...tls.Certificate) *http.Client {
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{ServerName: "edge.example", RootCAs: roots, Certificates: certs, MinVersion: tls.VersionTLS12},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, fmt.Sprintf("127.0.0.1:%d", port))
		},
		ForceAttemptHTTP2: true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 15 * time.Second}
}

// originateTLS is a DestinationRule for host that originates TLS (SIMPLE) with SNI secure.example,
// verifying the server's certificate against the CA file caPath.
func originateTLS(host, caPath string) string {
	return trafficPolicyYAML(host, fmt.Sprintf("    tls: {mode: SIMPLE, caCertificates: %s, sni: secure.example}\n", caPath))
}

// writePEM writes the certificate (and, if key, its private key) of c under dir and returns the
// paths.
func writePEM(t *testing.T, dir, name string, c tls.Certificate) (certPath, keyPath string) {
	t.Helper()
	certPath = filepath.Join(dir, name+".pem")
	writeFile(t, certPath, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]})))
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	keyPath = filepath.Join(dir, name+".key")
	writeFile(t, keyPath, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
	return certPath, keyPath
}

// TestTLSTerminationAndOrigination terminates TLS at the Gateway (SIMPLE and MUTUAL, certificates
// from files) and originates TLS to a backend per a DestinationRule (SIMPLE with a CA and SNI),
// and checks that a backend whose certificate the CA does not sign is refused.
func TestTLSTerminationAndOrigination(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	serverCA, clientCA, otherCA := testenv.SelfSigned(t, "server-ca"), testenv.SelfSigned(t, "client-ca"), testenv.SelfSigned(t, "other-ca")
	edgeCert, edgeKey := writePEM(t, dir, "edge", issue(t, serverCA, "edge.example", false))
	clientCAPath, _ := writePEM(t, dir, "client-ca", clientCA)
	serverCAPath, _ := writePEM(t, dir, "server-ca", serverCA)

	plain := startBackend(t, "127.0.0.71", "plain", backendOptions{})
	securePort := startTLSBackend(t, "127.0.0.72", "secure", issue(t, serverCA, "secure.example", false))
	roguePort := startTLSBackend(t, "127.0.0.73", "rogue", issue(t, otherCA, "secure.example", false))

	simplePort, mutualPort := testenv.FreePort(t), testenv.FreePort(t)
	files := map[string]string{"tls.yaml": fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: e2e}
spec:
  selector: {app: edge}
  servers:
  - port: {number: %[1]d, name: https, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: SIMPLE, serverCertificate: %[3]s, privateKey: %[4]s}
  - port: {number: %[2]d, name: https-mtls, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: MUTUAL, serverCertificate: %[3]s, privateKey: %[4]s, caCertificates: %[5]s}
---
`, simplePort, mutualPort, edgeCert, edgeKey, clientCAPath) + edgeVS("tls", "e2e", `["*"]`, `  http:
  - match: [{uri: {prefix: /secure}}]
    route: [{destination: {host: secure.e2e.test}}]
  - match: [{uri: {prefix: /rogue}}]
    route: [{destination: {host: rogue.e2e.test}}]
  - route: [{destination: {host: plain.e2e.test}}]
`) + "---\n" + originateTLS("secure.e2e.test", serverCAPath) + "---\n" + originateTLS("rogue.e2e.test", serverCAPath) + "---\n" + strings.Join([]string{
		serviceEntryYAML("plain.e2e.test", 80, "HTTP", plain.Endpoint()),
		serviceEntryYAML("secure.e2e.test", 80, "HTTP", endpoint{"secure", "127.0.0.72", securePort}),
		serviceEntryYAML("rogue.e2e.test", 80, "HTTP", endpoint{"rogue", "127.0.0.73", roguePort}),
	}, "---\n")}
	edge(t, files)

	roots := x509.NewCertPool()
	roots.AddCert(serverCA.Leaf)
	client := func(port int, certs ...tls.Certificate) *http.Client { return edgeTLSClient(t, port, roots, certs...) }
	simple := client(simplePort)
	waitBackend(t, 30*time.Second, simple, request{URL: "https://edge.example/"}, "plain")

	t.Run("termination", func(t *testing.T) {
		rep := mustDo(t, simple, request{URL: "https://edge.example/x"})
		if rep.Code != http.StatusOK || rep.Echo == nil || rep.Echo.Backend != "plain" {
			t.Fatalf("%d %.200s", rep.Code, rep.Body)
		}
		if rep.Proto != "HTTP/2.0" || rep.Echo.Headers["x-forwarded-proto"] != "https" {
			t.Fatalf("client spoke %s (want HTTP/2.0 by ALPN); backend saw x-forwarded-proto %q", rep.Proto, rep.Echo.Headers["x-forwarded-proto"])
		}
	})

	t.Run("origination", func(t *testing.T) {
		rep := mustDo(t, simple, request{URL: "https://edge.example/secure"})
		if rep.Code != http.StatusOK || rep.Echo == nil || rep.Echo.Backend != "secure" {
			t.Fatalf("%d %.200s", rep.Code, rep.Body)
		}
		rep = mustDo(t, simple, request{URL: "https://edge.example/rogue"})
		if rep.Code != http.StatusServiceUnavailable || rep.Echo != nil {
			t.Fatalf("backend with a certificate the CA does not sign: %d %.200s, want 503", rep.Code, rep.Body)
		}
	})

	t.Run("mutual", func(t *testing.T) {
		if _, err := do(client(mutualPort), request{URL: "https://edge.example/"}); err == nil {
			t.Fatal("MUTUAL server accepted a client without a certificate")
		}
		if _, err := do(client(mutualPort, issue(t, otherCA, "stranger", true)), request{URL: "https://edge.example/"}); err == nil {
			t.Fatal("MUTUAL server accepted a client certificate from another CA")
		}
		name, err := backendName(client(mutualPort, issue(t, clientCA, "friend", true)), request{URL: "https://edge.example/"})
		if err != nil || name != "plain" {
			t.Fatalf("client with a certificate from the client CA: %q, %v", name, err)
		}
	})
}
