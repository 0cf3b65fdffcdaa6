package cli

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"sigs.k8s.io/yaml"

	"github.com/strait-mesh/strait/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite testdata/proxyconfig/*.golden from the current output")

// pcNow is the golden tests' clock: the test certificates' validity is judged at this time.
var pcNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// The fixture is testdata/proxyconfig/config_dump.json and clusters.json, captured from a real
// strait-proxy by TestProxyConfigLive -capture-dump (a sidecar in explicit mode for the mesh of
// liveMeshYAML), plus what that mesh does not produce, made here:
//   - secrets with certificates made with fixed dates and serial numbers (the captured ones are
//     removed): "default" (a leaf and its CA), ROOTCA, an expired certificate and a warming secret;
//   - a static listener with SNI, transport, ALPN, address and port matches, an inline route, an
//     additional address and a default chain to the BlackHoleCluster;
//   - a static route configuration with a 404 virtual host, a passthrough route (not shown),
//     path-separated-prefix and regex matches, and two kinds of Istio config metadata;
//   - static clusters with DestinationRule metadata and a custom cluster type;
//   - in /clusters: an endpoint failing outlier detection and a Unix socket endpoint.
type pcFixture struct {
	dumpJSON     []byte // the /config_dump served
	clustersJSON []byte // the /clusters?format=json served
	admin        string // an admin server serving both
}

// readTestdataJSON decodes testdata/proxyconfig/name (protobuf JSON) into m.
func readTestdataJSON(t *testing.T, name string, m proto.Message) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "proxyconfig", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := protojson.Unmarshal(raw, m); err != nil {
		t.Fatal(err)
	}
}

func newPCFixture(t *testing.T) *pcFixture {
	t.Helper()
	var cd adminv3.ConfigDump
	readTestdataJSON(t, "config_dump.json", &cd)
	for i, a := range cd.Configs {
		var m proto.Message
		var err error
		switch {
		case a.MessageIs((*adminv3.SecretsConfigDump)(nil)):
			m = testSecrets(t)
		case a.MessageIs((*adminv3.ListenersConfigDump)(nil)):
			m, err = a.UnmarshalNew()
			if err == nil {
				m.(*adminv3.ListenersConfigDump).StaticListeners = []*adminv3.ListenersConfigDump_StaticListener{{Listener: testenv.MustAny(t, testListener(t))}}
			}
		case a.MessageIs((*adminv3.RoutesConfigDump)(nil)):
			m, err = a.UnmarshalNew()
			if err == nil {
				m.(*adminv3.RoutesConfigDump).StaticRouteConfigs = []*adminv3.RoutesConfigDump_StaticRouteConfig{{RouteConfig: testenv.MustAny(t, testRoute())}}
			}
		case a.MessageIs((*adminv3.ClustersConfigDump)(nil)):
			m, err = a.UnmarshalNew()
			if err == nil {
				for _, c := range testClusters() {
					m.(*adminv3.ClustersConfigDump).StaticClusters = append(m.(*adminv3.ClustersConfigDump).StaticClusters,
						&adminv3.ClustersConfigDump_StaticCluster{Cluster: testenv.MustAny(t, c)})
				}
			}
		default:
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		cd.Configs[i] = testenv.MustAny(t, m)
	}
	f := &pcFixture{}
	var err error
	if f.dumpJSON, err = (protojson.MarshalOptions{UseProtoNames: true, Multiline: true}).Marshal(&cd); err != nil {
		t.Fatal(err)
	}

	var cs adminv3.Clusters
	readTestdataJSON(t, "clusters.json", &cs)
	for _, c := range cs.ClusterStatuses {
		if c.Name == "outbound|9080|v2|reviews.default.svc.cluster.local" {
			for _, h := range c.HostStatuses {
				h.HealthStatus = &adminv3.HostHealthStatus{EdsHealthStatus: corev3.HealthStatus_UNHEALTHY, FailedOutlierCheck: true}
			}
		}
	}
	cs.ClusterStatuses = append(cs.ClusterStatuses, &adminv3.ClusterStatus{Name: "outbound|9999||uds.local", HostStatuses: []*adminv3.HostStatus{{
		Address:      &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: "/var/run/app.sock"}}},
		HealthStatus: &adminv3.HostHealthStatus{EdsHealthStatus: corev3.HealthStatus_HEALTHY},
	}}})
	if f.clustersJSON, err = (protojson.MarshalOptions{UseProtoNames: true}).Marshal(&cs); err != nil {
		t.Fatal(err)
	}
	f.admin = serveAdmin(t, f.dumpJSON, f.clustersJSON)
	return f
}

// serveAdmin serves dump on /config_dump and, unless clusters is nil, clusters on /clusters
// (JSON only); it returns the server's host:port.
func serveAdmin(t *testing.T, dump, clusters []byte) string {
	t.Helper()
	srv := httptest.NewServer(adminMux(dump, clusters))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func adminMux(dump, clusters []byte) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/config_dump", func(w http.ResponseWriter, _ *http.Request) { w.Write(dump) })
	if clusters != nil {
		mux.HandleFunc("/clusters", func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("format") != "json" {
				http.Error(w, "want format=json", http.StatusBadRequest)
				return
			}
			w.Write(clusters)
		})
	}
	return mux
}

func day(s string) time.Time {
	d, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return d
}

// testSecrets returns the secrets of the fixture: real certificates with fixed serial numbers and
// validity, private keys redacted as the proxy's dump does.
func testSecrets(t *testing.T) *adminv3.SecretsConfigDump {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey := newKey()
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(0x0a1b2c3d4e5f), Subject: pkix.Name{CommonName: "strait test root"},
		NotBefore: day("2026-01-01T00:00:00Z"), NotAfter: day("2036-01-01T00:00:00Z"),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	leaf := func(serial string, notBefore, notAfter string) []byte {
		n, ok := new(big.Int).SetString(serial, 16)
		if !ok {
			t.Fatalf("serial %q", serial)
		}
		spiffe, _ := url.Parse("spiffe://cluster.local/ns/default/sa/productpage")
		k := newKey()
		der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
			SerialNumber: n, URIs: []*url.URL{spiffe},
			NotBefore: day(notBefore), NotAfter: day(notAfter),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		}, ca, k.Public(), caKey)
		if err != nil {
			t.Fatal(err)
		}
		return append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), caPEM...)
	}
	redacted := &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "[redacted]"}}
	certSecret := func(name string, chain []byte) *adminv3.SecretsConfigDump_DynamicSecret {
		return &adminv3.SecretsConfigDump_DynamicSecret{Name: name, VersionInfo: "1", Secret: testenv.MustAny(t, &tlsv3.Secret{Name: name,
			Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
				CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: chain}},
				PrivateKey:       redacted,
			}}})}
	}
	return &adminv3.SecretsConfigDump{
		DynamicActiveSecrets: []*adminv3.SecretsConfigDump_DynamicSecret{
			certSecret("default", leaf("29f3a1e83bcf0a9c5ac4b64e0b3c5178", "2026-05-31T12:00:00Z", "2026-06-01T12:00:01Z")),
			{Name: "ROOTCA", Secret: testenv.MustAny(t, &tlsv3.Secret{Name: "ROOTCA", Type: &tlsv3.Secret_ValidationContext{
				ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: &corev3.DataSource{
					Specifier: &corev3.DataSource_InlineBytes{InlineBytes: caPEM}}}}})},
			certSecret("kubernetes://expired-cert", leaf("1ee7", "2026-04-01T00:00:00Z", "2026-05-01T00:00:00Z")),
		},
		DynamicWarmingSecrets: []*adminv3.SecretsConfigDump_DynamicSecret{{Name: "kubernetes://gateway-cert"}},
	}
}

func sockAddr(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
}

func tcpFilter(t *testing.T, cluster string) *listenerv3.Filter {
	return &listenerv3.Filter{Name: tcpFilterName, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: testenv.MustAny(t,
		&tcpv3.TcpProxy{StatPrefix: cluster, ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: cluster}})}}
}

func hcmFilter(t *testing.T, hcm *hcmv3.HttpConnectionManager) *listenerv3.Filter {
	hcm.StatPrefix = "test"
	return &listenerv3.Filter{Name: hcmFilterName, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: testenv.MustAny(t, hcm)}}
}

func routeTo(prefix, cluster string) *routev3.Route {
	return &routev3.Route{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}}}
}

// testListener is a gateway-like listener with the filter chain matches the captured sidecar
// does not have.
func testListener(t *testing.T) *listenerv3.Listener {
	httpTLS := []string{"http/1.0", "http/1.1", "h2c", "istio-http/1.0", "istio-http/1.1", "istio-h2"}
	inline := &routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{
		{Name: "a", Domains: []string{"a.example", "a.example:80"}, Routes: []*routev3.Route{
			routeTo("/x", "outbound|80||a.example"),
			{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/y"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "outbound|80||a.example"}}}},
		}},
		{Name: "rest", Domains: []string{"*"}, Routes: []*routev3.Route{
			{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/z/[0-9]+"}}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "outbound|80||z.example"}}}},
		}},
	}}
	return &listenerv3.Listener{
		Name:                "0.0.0.0_15443",
		Address:             sockAddr("0.0.0.0", 15443),
		AdditionalAddresses: []*listenerv3.AdditionalAddress{{Address: sockAddr("::", 15443)}},
		FilterChains: []*listenerv3.FilterChain{
			{FilterChainMatch: &listenerv3.FilterChainMatch{ServerNames: []string{"outbound_.9080_.v1_.reviews.default.svc.cluster.local"}, TransportProtocol: "tls"},
				Filters: []*listenerv3.Filter{tcpFilter(t, "outbound|9080|v1|reviews.default.svc.cluster.local")}},
			{FilterChainMatch: &listenerv3.FilterChainMatch{TransportProtocol: "tls", ApplicationProtocols: httpTLS},
				Filters: []*listenerv3.Filter{hcmFilter(t, &hcmv3.HttpConnectionManager{RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{
					Rds: &hcmv3.Rds{RouteConfigName: "https.443"}}})}},
			{FilterChainMatch: &listenerv3.FilterChainMatch{
				PrefixRanges:    []*corev3.CidrRange{{AddressPrefix: "10.0.0.0", PrefixLen: wrapperspb.UInt32(8)}},
				DestinationPort: wrapperspb.UInt32(8443)},
				Filters: []*listenerv3.Filter{tcpFilter(t, "PassthroughCluster")}},
			{FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(9443), ApplicationProtocols: []string{"h2", "http/1.1"}},
				Filters: []*listenerv3.Filter{hcmFilter(t, &hcmv3.HttpConnectionManager{RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: inline}})}},
		},
		DefaultFilterChain: &listenerv3.FilterChain{Filters: []*listenerv3.Filter{tcpFilter(t, "BlackHoleCluster")}},
	}
}

func istioConfig(path string) *corev3.Metadata {
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"istio": {Fields: map[string]*structpb.Value{
		"config": structpb.NewStringValue(path)}}}}
}

// testRoute is a gateway-like route configuration.
func testRoute() *routev3.RouteConfiguration {
	vs := istioConfig("/apis/networking.istio.io/v1alpha3/namespaces/edge/virtual-service/web")
	pathPrefix := &routev3.Route{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: "/api"}},
		Action:   &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "outbound|80||web.edge.svc.cluster.local"}}},
		Metadata: vs}
	other := routeTo("/other", "outbound|80||web.edge.svc.cluster.local")
	other.Metadata = istioConfig("gateway.networking.k8s.io/HTTPRoute/edge/web")
	return &routev3.RouteConfiguration{Name: "https.443", VirtualHosts: []*routev3.VirtualHost{
		{Name: "web.example.com:443", Domains: []string{"web.example.com", "web.example.com:443"}, Routes: []*routev3.Route{
			pathPrefix, other, routeTo("/", "PassthroughCluster"),
		}},
		{Name: "blackhole:443", Domains: []string{"*"}},
	}}
}

// testClusters are static clusters with DestinationRule metadata and a custom cluster type.
func testClusters() []*clusterv3.Cluster {
	return []*clusterv3.Cluster{
		{Name: "outbound|443||api.example.com", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS},
			Metadata: istioConfig("/apis/networking.istio.io/v1/namespaces/default/destination-rule/api")},
		{Name: "outbound|80||agg.example.com", ClusterDiscoveryType: &clusterv3.Cluster_ClusterType{
			ClusterType: &clusterv3.Cluster_CustomClusterType{Name: "envoy.clusters.aggregate"}}},
	}
}

// pcRun runs `strait proxy-config ARGS` with the golden tests' clock, straitd at straitd, and
// returns stdout, or the error.
func pcRun(t *testing.T, straitd string, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	g := &globals{addr: straitd, stdin: strings.NewReader(""), stdout: &out, stderr: &errb}
	cmd := (&proxyConfig{g: g, client: &http.Client{Timeout: 10 * time.Second}, now: func() time.Time { return pcNow }}).command()
	err := executeQuiet(cmd, &errb, args)
	return out.String(), err
}

// TestProxyConfigGolden checks the exact table of each subcommand and each filter.
func TestProxyConfigGolden(t *testing.T) {
	f := newPCFixture(t)
	dumpFile := filepath.Join(t.TempDir(), "config_dump.json")
	clustersFile := filepath.Join(t.TempDir(), "clusters.json")
	for p, b := range map[string][]byte{dumpFile: f.dumpJSON, clustersFile: f.clustersJSON} {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	noClusters := serveAdmin(t, f.dumpJSON, nil) // a proxy without /clusters: endpoints from EDS
	a := f.admin
	cases := []struct {
		golden string
		args   []string
	}{
		{"cluster", []string{"cluster", a}},
		{"cluster-fqdn", []string{"cluster", a, "--fqdn", "reviews.default.svc.cluster.local"}},
		{"cluster-port", []string{"cluster", a, "--port", "9080"}},
		{"cluster-subset", []string{"cluster", a, "--subset", "v2"}},
		{"cluster-direction", []string{"cluster", a, "--direction", "inbound"}},
		{"cluster-all-filters", []string{"clusters", a, "--fqdn", "reviews", "--port", "9080", "--subset", "v1", "--direction", "outbound"}},
		{"cluster", []string{"c", "--file", dumpFile}},
		{"listener", []string{"listener", a}},
		{"listener-short", []string{"listener", a, "--verbose=false"}},
		{"listener-address", []string{"listeners", a, "--address", "127.42.0.2"}},
		{"listener-additional-address", []string{"l", a, "--address", "::"}},
		{"listener-port", []string{"listener", a, "--port", "9080"}},
		{"listener-type", []string{"listener", a, "--type", "tcp", "--verbose=false"}},
		{"route", []string{"route", a}},
		{"route-name", []string{"routes", a, "--name", "9080"}},
		{"route-short", []string{"r", a, "--verbose=false"}},
		{"endpoint", []string{"endpoint", a}},
		{"endpoint", []string{"endpoint", "--file", clustersFile}},
		{"endpoint-address", []string{"endpoints", a, "--address", "127.42.1.11"}},
		{"endpoint-port", []string{"ep", a, "--port", "5432"}},
		{"endpoint-cluster", []string{"endpoint", a, "--cluster", "outbound|9080|v2|reviews.default.svc.cluster.local"}},
		{"endpoint-status", []string{"endpoint", a, "--status", "unhealthy"}},
		{"endpoint-eds", []string{"endpoint", noClusters}},
		{"endpoint-eds", []string{"endpoint", "--file", dumpFile}},
		{"secret", []string{"secret", a}},
		{"secret", []string{"s", "--file", dumpFile}},
		{"bootstrap", []string{"bootstrap", "--file", dumpFile}},
		{"bootstrap-yaml", []string{"b", "--file", dumpFile, "-o", "yaml"}},
		{"all", []string{"all", a}},
		{"all-filtered", []string{"all", a, "--port", "9080", "--subset", "v1", "--name", "9080", "--cluster", "outbound|9080|v1|reviews.default.svc.cluster.local"}},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			out, err := pcRun(t, "127.0.0.1:1", c.args...)
			if err != nil {
				t.Fatal(err)
			}
			testenv.Golden(t, filepath.Join("testdata", "proxyconfig", c.golden+".golden"), out, *update)
		})
	}
}

// TestProxyConfigJSON checks that -o json and -o yaml print the (filtered) resources of the dump,
// decodable again into the same messages.
func TestProxyConfigJSON(t *testing.T) {
	f := newPCFixture(t)
	d, err := parseConfigDump(f.dumpJSON)
	if err != nil {
		t.Fatal(err)
	}
	clusters, _ := d.clusterList()
	listeners, _ := d.listenerList()
	routes, _ := d.routeList()
	eps, err := parseClusters(f.clustersJSON)
	if err != nil {
		t.Fatal(err)
	}
	msgs := func(in ...proto.Message) []proto.Message { return in }
	cases := []struct {
		args []string
		want []proto.Message
		new  func() proto.Message
	}{
		{[]string{"cluster", "--port", "9080"}, msgs(protoSlice(filterSlice(clusters, clusterFilter{port: 9080}.match))...),
			func() proto.Message { return &clusterv3.Cluster{} }},
		{[]string{"listener", "--address", "127.42.0.2"}, msgs(protoSlice(filterSlice(listeners, listenerFilter{address: "127.42.0.2"}.match))...),
			func() proto.Message { return &listenerv3.Listener{} }},
		{[]string{"route"}, msgs(protoSlice(routes)...), func() proto.Message { return &routev3.RouteConfiguration{} }},
		{[]string{"endpoint", "--status", "UNHEALTHY"}, msgs(protoSlice(filterSlice(eps, endpointFilter{status: "UNHEALTHY"}.matchCluster))...),
			func() proto.Message { return &adminv3.ClusterStatus{} }},
	}
	for _, c := range cases {
		if len(c.want) == 0 {
			t.Fatalf("%v: the fixture has nothing to compare", c.args)
		}
		for _, format := range []string{"json", "yaml"} {
			out, err := pcRun(t, "127.0.0.1:1", append([]string{c.args[0], f.admin, "-o", format}, c.args[1:]...)...)
			if err != nil {
				t.Fatalf("%v -o %s: %v", c.args, format, err)
			}
			var items []json.RawMessage
			if err := json.Unmarshal(toJSON(t, format, out), &items); err != nil {
				t.Fatalf("%v -o %s: %v\n%s", c.args, format, err, out)
			}
			if len(items) != len(c.want) {
				t.Fatalf("%v -o %s: %d items, want %d", c.args, format, len(items), len(c.want))
			}
			for i, it := range items {
				m := c.new()
				if err := protojson.Unmarshal(it, m); err != nil {
					t.Fatalf("%v -o %s: item %d: %v", c.args, format, i, err)
				}
				if !proto.Equal(m, c.want[i]) {
					t.Errorf("%v -o %s: item %d differs from the dump's:\n%v\nwant\n%v", c.args, format, i, m, c.want[i])
				}
			}
		}
	}
	if out, _ := pcRun(t, "127.0.0.1:1", "cluster", f.admin, "-o", "json"); !strings.Contains(out, `"connectTimeout": "10s"`) {
		t.Errorf("cluster -o json: want istioctl's lowerCamelCase names indented by four spaces, got:\n%.600s", out)
	}

	for _, format := range []string{"json", "yaml"} {
		out, err := pcRun(t, "127.0.0.1:1", "secret", f.admin, "-o", format)
		if err != nil {
			t.Fatal(err)
		}
		var got adminv3.SecretsConfigDump
		if err := protojson.Unmarshal(toJSON(t, format, out), &got); err != nil {
			t.Fatalf("secret -o %s: %v", format, err)
		}
		if !proto.Equal(&got, d.secrets) {
			t.Errorf("secret -o %s differs from the dump's secrets", format)
		}
		if !strings.Contains(string(toJSON(t, format, out)), "[redacted]") {
			t.Errorf("secret -o %s: the redacted private keys are missing", format)
		}

		out, err = pcRun(t, "127.0.0.1:1", "all", f.admin, "-o", format)
		if err != nil {
			t.Fatal(err)
		}
		var all, want adminv3.ConfigDump
		if err := protojson.Unmarshal(toJSON(t, format, out), &all); err != nil {
			t.Fatalf("all -o %s: %v", format, err)
		}
		if err := protojson.Unmarshal(f.dumpJSON, &want); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(&all, &want) {
			t.Errorf("all -o %s differs from the config dump", format)
		}
	}
}

func protoSlice[M proto.Message](in []M) []proto.Message {
	out := make([]proto.Message, len(in))
	for i, m := range in {
		out[i] = m
	}
	return out
}

func toJSON(t *testing.T, format, out string) []byte {
	t.Helper()
	if format == "json" {
		return []byte(out)
	}
	b, err := yaml.YAMLToJSON([]byte(out))
	if err != nil {
		t.Fatalf("decoding yaml: %v\n%.600s", err, out)
	}
	return b
}

// TestProxyConfigByName resolves proxies by name through a stand-in straitd: the admin address is
// the node's IP on port 15000 (checked against the node ID the proxy reports), or the address
// straitd reports.
func TestProxyConfigByName(t *testing.T) {
	f := newPCFixture(t)
	var ip string
	for n := byte(20); n < 250 && ip == ""; n++ {
		if a := netip.AddrFrom4([4]byte{127, 77, n, 1}); bindable(a) && bindable(netip.AddrFrom4([4]byte{127, 77, n, 2})) {
			ip = a.String()
		}
	}
	if ip == "" {
		t.Skip("no free 127.77.N.1:15000")
	}
	other := strings.TrimSuffix(ip, ".1") + ".2" // nothing listens on its port 15000
	nodeID := "sidecar~" + ip + "~productpage-v1.default~default.svc.cluster.local"
	dump := bytes.ReplaceAll(f.dumpJSON, []byte("sidecar~127.42.0.1~productpage-v1.default~default.svc.cluster.local"), []byte(nodeID))
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "15000"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: adminMux(dump, f.clustersJSON)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	syncz, _ := json.Marshal([]map[string]string{
		{"proxy": nodeID},
		{"proxy": "sidecar~" + other + "~productpage-v2.default~default.svc.cluster.local"},
		{"proxy": "sidecar~" + ip + "~impostor.default~default.svc.cluster.local"},
		{"proxy": "router~127.0.0.1~ingress.istio-system~istio-system.svc.cluster.local", "adminAddress": f.admin},
		{"proxy": "sidecar~10.0.0.1~reviews.default~default.svc.cluster.local"},
		{"proxy": "sidecar~10.0.0.2~reviews.other~other.svc.cluster.local"},
	})
	straitd := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/debug/syncz" {
			http.NotFound(w, r)
			return
		}
		w.Write(syncz)
	}))
	t.Cleanup(straitd.Close)
	sd := strings.TrimPrefix(straitd.URL, "http://")

	want, err := pcRun(t, sd, "cluster", f.admin)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"productpage-v1", "productpage-v1.default", nodeID, ip, "ingress", "ingress.istio-system"} {
		got, err := pcRun(t, sd, "cluster", name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
		} else if got != want {
			t.Errorf("%s: got\n%s\nwant\n%s", name, got, want)
		}
	}
	for name, wantErr := range map[string]string{
		"productpage-v2": "straitd does not know its admin address, and " + other + ":15000 (its IP, port 15000) is not it",
		"impostor":       "the admin interface there belongs to " + nodeID,
		"reviews":        `"reviews" names 2 proxies`,
		"nosuch":         `no proxy named "nosuch" is connected to straitd`,
	} {
		_, err := pcRun(t, sd, "cluster", name)
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%s: error %v, want one containing %q", name, err, wantErr)
		}
	}
	if _, err := pcRun(t, "127.0.0.1:1", "cluster", "productpage-v1"); err == nil || !strings.Contains(err.Error(), "looking it up as a proxy name") {
		t.Errorf("with straitd down: error %v", err)
	}
}

// TestProxyConfigErrors checks the arguments and failures users meet.
func TestProxyConfigErrors(t *testing.T) {
	f := newPCFixture(t)
	empty := serveAdmin(t, []byte(`{"configs": [{"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump"}]}`), nil)
	unknownType := serveAdmin(t, []byte(`{"configs": [{"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
		"dynamic_active_clusters": [{"cluster": {"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": "x",
		"typed_extension_protocol_options": {"x": {"@type": "type.googleapis.com/example.Unknown"}}}}]}]}`), nil)
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	}))
	t.Cleanup(broken.Close)
	closed := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}()
	if out, err := pcRun(t, "127.0.0.1:1", "all", empty); err != nil || !strings.HasSuffix(out, "ENDPOINT     STATUS     OUTLIER CHECK     CLUSTER\n") {
		t.Errorf("all of a dump with clusters only: %v\n%s", err, out)
	}
	for _, c := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"cluster"}, "want exactly one PROXY"},
		{[]string{"cluster", f.admin, "x"}, "want exactly one PROXY"},
		{[]string{"cluster", f.admin, "--file", "x.json"}, "either PROXY or --file"},
		{[]string{"cluster", f.admin, "-o", "wide"}, `unknown output format "wide"`},
		{[]string{"cluster", "--file", filepath.Join(t.TempDir(), "missing.json")}, "reading the saved config"},
		{[]string{"cluster", closed}, "asking the proxy admin at " + closed + " for /config_dump (is the proxy running?)"},
		{[]string{"cluster", strings.TrimPrefix(broken.URL, "http://")}, "answered 500 Internal Server Error for /config_dump: boom"},
		{[]string{"cluster", empty}, "no clusters found"},
		{[]string{"listener", empty}, "no listeners found"},
		{[]string{"route", empty}, "no routes found"},
		{[]string{"secret", empty}, "no secrets section"},
		{[]string{"endpoint", empty}, "no endpoints section"},
		{[]string{"cluster", unknownType}, "a type this strait does not know"},
	} {
		_, err := pcRun(t, "127.0.0.1:1", c.args...)
		if err == nil || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("%v: error %v, want one containing %q", c.args, err, c.wantErr)
		}
	}
}

// TestProxyConfigAdminAddress checks which arguments are taken as admin addresses.
func TestProxyConfigAdminAddress(t *testing.T) {
	for arg, want := range map[string]string{
		"127.19.0.1:15000":         "127.19.0.1:15000",
		"http://127.19.0.1:15000/": "127.19.0.1:15000",
		"127.19.0.1":               "127.19.0.1:15000",
		"::1":                      "[::1]:15000",
		"[::1]:15001":              "[::1]:15001",
		":15000":                   "127.0.0.1:15000",
		"localhost:15000":          "localhost:15000",
		"productpage-v1":           "",
		"productpage-v1.default":   "",
		"sidecar~127.19.0.1~productpage-v1.default~default.svc.cluster.local": "",
		"sidecar~fd00::1~productpage-v1.default~default.svc.cluster.local":    "",
		"host:http": "",
	} {
		got, ok := adminAddress(arg)
		if got != want || ok != (want != "") {
			t.Errorf("adminAddress(%q) = %q, %v; want %q", arg, got, ok, want)
		}
	}
}

// TestProxyConfigKnowsProxyTypes checks that strait links every protobuf package strait-proxy
// links, so that any type in a proxy's config dump decodes (see proxyconfig_types.go).
func TestProxyConfigKnowsProxyTypes(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	deps := func(pkg string) map[string]bool {
		cmd := exec.Command("go", "list", "-deps", pkg)
		cmd.Dir = ".."
		out, err := cmd.Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				t.Fatalf("go list -deps %s: %v\n%s", pkg, err, ee.Stderr)
			}
			t.Fatal(err)
		}
		set := map[string]bool{}
		for _, p := range strings.Fields(string(out)) {
			if strings.HasPrefix(p, "github.com/envoyproxy/go-control-plane/envoy/") || strings.HasPrefix(p, "github.com/cncf/xds/go/") {
				set[p] = true
			}
		}
		return set
	}
	cli := deps("./cmd/strait")
	var missing []string
	for p := range deps("./cmd/strait-proxy") {
		if !cli[p] {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		t.Errorf("strait-proxy links protobuf packages strait does not, so `strait proxy-config` cannot decode their types in a config dump; add them to cli/proxyconfig_types.go:\n%s",
			strings.Join(missing, "\n"))
	}
}
