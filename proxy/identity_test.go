package proxy

// The proxy with its identity agent against straitd's real CA (controlplane/ca, as the agent's
// own tests run it): test dependencies are not linked into strait-proxy.

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/strait-mesh/strait/controlplane/ca"
	"github.com/strait-mesh/strait/internal/node"
	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/internal/testenv/meshca"
	"github.com/strait-mesh/strait/proxy/agent"
	"github.com/strait-mesh/strait/proxy/xdsclient"
	adminv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/admin/v3"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	tlsv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/transport_sockets/tls/v3"
)

// runAgentProxy runs a sidecar for default/ratings with its agent (files as strait up writes
// them), no control plane, and its admin on a free port, until the test ends.
func runAgentProxy(t *testing.T, caAddr string, roots []byte, token string, certWait time.Duration) (*Proxy, string) {
	t.Helper()
	dir := t.TempDir()
	rootsFile, tokenFile := filepath.Join(dir, "root-cert.pem"), filepath.Join(dir, "token")
	if err := os.WriteFile(rootsFile, roots, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	log, _ := testenv.Logger(t, "proxy")
	admin := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	p, err := New(Options{
		XDSAddress:    "127.0.0.1:1", // nothing: the agent does not depend on xDS
		AdminAddress:  admin,
		AdminSocket:   "-",
		DrainDuration: 100 * time.Millisecond,
		Logger:        log,
		Node:          xdsclient.NodeInfo{Type: node.Sidecar, IP: "127.0.0.1", Name: "ratings-1", Namespace: "default", ServiceAccount: "ratings"},
		Agent: &agent.Options{
			CAAddress: caAddr, RootsFile: rootsFile, BootstrapTokenFile: tokenFile,
			Namespace: "default", ServiceAccount: "ratings",
			RetryInitial: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond,
		},
		CertWait: certWait,
	})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Go(t, "Run", 10*time.Second, p.Run)
	return p, "http://" + admin
}

func adminGet(t *testing.T, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	code, body, err := testenv.Get(ctx, url, nil)
	if err != nil || code != 200 {
		t.Fatalf("GET %s: %d %v\n%s", url, code, err, body)
	}
	return body
}

var expiryGauge = regexp.MustCompile(`(?m)^istio_agent_cert_expiry_seconds\{resource_name="default"\} (\d+)$`)

func TestAgentCertificateInStatsAndConfigDump(t *testing.T) {
	mesh := meshca.Start(t)
	p, admin := runAgentProxy(t, mesh.Addr(), mesh.Authority.TrustBundlePEM(), mesh.Mint(t, "default", "ratings"), 0)
	testenv.WaitFor(t, "the first certificate", 10*time.Second, func() bool { return p.Agent().Certificate() != nil })
	leaf := p.Agent().Certificate().Leaf

	prom := adminGet(t, admin+"/stats/prometheus")
	m := expiryGauge.FindStringSubmatch(prom)
	if m == nil {
		t.Fatalf("no expiry gauge in /stats/prometheus:\n%s", prom)
	}
	if s, _ := strconv.Atoi(m[1]); s < int((23*time.Hour).Seconds()) || s > int((24*time.Hour).Seconds()) {
		t.Errorf("cert expiry %ss, want about 24h", m[1])
	}
	if text := adminGet(t, admin+"/stats?filter=cert_expiry"); !strings.HasPrefix(text, "sds.default.cert_expiry_seconds: ") {
		t.Errorf("/stats: %q", text)
	}

	body := adminGet(t, admin+"/config_dump?resource=dynamic_active_secrets")
	if strings.Contains(body, "PRIVATE KEY") || strings.Contains(body, "LS0tLS1CRUdJTiBFQyBQUklWQVRF") {
		t.Fatalf("config dump shows the private key:\n%s", body)
	}
	var dump adminv3.ConfigDump
	if err := protojson.Unmarshal([]byte(body), &dump); err != nil {
		t.Fatalf("decoding the dump: %v\n%s", err, body)
	}
	found := map[string]bool{}
	for _, c := range dump.Configs {
		var ds adminv3.SecretsConfigDump_DynamicSecret
		if err := c.UnmarshalTo(&ds); err != nil {
			t.Fatal(err)
		}
		var s tlsv3.Secret
		if err := ds.Secret.UnmarshalTo(&s); err != nil {
			t.Fatal(err)
		}
		found[ds.Name] = true
		switch ds.Name {
		case agent.SecretDefault:
			tc := s.GetTlsCertificate()
			if got := tc.GetPrivateKey().GetInlineString(); got != "[redacted]" {
				t.Errorf("private key %q, want [redacted]", got)
			}
			block, _ := pem.Decode(tc.GetCertificateChain().GetInlineBytes())
			if block == nil {
				t.Fatal("no certificate chain in the dumped default secret")
			}
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if len(cert.URIs) != 1 || cert.URIs[0].String() != "spiffe://cluster.local/ns/default/sa/ratings" {
				t.Errorf("dumped certificate's URIs %v", cert.URIs)
			}
			if cert.SerialNumber.Cmp(leaf.SerialNumber) != 0 || ds.VersionInfo != fmt.Sprintf("%x", leaf.SerialNumber) {
				t.Errorf("dumped serial %x (version %q), want %x", cert.SerialNumber, ds.VersionInfo, leaf.SerialNumber)
			}
		case agent.SecretRootCA:
			if !x509.NewCertPool().AppendCertsFromPEM(s.GetValidationContext().GetTrustedCa().GetInlineBytes()) {
				t.Error("dumped ROOTCA has no certificates")
			}
		}
	}
	if !found[agent.SecretDefault] || !found[agent.SecretRootCA] {
		t.Errorf("dumped secrets %v, want default and ROOTCA", found)
	}

	// An xDS secret of an agent-owned name does not replace the agent's; other names are the
	// control plane's as before.
	certPEM, keyPEM := testenv.PEM(t, testenv.NewCA(t, "other").Issue(t, testenv.Leaf{DNS: []string{"x"}}))
	xdsSecret := func(name string) *tlsv3.Secret {
		return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: certPEM}},
			PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: keyPEM}},
		}}}
	}
	if err := p.Apply(xdsclient.SecretType, resources(t, xdsSecret("default"), xdsSecret("gateway-cert"))); err != nil {
		t.Fatal(err)
	}
	if p.Secret("default") != p.Agent().Secret("default") {
		t.Error("an xDS secret named default replaced the agent's")
	}
	if p.Secret("gateway-cert") == nil {
		t.Error("an xDS secret of another name is not served")
	}
}

func TestAgentCAUnreachableAtStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	mesh := meshca.Start(t)
	start := time.Now()
	p, admin := runAgentProxy(t, dead, mesh.Authority.TrustBundlePEM(), ca.BootstrapTokenPrefix+"unused", 300*time.Millisecond)
	// The admin serves and the proxy goes on without a certificate; the gauge is absent, not 0.
	testenv.WaitFor(t, "the xDS client to start", 5*time.Second, func() bool {
		return p.Agent().LastError() != nil && time.Since(start) > 300*time.Millisecond
	})
	if prom := adminGet(t, admin+"/stats/prometheus"); strings.Contains(prom, "cert_expiry") {
		t.Errorf("expiry gauge before the first certificate:\n%s", prom)
	}
	if p.Secret("default") != nil {
		t.Error("a default secret without a certificate")
	}
}
