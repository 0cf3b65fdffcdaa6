package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/strait-mesh/strait/internal/node"
	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/xdsclient"
)

// leaf returns PEM certificate and key signed by ca for one extended key usage.
func leaf(t *testing.T, ca *testenv.CA, serial int64, usage x509.ExtKeyUsage, ips ...net.IP) (certPEM, keyPEM []byte) {
	t.Helper()
	return testenv.PEM(t, ca.Issue(t, testenv.Leaf{Serial: serial, CommonName: "leaf", IPs: ips, Usage: []x509.ExtKeyUsage{usage}}))
}

// TestXDSOverMutualTLS connects the proxy to a go-control-plane ADS server that requires a
// client certificate signed by the mesh CA.
func TestXDSOverMutualTLS(t *testing.T) {
	ca := testenv.NewCA(t, "xds root")
	caPEM := ca.PEM
	srvCert, srvKey := leaf(t, ca, 2, x509.ExtKeyUsageServerAuth, net.ParseIP("127.0.0.1"))
	cliCert, cliKey := leaf(t, ca, 3, x509.ExtKeyUsageClientAuth)
	dir := t.TempDir()
	files := map[string][]byte{"ca.pem": caPEM, "cert.pem": cliCert, "key.pem": cliKey}
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	pair, err := tls.X509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12})
	cache := cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)
	nodeID := node.NewID(node.Sidecar, "127.0.0.1", "unit", "default").String()
	cl := &clusterv3.Cluster{Name: "over-mtls", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: "over-mtls"}}
	snap, _ := cachev3.NewSnapshot("1", map[resource.Type][]types.Resource{resource.ClusterType: {cl}})
	if err := cache.SetSnapshot(context.Background(), nodeID, snap); err != nil {
		t.Fatal(err)
	}
	ads := testenv.StartADS(t, testenv.ADSOptions{Cache: cache, GRPC: []grpc.ServerOption{grpc.Creds(creds)}})

	p, err := New(Options{
		XDSAddress:    ads.Addr(),
		XDSTLS:        &XDSTLS{RootCA: filepath.Join(dir, "ca.pem"), CertChain: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem")},
		AdminAddress:  "-",
		DrainDuration: 100 * time.Millisecond,
		Node:          xdsclient.NodeInfo{Type: node.Sidecar, IP: "127.0.0.1", Name: "unit", Namespace: "default"},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for p.Runtime().Clusters["over-mtls"] == nil {
		if time.Now().After(deadline) {
			t.Fatal("no clusters over mutual TLS")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// A missing root CA file fails at startup, not at the first handshake.
	if _, err := New(Options{XDSAddress: "127.0.0.1:1", XDSTLS: &XDSTLS{RootCA: filepath.Join(dir, "missing.pem")},
		Node: xdsclient.NodeInfo{Type: node.Sidecar, IP: "127.0.0.1", Name: "unit", Namespace: "default"}}); err == nil {
		t.Fatal("a missing root CA file was accepted")
	}
}
