package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
)

// tlsSecretYAML is a kubernetes.io/tls Secret name in namespace e2e with c's certificate and key,
// base64 in data, as `kubectl create secret tls` writes it.
func tlsSecretYAML(t *testing.T, name string, c tls.Certificate) string {
	certPEM, keyPEM := testenv.PEM(t, c)
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: %s, namespace: e2e}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: %s\n  tls.key: %s\n",
		name, b64(certPEM), b64(keyPEM))
}

// genericSecretYAML is an Opaque Secret name in namespace e2e with cert, key and cacert written
// as stringData, as Istio's generic credential format has them.
func genericSecretYAML(t *testing.T, name string, c tls.Certificate, caPEM []byte) string {
	certPEM, keyPEM := testenv.PEM(t, c)
	ind := func(b []byte) string {
		return "    " + strings.ReplaceAll(strings.TrimSpace(string(b)), "\n", "\n    ") + "\n"
	}
	return fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: %s, namespace: e2e}\ntype: Opaque\nstringData:\n  cert: |\n%s  key: |\n%s  cacert: |\n%s",
		name, ind(certPEM), ind(keyPEM), ind(caPEM))
}

// servedCertificate handshakes with the gateway on port as edge.example, verifying against roots,
// and returns the certificate it presented.
func servedCertificate(port int, roots *x509.CertPool) (*x509.Certificate, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second},
		Config: &tls.Config{ServerName: "edge.example", RootCAs: roots, MinVersion: tls.VersionTLS12}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState().PeerCertificates[0], nil
}

// TestGatewayCredentialsFromSecrets terminates TLS at a Gateway with credentialName certificates
// from Secrets applied with `strait apply`, served to the router over SDS: an HTTPS request sees
// the Secret's certificate; replacing the Secret rotates the served certificate without a
// restart; a MUTUAL server (certificate, key and client CA from one generic Secret) refuses a
// client without a certificate or with one from another CA; a credential in another namespace is
// reported and not served. No read-only endpoint, CLI output or log shows the keys.
func TestGatewayCredentialsFromSecrets(t *testing.T) {
	skipShort(t)
	serverCA, clientCA, otherCA := testenv.NewCA(t, "server-ca"), testenv.NewCA(t, "client-ca"), testenv.NewCA(t, "other-ca")
	serverLeaf := func() tls.Certificate {
		return serverCA.Issue(t, testenv.Leaf{DNS: []string{"edge.example"}, Usage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	}
	first, second := serverLeaf(), serverLeaf()
	plain := startBackend(t, "127.0.0.81", "plain", backendOptions{})

	simplePort, mutualPort, crossPort := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
	files := map[string]string{"gateway.yaml": fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: e2e}
spec:
  selector: {app: edge}
  servers:
  - port: {number: %d, name: https, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: SIMPLE, credentialName: edge-cred}
  - port: {number: %d, name: https-mtls, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: MUTUAL, credentialName: edge-mtls}
  - port: {number: %d, name: https-cross, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: SIMPLE, credentialName: other/edge-cred}
---
`, simplePort, mutualPort, crossPort) + edgeVS("secrets", "e2e", `["*"]`, `  http:
  - route: [{destination: {host: plain.e2e.test}}]
`) + "---\n" + serviceEntryYAML("plain.e2e.test", 80, "HTTP", plain.Endpoint())}
	sd, px := edge(t, files)

	// The Secrets, applied with `strait apply` (the embedded store).
	dir := t.TempDir()
	secrets := filepath.Join(dir, "secrets.yaml")
	writeFile(t, secrets, tlsSecretYAML(t, "edge-cred", first)+"---\n"+genericSecretYAML(t, "edge-mtls", serverLeaf(), clientCA.PEM))
	if out, err := strait(t, sd, "apply", "-f", secrets); err != nil || !strings.Contains(out, "secret/edge-cred created") {
		t.Fatalf("apply: %v\n%s", err, out)
	}

	roots := x509.NewCertPool()
	roots.AddCert(serverCA.Cert)
	client := func(port int, certs ...tls.Certificate) *http.Client { return edgeTLSClient(t, port, roots, certs...) }
	waitBackend(t, 30*time.Second, client(simplePort), request{URL: "https://edge.example/"}, "plain")

	t.Run("served certificate", func(t *testing.T) {
		c, err := servedCertificate(simplePort, roots)
		if err != nil || c.SerialNumber.Cmp(first.Leaf.SerialNumber) != 0 {
			t.Fatalf("served %v (%v), want the Secret's certificate, serial %v", c.SerialNumber, err, first.Leaf.SerialNumber)
		}
	})

	t.Run("rotation", func(t *testing.T) {
		writeFile(t, secrets, tlsSecretYAML(t, "edge-cred", second))
		if out, err := strait(t, sd, "apply", "-f", secrets); err != nil || !strings.Contains(out, "secret/edge-cred configured") {
			t.Fatalf("apply: %v\n%s", err, out)
		}
		testenv.Eventually(t, 20*time.Second, func() error {
			c, err := servedCertificate(simplePort, roots)
			if err == nil && c.SerialNumber.Cmp(second.Leaf.SerialNumber) != 0 {
				err = fmt.Errorf("still serving serial %v, want %v", c.SerialNumber, second.Leaf.SerialNumber)
			}
			return err
		})
		select {
		case <-px.Exited():
			t.Fatal("the proxy exited")
		default:
		}
		if name, err := backendName(client(simplePort), request{URL: "https://edge.example/"}); err != nil || name != "plain" {
			t.Fatalf("after rotation: %q, %v", name, err)
		}
	})

	t.Run("mutual", func(t *testing.T) {
		name, err := backendName(client(mutualPort, clientCA.Issue(t, testenv.Leaf{DNS: []string{"friend"}})), request{URL: "https://edge.example/"})
		if err != nil || name != "plain" {
			t.Fatalf("client with a certificate from the Secret's CA: %q, %v", name, err)
		}
		if _, err := do(client(mutualPort), request{URL: "https://edge.example/"}); err == nil {
			t.Fatal("MUTUAL server accepted a client without a certificate")
		}
		if _, err := do(client(mutualPort, otherCA.Issue(t, testenv.Leaf{DNS: []string{"stranger"}})), request{URL: "https://edge.example/"}); err == nil {
			t.Fatal("MUTUAL server accepted a client certificate from another CA")
		}
	})

	t.Run("other namespace", func(t *testing.T) {
		if _, err := servedCertificate(crossPort, roots); err == nil {
			t.Fatal("a credential of another namespace was served")
		}
		testenv.Eventually(t, 10*time.Second, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, body, err := testenv.Get(ctx, "http://"+sd.HTTP+"/debug/configz", nil)
			if err == nil && !strings.Contains(body, "Secret other/edge-cred is in another namespace than the gateway (e2e)") {
				err = fmt.Errorf("configz does not report the cross-namespace credential:\n%s", body)
			}
			return err
		})
	})

	t.Run("redaction", func(t *testing.T) {
		var leaks []string
		for _, c := range []tls.Certificate{first, second} {
			_, keyPEM := testenv.PEM(t, c)
			leaks = append(leaks, base64.StdEncoding.EncodeToString(keyPEM)[:40], strings.Split(string(keyPEM), "\n")[1])
		}
		check := func(what, s string) {
			t.Helper()
			for _, l := range leaks {
				if strings.Contains(s, l) {
					t.Fatalf("%s shows a private key", what)
				}
			}
		}
		out, err := strait(t, sd, "get", "secret", "edge-cred", "-n", "e2e", "-o", "yaml")
		if err != nil || !strings.Contains(out, "tls.key: '[redacted: ") {
			t.Fatalf("strait get: %v\n%s", err, out)
		}
		check("strait get", out)
		for _, path := range []string{"/debug/configz", "/debug/syncz", "/apis/v1/objects?kind=secret", "/metrics"} {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, body, err := testenv.Get(ctx, "http://"+sd.HTTP+path, nil)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			check("straitd "+path, body)
		}
		_, dump, err := px.AdminGet("/config_dump")
		if err != nil || !strings.Contains(dump, "kubernetes://edge-cred") {
			t.Fatalf("config_dump: %v", err)
		}
		check("the proxy's /config_dump", dump)
		check("straitd's log", sd.Output())
		check("the proxy's log", px.Output())
	})
}
