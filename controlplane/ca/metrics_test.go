package ca

import (
	"io"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// scrapeValue returns the value of series in reg's /metrics text, or -1 when it is absent.
func scrapeValue(t *testing.T, reg *prometheus.Registry, series string) float64 {
	t.Helper()
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		t.Logf("%s", b)
		return -1
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestCitadelMetrics makes real CSR calls on the mesh port — issued, unauthenticated, malformed,
// for another identity — and reads Istio's citadel_server_* metrics from /metrics.
func TestCitadelMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := startMeshPortMetrics(t, reg)
	key := testP256()
	ratings := "spiffe://cluster.local/ns/default/sa/ratings"
	tok, err := m.tokens.Mint("default", "ratings", 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if _, err := m.call(t, csrRequest(t, key, ratings), nil, nil, tok.Token); err != nil {
			t.Fatalf("issue: %v", err)
		}
	}
	if _, err := m.call(t, csrRequest(t, key), nil, nil, ""); err == nil {
		t.Fatal("a CSR without credentials was signed")
	}
	if _, err := m.call(t, csrRequest(t, key, "spiffe://cluster.local/ns/default/sa/admin"), nil, nil, tok.Token); err == nil {
		t.Fatal("a CSR for another identity was signed")
	}
	bad := csrRequest(t, key)
	bad.Csr = "-----BEGIN CERTIFICATE REQUEST-----\nnot base64\n-----END CERTIFICATE REQUEST-----\n"
	if _, err := m.call(t, bad, nil, nil, tok.Token); err == nil {
		t.Fatal("a malformed CSR was signed")
	}
	for series, want := range map[string]float64{
		"citadel_server_csr_count":                    5,
		"citadel_server_success_cert_issuance_count":  2,
		"citadel_server_authentication_failure_count": 1,
		"citadel_server_id_extraction_err_count":      1,
		"citadel_server_csr_parsing_err_count":        1,
	} {
		if got := scrapeValue(t, reg, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	root := m.a.TrustBundle()[0]
	if got, want := scrapeValue(t, reg, "citadel_server_root_cert_expiry_timestamp"), float64(root.NotAfter.Unix()); got != want {
		t.Errorf("citadel_server_root_cert_expiry_timestamp = %v, want %v (the root's NotAfter)", got, want)
	}
	if got, want := scrapeValue(t, reg, "citadel_server_cert_chain_expiry_timestamp"), float64(root.NotAfter.Unix()); got != want {
		t.Errorf("citadel_server_cert_chain_expiry_timestamp = %v, want %v (self-signed: the root)", got, want)
	}
}

// TestCitadelExpiryPlugin: with plug-in certificates the root gauge is the org root's expiry and
// the chain gauge the earliest expiry on the chain (a short-lived intermediate); a second
// registration of the same names is an error, not a silent double registration.
func TestCitadelExpiryPlugin(t *testing.T) {
	p := newOrgPKI(t)
	shortT := caTemplate("Short", p.now)
	shortT.NotAfter = p.now.Add(2 * time.Hour)
	short := issue(t, shortT, p.root, p.caKey.Public(), p.rootKey)
	dir := writeCACerts(t, map[string][]byte{PluginCACert: pems(short), PluginCAKey: keyPEM(t, p.caKey), PluginRootCert: pems(p.root)})
	log, _ := testLogger(t)
	reg := prometheus.NewRegistry()
	if _, err := New(Options{PluginDir: dir, Logger: log, Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if got, want := scrapeValue(t, reg, "citadel_server_root_cert_expiry_timestamp"), float64(p.root.NotAfter.Unix()); got != want {
		t.Errorf("root expiry %v, want %v", got, want)
	}
	if got, want := scrapeValue(t, reg, "citadel_server_cert_chain_expiry_timestamp"), float64(short.NotAfter.Unix()); got != want {
		t.Errorf("chain expiry %v, want %v", got, want)
	}
	if _, err := New(Options{PluginDir: dir, Logger: log, Registerer: reg}); err == nil || !strings.Contains(err.Error(), "registering CA metrics") {
		t.Errorf("second registration: %v", err)
	}
}
