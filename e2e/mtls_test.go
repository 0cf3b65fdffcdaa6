package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
)

// mtlsYAML is sidecarYAML with the server registered as a workload with a sidecar (label
// security.istio.io/tlsMode: istio) running as service account reviews.
func mtlsYAML(clientIP, serverIP, appAddr string) string {
	return sidecarPairYAML(clientIP, serverIP, appAddr, mtlsEndpoint(serverIP))
}

// mtlsEndpoint is the server's endpoint (a YAML object) as a workload with a sidecar (label
// security.istio.io/tlsMode: istio) running as service account reviews.
func mtlsEndpoint(serverIP string) string {
	return "{address: " + serverIP + ", serviceAccount: reviews, labels: {app: reviews, security.istio.io/tlsMode: istio}}"
}

// strictPeerAuthnYAML makes mutual TLS STRICT for namespace e2e.
const strictPeerAuthnYAML = `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: e2e}
spec:
  mtls: {mode: STRICT}
`

const (
	spiffeClient  = "spiffe://cluster.local/ns/e2e/sa/client"
	spiffeReviews = "spiffe://cluster.local/ns/e2e/sa/reviews"
)

// TestAutoMTLSAndPeerAuthentication runs a client and a server sidecar with identities from
// straitd's CA: the hop between them is mutual TLS without any DestinationRule (automatic mTLS),
// the server application sees the client's identity in x-forwarded-client-cert, and the server
// sidecar's inbound port accepts plaintext under PERMISSIVE (the default), refuses plaintext, TLS
// without a client certificate and certificates of another root under STRICT, and takes
// plaintext again (with the client sending plaintext) under a port-level DISABLE exception.
func TestAutoMTLSAndPeerAuthentication(t *testing.T) {
	skipShort(t)
	const clientIP, serverIP = "127.0.0.93", "127.0.0.94"
	app := startBackend(t, "127.0.0.1", "reviews", backendOptions{})
	sd := testenv.StartStraitd(t, map[string]string{"mesh.yaml": mtlsYAML(clientIP, serverIP, app.Addr())})
	sidecar := func(name, ip, app, sa string) *testenv.Proxy {
		extra := append([]string{"--interception-mode", "NONE"}, sd.Identity(t, "e2e", sa)...)
		return testenv.StartProxy(t, sd.XDS, testenv.ProxyOptions{Mode: "sidecar", Name: name, Namespace: "e2e", IP: ip,
			Labels: map[string]string{"app": app}, Extra: extra})
	}
	sidecar("reviews-1", serverIP, "reviews", "reviews")
	sidecar("client-1", clientIP, "client", "client")

	url := fmt.Sprintf("http://%s:9080/hello", clientIP)
	host := "reviews.e2e.svc.cluster.local:9080"
	direct := fmt.Sprintf("http://%s:9080/direct", serverIP)
	xfcc := func() (string, error) {
		rep, err := do(h1Client, request{URL: url, Host: host})
		if err != nil {
			return "", err
		}
		if rep.Code != http.StatusOK || rep.Echo == nil {
			return "", fmt.Errorf("%d %.200s", rep.Code, rep.Body)
		}
		return rep.Echo.Headers["x-forwarded-client-cert"], nil
	}
	wantMTLS := func(what string) {
		t.Helper()
		testenv.Eventually(t, 30*time.Second, func() error {
			h, err := xfcc()
			if err == nil && (!strings.Contains(h, "By="+spiffeReviews) || !strings.Contains(h, "URI="+spiffeClient)) {
				err = fmt.Errorf("x-forwarded-client-cert %q: want By=%s and URI=%s", h, spiffeReviews, spiffeClient)
			}
			return err
		})
		t.Logf("%s: the client → server hop is mutual TLS with both identities", what)
	}
	plaintext := func() error {
		rep, err := do(&http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}, request{URL: direct, Host: host})
		if err == nil && rep.Code != http.StatusOK {
			err = fmt.Errorf("status %d", rep.Code)
		}
		return err
	}

	// PERMISSIVE (no PeerAuthentication): mTLS from the mesh, plaintext from outside.
	wantMTLS("PERMISSIVE")
	if err := plaintext(); err != nil {
		t.Fatalf("PERMISSIVE: plaintext to the server sidecar: %v", err)
	}

	// STRICT for the namespace: plaintext is refused, the mesh hop goes on.
	sd.WriteConfig(t, "pa.yaml", strictPeerAuthnYAML)
	testenv.Eventually(t, 30*time.Second, func() error {
		if plaintext() == nil {
			return errors.New("plaintext still accepted")
		}
		return nil
	})
	wantMTLS("STRICT")
	inbound := net.JoinHostPort(serverIP, "9080")
	// TLS without a client certificate: the server sidecar presents its workload certificate
	// (the SPIFFE ID of reviews) and refuses the connection.
	var served *x509.Certificate
	err := tlsExchange(inbound, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"istio"},
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			c, err := x509.ParseCertificate(raw[0])
			served = c
			return err
		}})
	if err == nil {
		t.Fatal("STRICT: TLS without a client certificate was accepted")
	}
	if served == nil || len(served.URIs) != 1 || served.URIs[0].String() != spiffeReviews {
		t.Fatalf("the server sidecar's certificate: %v, want exactly the URI SAN %s", served, spiffeReviews)
	}
	// A client certificate with the right SPIFFE ID from another root is refused too.
	other := testenv.NewCA(t, "other root")
	forged := other.Issue(t, testenv.Leaf{URIs: []string{spiffeClient}})
	if err := tlsExchange(inbound, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"istio"}, Certificates: []tls.Certificate{forged}}); err == nil {
		t.Fatal("STRICT: a client certificate of another root was accepted")
	}

	// A port-level DISABLE exception for the workload: plaintext again, and clients stop using
	// mTLS to that port (its endpoints lose the tlsMode metadata).
	sd.WriteConfig(t, "pa-reviews.yaml", reviewsPolicyYAML("PeerAuthentication", "reviews", `  mtls: {mode: STRICT}
  portLevelMtls:
    9080: {mode: DISABLE}
`))
	testenv.Eventually(t, 30*time.Second, plaintext)
	testenv.Eventually(t, 30*time.Second, func() error {
		h, err := xfcc()
		if err == nil && h != "" {
			err = fmt.Errorf("x-forwarded-client-cert %q: the hop should be plaintext under DISABLE", h)
		}
		return err
	})
}

// tlsExchange completes a TLS handshake with addr and one HTTP/1.1 request over it, so that a
// server that rejects the client's certificate after the handshake (TLS 1.3) is seen to refuse.
func tlsExchange(addr string, cfg *tls.Config) error {
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		return err
	}
	buf := make([]byte, 64)
	if _, err := conn.Read(buf); err != nil {
		return err
	}
	return nil
}
