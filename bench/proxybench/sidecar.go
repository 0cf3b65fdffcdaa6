package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/strait-mesh/strait/controlplane/config/embedded"
)

// The sidecar pairs: a client sidecar (explicit mode: its outbound listener bound to the client's
// loopback address) → a server sidecar (its inbound listener bound to the server's address) →
// the backend, as in a mesh, once in plaintext and once with identities from straitd's CA so
// that automatic mTLS makes the hop between them mutual TLS. Both pairs have the same
// configuration apart from the server endpoint's security.istio.io/tlsMode label and the
// proxies' identities.
const (
	benchNamespace  = "bench"
	trustDomain     = "cluster.local"
	saSidecarClient = "bench-client"
	saSidecarServer = "bench-server"
)

// sidecarPair describes one client sidecar → server sidecar pair.
type sidecarPair struct {
	name                 string // path name in the table
	service              string // ServiceEntry name; host <service>.bench.svc.cluster.local
	clientIP, serverIP   string
	clientAdm, serverAdm int
	mtls                 bool
	// The feature pairs (features.go): xds is the plaintext xDS port of the straitd the pair's
	// proxies use (0: portXDS), label adds pair=<service> to both proxies' labels so that a
	// Telemetry or RateLimit selects them, and imports are further hosts (namespace/host) both
	// sidecars import on portCollector, such as the trace collector.
	xds     int
	label   bool
	imports []string
	// h2Upgrade adds a DestinationRule for the pair's host with h2UpgradePolicy UPGRADE: the
	// client sidecar carries its HTTP/1.1 requests to the server sidecar over HTTP/2.
	h2Upgrade bool
}

var (
	plainPair = sidecarPair{name: "strait-proxy sidecar pair", service: "sidecar-plain",
		clientIP: "127.0.0.81", serverIP: "127.0.0.82", clientAdm: 18104, serverAdm: 18105}
	mtlsPair = sidecarPair{name: "strait-proxy sidecar pair mTLS", service: "sidecar-mtls",
		clientIP: "127.0.0.83", serverIP: "127.0.0.84", clientAdm: 18106, serverAdm: 18107, mtls: true}
)

func (p sidecarPair) host() string { return p.service + "." + benchNamespace + ".svc.cluster.local" }

// cluster is the client sidecar's outbound cluster to the server sidecar.
func (p sidecarPair) cluster() string {
	return fmt.Sprintf("outbound|%d||%s", portSidecar, p.host())
}

// spiffe is the SPIFFE ID of a service account in the bench namespace.
func spiffe(sa string) string {
	return "spiffe://" + trustDomain + "/ns/" + benchNamespace + "/sa/" + sa
}

// sidecarConfig is the Istio configuration of a pair: the service (its endpoint is the server
// sidecar's address; with mTLS labelled tlsMode: istio and with the server's service account, as
// Istio's injector labels a pod with a sidecar), and a Sidecar resource per side that binds the
// client's outbound listener and the server's inbound listener (forwarding to the backend) to
// their loopback addresses; the server imports no services (~/*), so that it binds no outbound
// listeners of the other services' ports on 127.0.0.1.
func sidecarConfig(p sidecarPair) string {
	const header = "apiVersion: networking.istio.io/v1\nkind: %s\nmetadata: {name: %s, namespace: " + benchNamespace + "}\nspec:\n"
	endpoint := fmt.Sprintf("{address: %s, labels: {app: %s-server}}", p.serverIP, p.service)
	if p.mtls {
		endpoint = fmt.Sprintf("{address: %s, serviceAccount: %s, labels: {app: %s-server, security.istio.io/tlsMode: istio}}",
			p.serverIP, saSidecarServer, p.service)
	}
	clientEgress, serverEgress := "", `  egress: [{hosts: ["~/*"]}]
`
	if len(p.imports) > 0 {
		// The imported hosts' outbound listeners are bound to each sidecar's own address (two
		// sidecars on one machine cannot both bind 127.0.0.1 for the same port).
		hosts := `"` + strings.Join(p.imports, `", "`) + `"`
		imports := func(ip string) string {
			return fmt.Sprintf("  - {port: {number: %d, protocol: GRPC, name: grpc}, bind: %s, captureMode: NONE, hosts: [%s]}\n",
				portCollector, ip, hosts)
		}
		clientEgress = imports(p.clientIP)
		serverEgress = "  egress:\n" + imports(p.serverIP)
	}
	docs := []string{
		fmt.Sprintf(header+`  hosts: [%[3]s]
  location: MESH_INTERNAL
  ports: [{number: %[4]d, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [%[5]s]
`, "ServiceEntry", p.service, p.host(), portSidecar, endpoint),
		fmt.Sprintf(header+`  workloadSelector: {labels: {app: %[2]s}}
  egress:
  - port: {number: %[3]d, protocol: HTTP, name: http}
    bind: %[4]s
    captureMode: NONE
    hosts: ["%[5]s/%[6]s"]
%[7]s`, "Sidecar", p.service+"-client", portSidecar, p.clientIP, benchNamespace, p.host(), clientEgress),
		fmt.Sprintf(header+`  workloadSelector: {labels: {app: %[2]s}}
  ingress:
  - port: {number: %[3]d, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:%[4]d
    captureMode: NONE
    bind: %[5]s
%[6]s`, "Sidecar", p.service+"-server", portSidecar, portBackend, p.serverIP, serverEgress),
	}
	if p.h2Upgrade {
		docs = append(docs, fmt.Sprintf(header+`  host: %[3]s
  trafficPolicy: {connectionPool: {http: {h2UpgradePolicy: UPGRADE}}}
`, "DestinationRule", p.service, p.host()))
	}
	return strings.Join(docs, "---\n")
}

// startSidecars starts the sidecar pairs, checks that a plaintext pair's hop is plaintext and
// the mTLS pair's hop mutual TLS with both identities, and returns their targets.
func startSidecars(ctx context.Context, work, binDir, straitdHTTP, dataDir string, pairs []sidecarPair, must func(*proc, error) *proc) ([]target, error) {
	var targets []target
	for _, p := range pairs {
		launch := func(side, ip, sa string, admin int) (*proc, error) {
			name := p.service + "-" + side
			labels := "app=" + name
			if p.label {
				labels += ",pair=" + p.service
			}
			xds := p.xds
			if xds == 0 {
				xds = portXDS
			}
			args := []string{filepath.Join(binDir, "strait-proxy"), "--mode", "sidecar", "--namespace", benchNamespace,
				"--workload-name", name, "--labels", labels, "--ip", ip, "--interception-mode", "NONE",
				"--dns-address", "", "--admin-address", fmt.Sprintf("127.0.0.1:%d", admin)}
			if p.mtls {
				id, err := mintIdentity(ctx, straitdHTTP, dataDir, filepath.Join(work, "identity", name), sa)
				if err != nil {
					return nil, err
				}
				args = append(args, id...)
			} else {
				args = append(args, "--xds-address", fmt.Sprintf("127.0.0.1:%d", xds))
			}
			return must(start(work, name, 1, []string{"GOMAXPROCS=1"}, args...)), nil
		}
		server, err := launch("server", p.serverIP, saSidecarServer, p.serverAdm)
		if err != nil {
			return nil, err
		}
		client, err := launch("client", p.clientIP, saSidecarClient, p.clientAdm)
		if err != nil {
			return nil, err
		}
		for _, a := range []int{p.serverAdm, p.clientAdm} {
			if err := waitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/ready", a), 200, 30*time.Second); err != nil {
				return nil, fmt.Errorf("%s: strait-proxy not ready (see %s/*.log): %w", p.name, work, err)
			}
		}
		if err := checkHop(ctx, p); err != nil {
			return nil, fmt.Errorf("%s: %w (logs: %s)", p.name, err, work)
		}
		for _, h2 := range []bool{false, true} {
			targets = append(targets, target{name: p.name, url: fmt.Sprintf("http://%s:%d/echo", p.clientIP, portSidecar),
				host: fmt.Sprintf("%s:%d", p.host(), portSidecar), h2: h2, proxies: []*proc{client, server}, pair: p})
		}
	}
	return targets, nil
}

// mintIdentity asks straitd (HTTP address straitd) for a bootstrap token for bench/sa with the
// admin token in dataDir, as `strait up` and the e2e tests do, writes it and the trust bundle to
// dir, and returns strait-proxy's identity flags: its agent gets a certificate from straitd's CA
// and it speaks xDS over mutual TLS on straitd's mesh port.
func mintIdentity(ctx context.Context, straitd, dataDir, dir, sa string) ([]string, error) {
	var resp embedded.BootstrapTokenResponse
	deadline := time.Now().Add(30 * time.Second)
	for {
		tok, err := os.ReadFile(filepath.Join(dataDir, "admin-token"))
		if err == nil {
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			resp, err = embedded.NewClient(straitd).MintBootstrapToken(rctx, strings.TrimSpace(string(tok)),
				embedded.BootstrapTokenRequest{Namespace: benchNamespace, ServiceAccount: sa})
			cancel()
		}
		if err == nil && (resp.TrustBundle == "" || resp.CAAddress == "") {
			return nil, errors.New("straitd minted a bootstrap token without trust bundle or CA address: is its CA (--data-dir, --mesh-address) on?")
		}
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("minting a bootstrap token for %s/%s: %w", benchNamespace, sa, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	tokenFile, rootsFile := filepath.Join(dir, "bootstrap-token"), filepath.Join(dir, "root-cert.pem")
	if err := os.WriteFile(tokenFile, []byte(resp.Token+"\n"), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(rootsFile, []byte(resp.TrustBundle), 0o600); err != nil {
		return nil, err
	}
	return []string{"--ca-address", resp.CAAddress, "--ca-root-cert", rootsFile, "--bootstrap-token-file", tokenFile,
		"--service-account", sa, "--xds-address", resp.CAAddress}, nil
}

// checkHop sends requests through the pair until one arrives (the configuration may still be
// settling), then checks what the backend saw: with mTLS an x-forwarded-client-cert naming the
// server's identity (By=) and the client's (URI=), which the server sidecar only adds for a
// connection that presented a verified client certificate, and TLS on the server's inbound
// listener; in plaintext neither. Either kind of pair that is not what its name says fails the
// benchmark.
func checkHop(ctx context.Context, p sidecarPair) error {
	debug := fmt.Sprintf("http://%s:%d/debug", p.clientIP, portSidecar)
	host := fmt.Sprintf("%s:%d", p.host(), portSidecar)
	var body, last string
	for deadline := time.Now().Add(30 * time.Second); ; {
		code, b, err := get(ctx, debug, host)
		if err == nil && code == http.StatusOK {
			body = b
			break
		}
		last = fmt.Sprint(code, " ", err, " ", strings.TrimSpace(b))
		if time.Now().After(deadline) {
			return fmt.Errorf("no request through the pair succeeded in 30s (last: %s)", last)
		}
		time.Sleep(200 * time.Millisecond)
	}
	xfcc := ""
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, "X-Forwarded-Client-Cert: "); ok {
			xfcc = v
		}
	}
	tlsFound, err := statValue(ctx, p.serverAdm, "tls_inspector.tls_found")
	if err != nil {
		return err
	}
	h1, err1 := statValue(ctx, p.clientAdm, "cluster."+p.cluster()+".upstream_cx_http1_total")
	h2, err2 := statValue(ctx, p.clientAdm, "cluster."+p.cluster()+".upstream_cx_http2_total")
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	if !p.mtls {
		if xfcc != "" || tlsFound > 0 {
			return fmt.Errorf("the plaintext pair's hop is not plaintext: x-forwarded-client-cert %q, server tls_inspector.tls_found %d", xfcc, tlsFound)
		}
		if p.h2Upgrade && (h2 == 0 || h1 != 0) {
			return fmt.Errorf("%s: the client sidecar's upstream connections are http1=%d http2=%d, want HTTP/2 only (h2UpgradePolicy UPGRADE)", p.name, h1, h2)
		}
		log.Printf("%s: hop is plaintext (no x-forwarded-client-cert, no TLS at the server sidecar); upstream connections http1=%d http2=%d", p.name, h1, h2)
		return nil
	}
	by, uri := "By="+spiffe(saSidecarServer), "URI="+spiffe(saSidecarClient)
	if !strings.Contains(xfcc, by) || !strings.Contains(xfcc, uri) || tlsFound == 0 {
		return fmt.Errorf("the hop is not mutual TLS: x-forwarded-client-cert %q (want %s and %s), server tls_inspector.tls_found %d (want > 0)",
			xfcc, by, uri, tlsFound)
	}
	log.Printf("%s: hop is mutual TLS (x-forwarded-client-cert %s; server tls_inspector.tls_found %d); upstream connections http1=%d http2=%d",
		p.name, xfcc, tlsFound, h1, h2)
	return nil
}

// get fetches target with Host host (empty: the URL's) and returns status and body.
func get(ctx context.Context, target, host string) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = host
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b), err
}

// statValue reads one counter or gauge from a proxy's admin /stats (0 if it does not exist yet).
func statValue(ctx context.Context, admin int, name string) (int64, error) {
	code, body, err := get(ctx, fmt.Sprintf("http://127.0.0.1:%d/stats?filter=%s", admin, url.QueryEscape(name)), "")
	if err != nil || code != http.StatusOK {
		return 0, fmt.Errorf("reading %s from the admin port %d: %d %v", name, admin, code, err)
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+": "); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, nil
}
