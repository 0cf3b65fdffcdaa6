package controlplane

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/strait-mesh/strait/controlplane/ca"
	"github.com/strait-mesh/strait/controlplane/ca/kubeauth"
	"github.com/strait-mesh/strait/controlplane/config/embedded"
)

// AdminTokenFile is the admin token's file name in the data dir: the credential of straitd's
// admin API (bootstrap tokens), created on first start with mode 0600.
const AdminTokenFile = "admin-token"

// meshPort is straitd's TLS mesh port (Istio's 15012): the CA and, for now, only Istio's CSR API.
type meshPort struct {
	authority *ca.Authority
	tokens    *ca.BootstrapTokens
	grpc      *grpc.Server
	ln        net.Listener
	log       *slog.Logger
	// rootsChanged receives (without blocking, capacity 1) when the trust bundle changes.
	rootsChanged chan struct{}
}

// caDirs returns the CA's self-signed directory and plug-in directory from the options, and
// whether a CA is configured at all.
func caDirs(o Options) (dir, plugin string, ok bool) {
	switch {
	case o.CACertsDir != "":
		return o.CADir, o.CACertsDir, true
	case o.CADir != "":
		return o.CADir, "", true
	case o.DataDir != "":
		return filepath.Join(o.DataDir, "ca"), "", true
	}
	return "", "", false
}

// newMeshPort creates the Authority, the bootstrap tokens, the CSR service and the serving
// certificate, and binds the mesh address. With Kubernetes (kcfg not nil) the CSR service also
// accepts service-account tokens, proved by a TokenReview. It returns nil (and no error) when the
// mesh port is disabled or no CA is configured. The CA's metrics are registered with reg.
func newMeshPort(o Options, trustDomain string, kcfg *rest.Config, reg prometheus.Registerer, log *slog.Logger) (*meshPort, error) {
	if o.MeshListen == "" {
		log.Info("mesh port disabled: no CA, no CSR API")
		return nil, nil
	}
	dir, plugin, ok := caDirs(o)
	if !ok {
		log.Warn("mesh port disabled: no CA configured (set --data-dir, --ca-dir or --cacerts-dir)")
		return nil, nil
	}
	if o.WorkloadCertTTL < 0 || o.MaxWorkloadCertTTL < 0 {
		return nil, errors.New("workload certificate lifetimes must not be negative")
	}
	if o.WorkloadCertTTL > 0 && o.MaxWorkloadCertTTL > 0 && o.WorkloadCertTTL > o.MaxWorkloadCertTTL {
		return nil, fmt.Errorf("the workload certificate lifetime %v exceeds the maximum %v", o.WorkloadCertTTL, o.MaxWorkloadCertTTL)
	}
	rootsChanged := make(chan struct{}, 1)
	a, err := ca.New(ca.Options{
		TrustDomain:     trustDomain,
		Dir:             dir,
		PluginDir:       plugin,
		DefaultLifetime: o.WorkloadCertTTL,
		MaxLifetime:     o.MaxWorkloadCertTTL,
		Logger:          log,
		Registerer:      reg,
		OnTrustBundleChange: func([]*x509.Certificate) {
			select {
			case rootsChanged <- struct{}{}:
			default:
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("certificate authority: %w", err)
	}
	tokens, err := ca.NewBootstrapTokens(ca.BootstrapOptions{TrustDomain: a.TrustDomain(), Now: a.Now})
	if err != nil {
		return nil, err
	}
	authn := []ca.Authenticator{tokens}
	if kcfg != nil {
		client, err := kubernetes.NewForConfig(kcfg)
		if err != nil {
			return nil, fmt.Errorf("kubernetes token authenticator: %w", err)
		}
		kt, err := ca.NewKubernetesTokens(ca.KubernetesOptions{Reviewer: kubeauth.NewReviewer(client), TrustDomain: a.TrustDomain()})
		if err != nil {
			return nil, err
		}
		authn = append(authn, kt)
		log.Info("the CA accepts Kubernetes service-account tokens (audience " + ca.DefaultKubernetesAudience + ", checked by TokenReview)")
	}
	g, err := ca.NewMeshServer(a, authn, ca.ServingOptions{
		DNSNames: append(append([]string{}, ca.DefaultServingDNSNames...), hostname()),
		IPs:      servingIPs(o.MeshListen),
		Logger:   log,
	}, log,
		grpc.ConnectionTimeout(10*time.Second),
		grpc.MaxRecvMsgSize(1<<20),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", o.MeshListen)
	if err != nil {
		g.Stop()
		return nil, fmt.Errorf("mesh listen: %w", err)
	}
	return &meshPort{authority: a, tokens: tokens, grpc: g, ln: ln, log: log, rootsChanged: rootsChanged}, nil
}

// servingIPs are the IP SANs of straitd's serving certificate: loopback, and the mesh address's
// host when it is a specific IP.
func servingIPs(listen string) []net.IP {
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	host, _, err := net.SplitHostPort(listen)
	if ip := net.ParseIP(host); err == nil && ip != nil && !ip.IsUnspecified() && !ip.IsLoopback() {
		ips = append(ips, ip)
	}
	return ips
}

// rootFingerprint is the SHA-256 fingerprint of the root that anchors the signing certificate
// (the last of the trust bundle).
func (m *meshPort) rootFingerprint() string {
	roots := m.authority.TrustBundle()
	if len(roots) == 0 {
		return ""
	}
	return ca.Fingerprint(roots[len(roots)-1])
}

// mint is the admin API's bootstrap token minting.
func (m *meshPort) mint(req embedded.BootstrapTokenRequest) (embedded.BootstrapTokenResponse, error) {
	id := ca.Identity{TrustDomain: m.authority.TrustDomain(), Namespace: req.Namespace, ServiceAccount: req.ServiceAccount}
	if err := id.Validate(); err != nil {
		return embedded.BootstrapTokenResponse{}, fmt.Errorf("%w: %v", embedded.ErrInvalidRequest, err)
	}
	ttl := time.Duration(min(req.TTLSeconds, math.MaxInt64/int64(time.Second))) * time.Second
	tok, err := m.tokens.Mint(req.Namespace, req.ServiceAccount, ttl)
	if err != nil {
		m.log.Warn("minting a bootstrap token failed", "identity", id.SPIFFEID(), "err", err)
		return embedded.BootstrapTokenResponse{}, err
	}
	m.log.Info("minted bootstrap token", "id", tok.ID, "identity", tok.Identity.SPIFFEID(), "expires", tok.Expires)
	return embedded.BootstrapTokenResponse{
		Token:       tok.Token,
		ID:          tok.ID,
		Expires:     tok.Expires.UTC(),
		Identity:    tok.Identity.SPIFFEID(),
		TrustBundle: string(m.authority.TrustBundlePEM()),
		CAAddress:   m.ln.Addr().String(),
	}, nil
}

// loadOrCreateAdminToken returns the admin token in dir/admin-token, creating it (mode 0600,
// atomically) when it is missing, and replacing it when it is not a regular file readable by
// its owner only: such a token may have leaked.
func loadOrCreateAdminToken(dir string, log *slog.Logger) (string, error) {
	path := filepath.Join(dir, AdminTokenFile)
	fi, err := os.Lstat(path)
	switch {
	case err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o077 == 0:
		tok, err := embedded.ReadAdminToken(path)
		if err == nil {
			return tok, nil
		}
		log.Warn("replacing the admin token file", "path", path, "err", err)
	case err == nil:
		log.Warn("replacing the admin token file: it was not a regular file readable by its owner only", "path", path, "mode", fi.Mode().String())
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("admin token: %w", err)
	}
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	tok := "sat1." + base64.RawURLEncoding.EncodeToString(secret[:])
	f, err := os.CreateTemp(dir, "."+AdminTokenFile+".*") // mode 0600
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return "", fmt.Errorf("admin token: %w", err)
	}
	if _, err := f.WriteString(tok + "\n"); err != nil {
		f.Close()
		return "", fmt.Errorf("admin token: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", fmt.Errorf("admin token: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	log.Info("created the admin token file", "path", path)
	return strings.TrimSpace(tok), nil
}
