// Package kubeenv starts a real Kubernetes control plane for integration tests: Debian's etcd
// and a kube-apiserver (and, when asked, kube-controller-manager) built from the k8s.io/kubernetes
// module by tools/kube/build.sh, on loopback, with generated certificates and a client-certificate
// admin. Everything stops when the test ends. No node and no container runtime exist: the API
// server stores objects and the controller manager derives others (EndpointSlices from Services
// and Pods, say), nothing runs.
//
// A test that cannot have these tools skips with a message saying what is missing, or fails when
// STRAIT_E2E_REQUIRE_TOOLS is set (as in CI).
package kubeenv

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Environment variables that steer the harness.
const (
	// RequireToolsEnv, when set, turns a missing etcd or a failed kube build into a test failure
	// instead of a skip.
	RequireToolsEnv = "STRAIT_E2E_REQUIRE_TOOLS"
	// BinEnv points at a directory holding kube-apiserver and kube-controller-manager; by default
	// tools/kube/build.sh builds them into its cache (it honours the same variable).
	BinEnv = "STRAIT_KUBE_BIN"
)

// ServiceCIDR is the API server's service IP range. It lies in 198.18.0.0/15, the range the
// tests keep for their own hosts, so that no ClusterIP is ever a real address.
const ServiceCIDR = "198.19.240.0/20"

// KubernetesServiceIP is the cluster IP of the kubernetes Service (the API server): the first
// address of ServiceCIDR.
const KubernetesServiceIP = "198.19.240.1"

// Options choose what Start runs.
type Options struct {
	// ControllerManager also starts kube-controller-manager with the controllers that derive
	// objects from others: EndpointSlices, service accounts and their tokens, namespaces'
	// deletion, garbage collection, Deployments, ReplicaSets, Jobs and the kube-root-ca.crt
	// ConfigMaps.
	ControllerManager bool
	// ControllerManagerArgs are more kube-controller-manager flags, after the defaults (a
	// later flag wins): e.g. a higher --kube-api-qps for a scale benchmark.
	ControllerManagerArgs []string
}

// Cluster is a running control plane.
type Cluster struct {
	// Config is an admin (system:masters) client configuration.
	Config *rest.Config
	// Kubeconfig is the path of a kubeconfig file with the same credentials.
	Kubeconfig string
	// URL is the API server's address, https://127.0.0.1:PORT.
	URL string
	// Dir holds the certificates, keys, logs and etcd's data.
	Dir string
}

// Start runs etcd and kube-apiserver (and kube-controller-manager when opts ask) and returns when
// the API server reports ready. It stops them all in t.Cleanup.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	etcdBin, err := exec.LookPath("etcd")
	if err != nil {
		missing(t, "etcd not found: install Debian's package etcd-server (.ci/test-deps does)")
	}
	binDir, err := kubeBinaries(t)
	if err != nil {
		missing(t, "kube-apiserver not available: %v", err)
	}
	dir := t.TempDir()
	c := &Cluster{Dir: dir}
	pki, err := writePKI(dir)
	if err != nil {
		t.Fatalf("kubeenv: %v", err)
	}

	etcdURL := startEtcd(t, etcdBin, dir)
	port := startAPIServer(t, filepath.Join(binDir, "kube-apiserver"), dir, pki, etcdURL)
	c.URL = "https://127.0.0.1:" + strconv.Itoa(port)
	c.Config = &rest.Config{
		Host: c.URL,
		TLSClientConfig: rest.TLSClientConfig{
			CAData: pki.caPEM, CertData: pki.adminCertPEM, KeyData: pki.adminKeyPEM,
		},
		QPS: 200, Burst: 400,
	}
	c.Kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	if err := writeKubeconfig(c.Kubeconfig, c.URL, pki); err != nil {
		t.Fatalf("kubeenv: %v", err)
	}
	if opts.ControllerManager {
		startControllerManager(t, filepath.Join(binDir, "kube-controller-manager"), dir, c.Kubeconfig, pki, opts.ControllerManagerArgs...)
	}
	return c
}

// missing skips the test, or fails it under RequireToolsEnv.
func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv(RequireToolsEnv) != "" {
		t.Fatalf("kubeenv: %s", msg)
	}
	t.Skipf("skipping: %s", msg)
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// kubeBinaries returns the directory of kube-apiserver and kube-controller-manager: $BinEnv, or
// the cache tools/kube/build.sh fills (building them the first time, which takes minutes).
func kubeBinaries(t testing.TB) (string, error) {
	buildOnce.Do(func() {
		if dir := os.Getenv(BinEnv); dir != "" {
			if _, err := os.Stat(filepath.Join(dir, "kube-apiserver")); err == nil {
				buildDir = dir
				return
			}
		}
		_, file, _, _ := runtime.Caller(0)
		script := filepath.Join(filepath.Dir(file), "..", "..", "..", "tools", "kube", "build.sh")
		if _, err := os.Stat(script); err != nil {
			buildErr = fmt.Errorf("no %s: %w", script, err)
			return
		}
		t.Logf("kubeenv: running %s (a cold build takes minutes)", script)
		var stderr bytes.Buffer
		cmd := exec.Command("bash", script)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			buildErr = fmt.Errorf("%s: %w: %s", script, err, tail(stderr.String(), 2000))
			return
		}
		buildDir = strings.TrimSpace(string(out))
	})
	return buildDir, buildErr
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("kubeenv: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// process is a started child whose exit is watched.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// startProcess runs bin with args, its output in DIR/NAME.log, and stops it (SIGTERM, then
// SIGKILL after 10 s) in t.Cleanup; Cleanup runs in reverse order, so what starts last stops
// first.
func startProcess(t testing.TB, dir, name, bin string, args ...string) *process {
	t.Helper()
	p := &process{name: name, log: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		t.Fatalf("kubeenv: %v", err)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test binary
	if err := p.cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("kubeenv: starting %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("kubeenv: last lines of %s:\n%s", p.log, p.tail())
		}
	})
	return p
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// tail returns the end of the process's log.
func (p *process) tail() string {
	b, _ := os.ReadFile(p.log)
	return tail(string(b), 4000)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// startEtcd runs etcd on two free loopback ports with its data under dir and returns its client
// URL once it answers /health.
func startEtcd(t testing.TB, bin, dir string) string {
	t.Helper()
	var clientURL string
	startOnFreePorts(t, http.DefaultClient, 30*time.Second, func(attempt int) (*process, string) {
		n := strconv.Itoa(attempt)
		clientURL = "http://127.0.0.1:" + strconv.Itoa(freePort(t))
		peerURL := "http://127.0.0.1:" + strconv.Itoa(freePort(t))
		p := startProcess(t, dir, "etcd-"+n, bin,
			"--name=default", "--data-dir="+filepath.Join(dir, "etcd-"+n),
			"--listen-client-urls="+clientURL, "--advertise-client-urls="+clientURL,
			"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
			"--initial-cluster=default="+peerURL,
			"--logger=zap", "--log-level=warn")
		return p, clientURL + "/health"
	})
	return clientURL
}

// startAPIServer runs kube-apiserver on a free loopback port and returns the port once /readyz
// answers 200.
func startAPIServer(t testing.TB, bin, dir string, pki *pki, etcdURL string) int {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.adminTLS()}}
	defer client.CloseIdleConnections()
	var port int
	startOnFreePorts(t, client, 90*time.Second, func(attempt int) (*process, string) {
		n := strconv.Itoa(attempt)
		port = freePort(t)
		p := startProcess(t, dir, "kube-apiserver-"+n, bin,
			"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port="+strconv.Itoa(port),
			"--etcd-servers="+etcdURL, "--etcd-prefix=/registry-"+n,
			"--cert-dir="+filepath.Join(dir, "apiserver-certs"),
			"--tls-cert-file="+pki.file("apiserver.crt"), "--tls-private-key-file="+pki.file("apiserver.key"),
			"--client-ca-file="+pki.file("ca.crt"),
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file="+pki.file("sa.pub"),
			"--service-account-signing-key-file="+pki.file("sa.key"),
			"--service-cluster-ip-range="+ServiceCIDR,
			"--authorization-mode=RBAC,Node",
			"--allow-privileged=true",
			"--endpoint-reconciler-type=none", // loopback cannot be the kubernetes Service's endpoint
			// Webhooks and aggregated APIs named by a Service are called at one of its endpoints
			// (no kube-proxy routes cluster IPs here): pods of the kubelet stand-in serve them.
			"--enable-aggregator-routing=true",
			"--profiling=false",
			"--v=1")
		return p, "https://127.0.0.1:" + strconv.Itoa(port) + "/readyz"
	})
	return port
}

// startOnFreePorts runs start, which starts a server on ports it picks, until the server's health
// URL answers 200 (each try within timeout). A server that exits early, as when another process
// took a port in between, is tried again with other ports, up to three times in all.
func startOnFreePorts(t testing.TB, client *http.Client, timeout time.Duration, start func(attempt int) (*process, string)) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		p, url := start(attempt)
		err := waitFor(p, timeout, func() bool {
			resp, err := client.Get(url)
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
		if err == nil {
			return
		}
		if !p.exited() || attempt == 3 {
			t.Fatalf("kubeenv: %v\n%s", err, p.tail())
		}
	}
}

// waitFor polls ready every 100 ms until it is true, the process exits or timeout passes.
func waitFor(p *process, timeout time.Duration, ready func() bool) error {
	deadline := time.Now().Add(timeout)
	for {
		if ready() {
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%s exited: %v", p.name, p.err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s", p.name, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startControllerManager runs kube-controller-manager against the API server (no serving port,
// no leader election) with the controllers Options.ControllerManager lists.
func startControllerManager(t testing.TB, bin, dir, kubeconfig string, pki *pki, extra ...string) {
	t.Helper()
	args := []string{"--kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig, "--authorization-kubeconfig=" + kubeconfig,
		"--bind-address=127.0.0.1", "--secure-port=0",
		"--leader-elect=false",
		"--controllers=endpointslice-controller,endpointslice-mirroring-controller,serviceaccount-controller,serviceaccount-token-controller,namespace-controller,garbage-collector-controller,deployment-controller,replicaset-controller,job-controller,root-ca-certificate-publisher-controller",
		"--service-account-private-key-file=" + pki.file("sa.key"),
		"--root-ca-file=" + pki.file("ca.crt"),
		"--service-cluster-ip-range=" + ServiceCIDR,
		"--v=1"}
	p := startProcess(t, dir, "kube-controller-manager", bin, append(args, extra...)...)
	// It has no readiness endpoint without a serving port: give it a moment to fail on bad flags.
	time.Sleep(200 * time.Millisecond)
	if p.exited() {
		t.Fatalf("kubeenv: kube-controller-manager exited: %v\n%s", p.err, p.tail())
	}
}

// pki holds the generated certificates and keys.
type pki struct {
	dir                              string
	caPEM, adminCertPEM, adminKeyPEM []byte
	adminCert                        tls.Certificate
	caPool                           *x509.CertPool
}

func (p *pki) file(name string) string { return filepath.Join(p.dir, name) }

// adminTLS is a client TLS configuration with the admin certificate.
func (p *pki) adminTLS() *tls.Config {
	return &tls.Config{RootCAs: p.caPool, Certificates: []tls.Certificate{p.adminCert}, MinVersion: tls.VersionTLS12}
}

// writePKI creates a CA, the API server's serving certificate (127.0.0.1, localhost and the
// in-cluster names), an admin client certificate (group system:masters) and the service-account
// signing key, under dir/pki.
func writePKI(dir string) (*pki, error) {
	p := &pki{dir: filepath.Join(dir, "pki")}
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return nil, err
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "strait-test-kube-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("creating CA: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	p.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	p.caPool = x509.NewCertPool()
	p.caPool.AddCert(ca)

	issue := func(serial int64, tmpl *x509.Certificate) (certPEM, keyPEM []byte, err error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(24*time.Hour)
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return nil, nil, err
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, nil, err
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
	}
	srvCert, srvKey, err := issue(2, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		// The kubernetes Service's cluster IP too, as kube-apiserver's own certificate has it: pods
		// of the kubelet stand-in reach the API server there.
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP(KubernetesServiceIP)},
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
	})
	if err != nil {
		return nil, fmt.Errorf("issuing serving certificate: %w", err)
	}
	p.adminCertPEM, p.adminKeyPEM, err = issue(3, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "strait-test-admin", Organization: []string{"system:masters"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, fmt.Errorf("issuing admin certificate: %w", err)
	}
	if p.adminCert, err = tls.X509KeyPair(p.adminCertPEM, p.adminKeyPEM); err != nil {
		return nil, err
	}
	// Service-account tokens are signed with RSA, which every Kubernetes version accepts.
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	saPub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{
		"ca.crt":        p.caPEM,
		"apiserver.crt": srvCert,
		"apiserver.key": srvKey,
		"admin.crt":     p.adminCertPEM,
		"admin.key":     p.adminKeyPEM,
		"sa.key":        pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(saKey)}),
		"sa.pub":        pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPub}),
	}
	for name, data := range files {
		if err := os.WriteFile(p.file(name), data, 0o600); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// writeKubeconfig writes an admin kubeconfig for url.
func writeKubeconfig(path, url string, p *pki) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["strait-test"] = &clientcmdapi.Cluster{Server: url, CertificateAuthorityData: p.caPEM}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: p.adminCertPEM, ClientKeyData: p.adminKeyPEM}
	cfg.Contexts["strait-test"] = &clientcmdapi.Context{Cluster: "strait-test", AuthInfo: "admin"}
	cfg.CurrentContext = "strait-test"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("writing kubeconfig: %w", err)
	}
	return nil
}
