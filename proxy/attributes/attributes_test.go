package attributes

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
)

func httpRecord() *Record {
	spiffe, _ := url.Parse("spiffe://cluster.local/ns/shop/sa/web")
	md, _ := structpb.NewStruct(map[string]any{"shadow_effective_policy_id": "p1", "n": 3})
	return &Record{
		Start:     time.Date(2026, 5, 4, 3, 2, 1, 0, time.UTC),
		Duration:  1500 * time.Millisecond,
		Protocol:  "HTTP/1.1",
		Method:    "POST",
		Authority: "reviews.shop.svc.cluster.local:9080",
		Path:      "/api/v1/reviews?limit=5&x=y",
		Scheme:    "http",
		RequestHeaders: HTTPHeaders{
			"User-Agent":     {"curl/8.5.0"},
			"Referer":        {"https://example.com/"},
			"X-Request-Id":   {"6b0ec1f4"},
			"X-Multi":        {"a", "b"},
			"X-Empty":        {""},
			"Content-Length": {"12"},
		},
		ResponseHeaders:                HTTPHeaders{"Content-Type": {"application/grpc"}},
		ResponseTrailers:               HTTPHeaders{"Grpc-Status": {"14"}},
		ResponseCode:                   503,
		ResponseFlags:                  "UF,URX",
		ResponseCodeDetails:            "upstream_reset_before_response_started{connection_failure}",
		ConnectionTerminationDetails:   "",
		UpstreamTransportFailureReason: "connection_refused",
		BytesReceived:                  12,
		BytesSent:                      95,
		UpstreamHost:                   "10.1.0.7:9080",
		UpstreamCluster:                "outbound|9080||reviews.shop.svc.cluster.local",
		UpstreamLocal:                  netip.MustParseAddrPort("10.1.0.3:41000"),
		DownstreamLocal:                netip.MustParseAddrPort("10.1.0.3:9080"),
		DownstreamRemote:               netip.MustParseAddrPort("10.1.0.9:52000"),
		DownstreamDirect:               netip.MustParseAddrPort("10.1.0.9:52000"),
		RequestedServerName:            "outbound_.9080_._.reviews",
		RouteName:                      "default",
		Attempts:                       2,
		GRPCStatus:                     "14",
		PeerCertificates: []*x509.Certificate{{Subject: pkix.Name{CommonName: "web"}, URIs: []*url.URL{spiffe},
			DNSNames: []string{"web.shop"}, Raw: []byte("peer")}},
		LocalCertificate: &x509.Certificate{Subject: pkix.Name{Organization: []string{"strait"}}},
		DynamicMetadata:  map[string]*structpb.Struct{"envoy.filters.http.rbac": md},
	}
}

func tcpRecord() *Record {
	return &Record{
		Start:            time.Date(2026, 5, 4, 3, 2, 1, 0, time.UTC),
		Duration:         time.Second,
		BytesReceived:    100,
		BytesSent:        200,
		UpstreamHost:     "[2001:db8::1]:5432",
		UpstreamCluster:  "outbound|5432||db.shop.svc.cluster.local",
		DownstreamLocal:  netip.MustParseAddrPort("10.1.0.3:5432"),
		DownstreamRemote: netip.MustParseAddrPort("10.1.0.9:40000"),
		Attempts:         1,
	}
}

func TestEval(t *testing.T) {
	tests := []struct {
		expr string
		tcp  bool
		want bool // Match
	}{
		// request.*
		{expr: `request.path == "/api/v1/reviews?limit=5&x=y"`, want: true},
		{expr: `request.url_path == "/api/v1/reviews"`, want: true},
		{expr: `request.query == "limit=5&x=y"`, want: true},
		{expr: `request.host == "reviews.shop.svc.cluster.local:9080"`, want: true},
		{expr: `request.host.startsWith("reviews.")`, want: true},
		{expr: `request.scheme == "http"`, want: true},
		{expr: `request.method == "POST"`, want: true},
		{expr: `request.referer == "https://example.com/"`, want: true},
		{expr: `request.useragent.contains("curl")`, want: true},
		{expr: `request.id == "6b0ec1f4"`, want: true},
		{expr: `request.protocol == "HTTP/1.1"`, want: true},
		{expr: `request.time == timestamp("2026-05-04T03:02:01Z")`, want: true},
		{expr: `request.time.getFullYear() == 2026`, want: true},
		{expr: `request.duration > duration("1s")`, want: true},
		{expr: `request.duration < duration("1s")`, want: false},
		{expr: `request.size == 12`, want: true},
		{expr: `request.total_size > request.size`, want: true},
		{expr: `request.headers_bytes > 0`, want: true},
		// headers: lower-case, case-insensitive, multi-valued, pseudo-headers, absent
		{expr: `request.headers["user-agent"] == "curl/8.5.0"`, want: true},
		{expr: `request.headers["User-Agent"] == "curl/8.5.0"`, want: true},
		{expr: `request.headers["x-multi"] == "a,b"`, want: true},
		{expr: `request.headers["x-empty"] == ""`, want: true},
		{expr: `request.headers[":method"] == "POST"`, want: true},
		{expr: `request.headers[":authority"] == request.host`, want: true},
		{expr: `request.headers["x-missing"] == "v"`, want: false},
		{expr: `request.headers["x-missing"] != "v"`, want: false}, // an error either way
		{expr: `"x-missing" in request.headers`, want: false},
		{expr: `!("x-missing" in request.headers)`, want: true},
		{expr: `has(request.headers.x)`, want: false},
		{expr: `"x-empty" in request.headers`, want: true},
		{expr: `"x-multi" in request.headers`, want: true},
		{expr: `request.headers.exists(k, k == "referer")`, want: true},
		{expr: `request.headers.all(k, k.size() > 0)`, want: true},
		{expr: `size(request.headers) == 10`, want: true},
		{expr: `request.headers[1] == "x"`, want: false},
		// response.*
		{expr: `response.code >= 500`, want: true},
		{expr: `response.code == 503 && response.code_details.startsWith("upstream_reset")`, want: true},
		{expr: `response.flags == 0x20 + 0x8000`, want: true}, // UF | URX
		{expr: `response.flags > 0u`, want: true},
		{expr: `response.grpc_status == 14`, want: true},
		{expr: `response.headers["content-type"] == "application/grpc"`, want: true},
		{expr: `response.headers[":status"] == "503"`, want: true},
		{expr: `"grpc-status" in response.headers`, want: false},
		{expr: `response.trailers["grpc-status"] == "14"`, want: true},
		{expr: `response.size == 95`, want: true},
		{expr: `response.total_size > 95`, want: true},
		// source / destination / connection / upstream / xds / metadata
		{expr: `source.address == "10.1.0.9:52000" && source.port == 52000`, want: true},
		{expr: `destination.address == "10.1.0.3:9080" && destination.port == 9080`, want: true},
		{expr: `connection.mtls`, want: true},
		{expr: `connection.requested_server_name.startsWith("outbound_")`, want: true},
		{expr: `connection.uri_san_peer_certificate == "spiffe://cluster.local/ns/shop/sa/web"`, want: true},
		{expr: `connection.dns_san_peer_certificate == "web.shop"`, want: true},
		{expr: `connection.subject_peer_certificate == "CN=web"`, want: true},
		{expr: `connection.subject_local_certificate == "O=strait"`, want: true},
		{expr: `size(connection.sha256_peer_certificate_digest) == 64`, want: true},
		{expr: `has(connection.uri_san_local_certificate)`, want: false},
		{expr: `has(connection.termination_details)`, want: false},
		{expr: `upstream.address == "10.1.0.7:9080" && upstream.port == 9080`, want: true},
		{expr: `upstream.local_address == "10.1.0.3:41000"`, want: true},
		{expr: `upstream.transport_failure_reason == "connection_refused"`, want: true},
		{expr: `upstream.request_attempt_count == 2u`, want: true},
		{expr: `upstream.request_attempt_count == 2`, want: true}, // cross-type numeric comparison
		{expr: `xds.cluster_name.endsWith("reviews.shop.svc.cluster.local")`, want: true},
		{expr: `xds.route_name == "default"`, want: true},
		{expr: `metadata.filter_metadata["envoy.filters.http.rbac"]["shadow_effective_policy_id"] == "p1"`, want: true},
		{expr: `metadata.filter_metadata["envoy.filters.http.rbac"].n == 3.0`, want: true},
		{expr: `"request" in request`, want: false},
		{expr: `has(request.host)`, want: true},
		// type errors and non-bool results never match
		{expr: `response.code == "503"`, want: false},
		{expr: `request.host`, want: false},
		{expr: `request.method + 1 == 2`, want: false},
		{expr: `1 / 0 == 1`, want: false},
		// TCP: no HTTP attributes
		{expr: `response.code >= 500`, tcp: true, want: false},
		{expr: `!has(response.code)`, tcp: true, want: true},
		{expr: `has(request.headers)`, tcp: true, want: false},
		{expr: `has(request.size)`, tcp: true, want: false},
		{expr: `request.duration == duration("1s")`, tcp: true, want: true},
		{expr: `response.flags == 0`, tcp: true, want: true},
		{expr: `upstream.address == "[2001:db8::1]:5432" && upstream.port == 5432`, tcp: true, want: true},
		{expr: `connection.mtls`, tcp: true, want: false},
		{expr: `!connection.mtls`, tcp: true, want: true},
		{expr: `has(metadata.filter_metadata)`, tcp: true, want: false},
	}
	for _, tc := range tests {
		p, err := Compile(tc.expr)
		if err != nil {
			t.Errorf("Compile(%s): %v", tc.expr, err)
			continue
		}
		r := httpRecord()
		if tc.tcp {
			r = tcpRecord()
		}
		if got := p.Match(r); got != tc.want {
			v, err := p.Eval(r)
			t.Errorf("%s (tcp %v) = %v, want %v (value %v, error %v)", tc.expr, tc.tcp, got, tc.want, v, err)
		}
	}
}

func TestText(t *testing.T) {
	tests := []struct {
		expr, want string
		ok         bool
	}{
		{`request.host`, "reviews.shop.svc.cluster.local:9080", true},
		{`string(destination.port)`, "9080", true},
		{`destination.port`, "9080", true},
		{`upstream.request_attempt_count`, "2", true},
		{`connection.mtls`, "true", true},
		{`request.duration`, "1.5s", true},
		{`request.headers["x-missing"]`, "", false},
		{`request.headers`, "", false},
		{`request.headers["x-request-id"] + "-" + request.method`, "6b0ec1f4-POST", true},
		{`response.code >= 500 ? "error" : "ok"`, "error", true},
	}
	for _, tc := range tests {
		p, err := Compile(tc.expr)
		if err != nil {
			t.Fatalf("Compile(%s): %v", tc.expr, err)
		}
		got, ok := p.Text(httpRecord())
		if got != tc.want || ok != tc.ok {
			t.Errorf("Text(%s) = %q, %v; want %q, %v", tc.expr, got, ok, tc.want, tc.ok)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct{ expr, want string }{
		{``, "empty"},
		{`response.code >=`, "Syntax error"},
		{`foo == 1`, "undeclared reference to 'foo'"},
		{`request.foo == "x"`, "attribute request.foo: not supported"},
		{`xds.node.id == "x"`, "attribute xds.node: not supported"},
		{`connection.tls_version == "TLSv1.3"`, "attribute connection.tls_version: not supported"},
		{`has(filter_state.x)`, "attribute filter_state: not supported"},
		{`request.host == 1 +`, "Syntax error"},
		{`"a".matches("(")`, "error parsing regexp"},
		{strings.Repeat("(", 40) + "1" + strings.Repeat(")", 40) + " == 1", "recursion"},
		{strings.Repeat("a", MaxExpressionLength+1), "size"},
		{"1" + strings.Repeat(" + 1", MaxNodes) + " == 2", ""},
	}
	for _, tc := range tests {
		_, err := Compile(tc.expr)
		if err == nil {
			t.Errorf("Compile(%.60s) succeeded, want an error", tc.expr)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Compile(%.60s) = %v, want it to contain %q", tc.expr, err, tc.want)
		}
	}
	if _, err := CompileBool(`1 + 2`); err == nil || !strings.Contains(err.Error(), "not bool") {
		t.Errorf("CompileBool(1 + 2) = %v, want a type error", err)
	}
	for _, ok := range []string{`response.code >= 500`, `request.headers["x"] == "y"`, `[1, 2].all(request, request > 0)`} {
		if _, err := CompileBool(ok); err != nil {
			t.Errorf("CompileBool(%s): %v", ok, err)
		}
	}
}

// TestCostLimit: an expression whose evaluation exceeds the cost limit fails (does not match)
// instead of running on.
func TestCostLimit(t *testing.T) {
	p, err := Compile(`[1,2,3,4,5,6,7,8,9,10].all(a, [1,2,3,4,5,6,7,8,9,10].all(b, [1,2,3,4,5,6,7,8,9,10].all(c,
		[1,2,3,4,5,6,7,8,9,10].all(d, [1,2,3,4,5,6,7,8,9,10].all(e, request.host.size() > 0)))))`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Eval(httpRecord()); err == nil || !strings.Contains(err.Error(), "cost limit") {
		t.Fatalf("Eval = %v, want the cost limit error", err)
	}
	if p.Match(httpRecord()) {
		t.Fatal("an expression over the cost limit matched")
	}
}

func TestFlagBits(t *testing.T) {
	for _, tc := range []struct {
		flags string
		want  int64
	}{{"", 0}, {"-", 0}, {"UH", 0x2}, {"UF,URX", 0x8020}, {"NR", 0x100}, {"DC", 0x4000}, {"XX", 0}} {
		if got := flagBits(tc.flags); got != tc.want {
			t.Errorf("flagBits(%q) = %#x, want %#x", tc.flags, got, tc.want)
		}
	}
}
