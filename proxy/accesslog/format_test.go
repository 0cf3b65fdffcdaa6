package accesslog

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"math"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strait-mesh/strait/proxy/attributes"
	"github.com/strait-mesh/strait/proxy/xdsfield"
)

// knownEntry is a finished request with every field set.
func knownEntry() *Entry {
	peer, _ := url.Parse("spiffe://cluster.local/ns/default/sa/client")
	local, _ := url.Parse("spiffe://cluster.local/ns/default/sa/server")
	md, _ := structpb.NewStruct(map[string]any{"key": "v", "n": 3, "obj": map[string]any{"inner": "x"}})
	return &Entry{
		Start:    time.Date(2024, 5, 4, 17, 22, 59, 46_123_456, time.UTC),
		Duration: 142*time.Millisecond + 900*time.Microsecond,
		Protocol: "HTTP/1.1", Method: "GET", Authority: "reviews:9080", Path: "/reviews/0?x=1", Scheme: "http",
		RequestHeaders: attributes.HTTPHeaders{"User-Agent": {"curl/8.5.0"}, "X-Request-Id": {"4e43168a-01e6-907c-ba17-2f72fad816a8"},
			"X-Forwarded-For": {"10.1.0.9"}, "Empty": {""}},
		ResponseHeaders:  attributes.HTTPHeaders{"X-Envoy-Upstream-Service-Time": {"141"}, "Content-Type": {"text/plain"}},
		ResponseTrailers: attributes.HTTPHeaders{"Grpc-Status": {"0"}},
		ResponseCode:     200, ResponseCodeDetails: "via_upstream",
		BytesReceived: 5, BytesSent: 437,
		UpstreamHost: "10.244.1.15:9080", UpstreamCluster: "outbound|9080||reviews.default.svc.cluster.local",
		UpstreamLocal:       netip.MustParseAddrPort("10.244.2.19:60236"),
		DownstreamLocal:     netip.MustParseAddrPort("10.96.81.152:9080"),
		DownstreamRemote:    netip.MustParseAddrPort("10.244.2.19:55058"),
		DownstreamDirect:    netip.MustParseAddrPort("127.0.0.6:40000"),
		RequestedServerName: "outbound_.9080_._.reviews.default.svc.cluster.local",
		RouteName:           "default", Attempts: 2, GRPCStatus: "14",
		PeerCertificates: []*x509.Certificate{{URIs: []*url.URL{peer}}},
		LocalCertificate: &x509.Certificate{URIs: []*url.URL{local}},
		DynamicMetadata:  map[string]*structpb.Struct{"ns": md},
	}
}

func render(t *testing.T, format string, e *Entry) string {
	t.Helper()
	f, err := CompileText(format, false)
	if err != nil {
		t.Fatalf("%q: %v", format, err)
	}
	return string(f.Append(nil, e))
}

func TestOperators(t *testing.T) {
	full, empty := knownEntry(), &Entry{}
	cases := []struct{ op, full, empty string }{
		{"%START_TIME%", "2024-05-04T17:22:59.046Z", "-"},
		{"%START_TIME(%Y/%m/%dT%H:%M:%S%z %s)%", "2024/05/04T17:22:59+0000 1714843379", "-"},
		{"%START_TIME(%s.%3f)%", "1714843379.046", "-"},
		{"%START_TIME(%s.%6f)%", "1714843379.046123", "-"},
		{"%START_TIME(%E3S|%F %T|%b %a %j)%", "59.046|2024-05-04 17:22:59|May Sat 125", "-"},
		{"%REQ(:METHOD)%", "GET", "-"},
		{"%REQ(:PATH)%", "/reviews/0?x=1", "-"},
		{"%REQ(:AUTHORITY)%", "reviews:9080", "-"},
		{"%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%", "/reviews/0?x=1", "-"},
		{"%REQ(user-agent)%", "curl/8.5.0", "-"},
		{"%REQ(USER-AGENT):4%", "curl", "-"},
		{"%REQ(EMPTY)%", "-", "-"},
		{"%REQUEST_HEADER(X-REQUEST-ID)%", "4e43168a-01e6-907c-ba17-2f72fad816a8", "-"},
		{"%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%", "141", "-"},
		{"%RESP(X-MISSING?CONTENT-TYPE)%", "text/plain", "-"},
		{"%TRAILER(GRPC-STATUS)%", "0", "-"},
		{"%PROTOCOL%", "HTTP/1.1", "-"},
		{"%RESPONSE_CODE%", "200", "0"},
		{"%RESPONSE_FLAGS%", "-", "-"},
		{"%RESPONSE_CODE_DETAILS%", "via_upstream", "-"},
		{"%CONNECTION_TERMINATION_DETAILS%", "-", "-"},
		{"%UPSTREAM_TRANSPORT_FAILURE_REASON%", "-", "-"},
		{"%BYTES_RECEIVED%", "5", "0"},
		{"%BYTES_SENT%", "437", "0"},
		{"%DURATION%", "142", "0"},
		{"%UPSTREAM_HOST%", "10.244.1.15:9080", "-"},
		{"%UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", "10.244.1.15", "-"},
		{"%UPSTREAM_REMOTE_PORT%", "9080", "-"},
		{"%UPSTREAM_CLUSTER%", "outbound|9080||reviews.default.svc.cluster.local", "-"},
		{"%UPSTREAM_CLUSTER_RAW%", "outbound|9080||reviews.default.svc.cluster.local", "-"},
		{"%UPSTREAM_LOCAL_ADDRESS%", "10.244.2.19:60236", "-"},
		{"%DOWNSTREAM_LOCAL_ADDRESS%", "10.96.81.152:9080", "-"},
		{"%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%", "10.96.81.152", "-"},
		{"%DOWNSTREAM_LOCAL_PORT%", "9080", "-"},
		{"%DOWNSTREAM_REMOTE_ADDRESS%", "10.244.2.19:55058", "-"},
		{"%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%", "127.0.0.6:40000", "-"},
		{"%DOWNSTREAM_PEER_URI_SAN%", "spiffe://cluster.local/ns/default/sa/client", "-"},
		{"%DOWNSTREAM_LOCAL_URI_SAN%", "spiffe://cluster.local/ns/default/sa/server", "-"},
		{"%REQUESTED_SERVER_NAME%", "outbound_.9080_._.reviews.default.svc.cluster.local", "-"},
		{"%ROUTE_NAME%", "default", "-"},
		{"%UPSTREAM_REQUEST_ATTEMPT_COUNT%", "2", "0"},
		{"%GRPC_STATUS%", "Unavailable", "-"},
		{"%GRPC_STATUS(SNAKE_STRING)%", "UNAVAILABLE", "-"},
		{"%GRPC_STATUS_NUMBER%", "14", "-"},
		{"%DYNAMIC_METADATA(ns:key)%", "v", "-"},
		{"%DYNAMIC_METADATA(ns:obj:inner)%", "x", "-"},
		{"%DYNAMIC_METADATA(ns:obj)%", `{"inner":"x"}`, "-"},
		{"%DYNAMIC_METADATA(ns:missing)%", "-", "-"},
		{"%DYNAMIC_METADATA(other)%", "-", "-"},
		{"%ENVIRONMENT(STRAIT_ACCESSLOG_TEST_UNSET)%", "-", "-"},
	}
	for _, tc := range cases {
		if got := render(t, tc.op, full); got != tc.full {
			t.Errorf("%s = %q, want %q", tc.op, got, tc.full)
		}
		if got := render(t, tc.op, empty); got != tc.empty {
			t.Errorf("%s of an empty entry = %q, want %q", tc.op, got, tc.empty)
		}
	}
	e := knownEntry()
	e.ResponseFlags = "UF,URX"
	if got := render(t, "%RESPONSE_FLAGS%", e); got != "UF,URX" {
		t.Errorf("flags %q", got)
	}
}

// TestIstioDefaultText checks Istio's default TEXT line byte for byte (the shape of the sidecar
// line in Istio's documentation).
func TestIstioDefaultText(t *testing.T) {
	want := `[2024-05-04T17:22:59.046Z] "GET /reviews/0?x=1 HTTP/1.1" 200 - via_upstream - "-" 5 437 142 141 ` +
		`"10.1.0.9" "curl/8.5.0" "4e43168a-01e6-907c-ba17-2f72fad816a8" "reviews:9080" "10.244.1.15:9080" ` +
		`outbound|9080||reviews.default.svc.cluster.local 10.244.2.19:60236 10.96.81.152:9080 10.244.2.19:55058 ` +
		"outbound_.9080_._.reviews.default.svc.cluster.local default\n"
	if got := render(t, IstioTextFormat, knownEntry()); got != want {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
	tcp := &Entry{Start: time.Date(2024, 5, 4, 17, 22, 59, 0, time.UTC), Duration: 3 * time.Second, BytesReceived: 12, BytesSent: 34,
		UpstreamHost: "10.11.0.1:3306", UpstreamCluster: "outbound|3306||db", DownstreamLocal: netip.MustParseAddrPort("10.96.11.1:3306"),
		DownstreamRemote: netip.MustParseAddrPort("10.1.0.9:5000"), Attempts: 1}
	wantTCP := `[2024-05-04T17:22:59.000Z] "- - -" 0 - - - "-" 12 34 3000 - "-" "-" "-" "-" "10.11.0.1:3306" outbound|3306||db - 10.96.11.1:3306 10.1.0.9:5000 - -` + "\n"
	if got := render(t, IstioTextFormat, tcp); got != wantTCP {
		t.Errorf("TCP got\n%q\nwant\n%q", got, wantTCP)
	}
}

func TestJSONTypes(t *testing.T) {
	st := &structpb.Struct{Fields: map[string]*structpb.Value{}}
	for k, v := range IstioJSONFormat() {
		st.Fields[k] = structpb.NewStringValue(v)
	}
	st.Fields["mixed"] = structpb.NewStringValue("%DURATION%ms %REQ(X-NONE)%")
	st.Fields["md"] = structpb.NewStringValue("%DYNAMIC_METADATA(ns)%")
	st.Fields["port"] = structpb.NewStringValue("%DOWNSTREAM_LOCAL_PORT%")
	st.Fields["nested"] = structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{"code": structpb.NewStringValue("%RESPONSE_CODE%")}})
	st.Fields["const"] = structpb.NewNumberValue(7)
	f, err := CompileJSON(st, true, false)
	if err != nil {
		t.Fatal(err)
	}
	line := f.Append(nil, knownEntry())
	if line[len(line)-1] != '\n' {
		t.Fatalf("no newline: %q", line)
	}
	var got map[string]any
	if err := json.Unmarshal(line, &got); err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	want := map[string]any{
		"start_time": "2024-05-04T17:22:59.046Z", "method": "GET", "path": "/reviews/0?x=1", "protocol": "HTTP/1.1",
		"response_code": 200.0, "response_flags": "-", "response_code_details": "via_upstream",
		"connection_termination_details": nil, "bytes_received": 5.0, "bytes_sent": 437.0, "duration": 142.0,
		"upstream_service_time": "141", "x_forwarded_for": "10.1.0.9", "user_agent": "curl/8.5.0",
		"request_id": "4e43168a-01e6-907c-ba17-2f72fad816a8", "authority": "reviews:9080", "upstream_host": "10.244.1.15:9080",
		"upstream_cluster": "outbound|9080||reviews.default.svc.cluster.local", "upstream_local_address": "10.244.2.19:60236",
		"downstream_local_address": "10.96.81.152:9080", "downstream_remote_address": "10.244.2.19:55058",
		"requested_server_name": "outbound_.9080_._.reviews.default.svc.cluster.local", "route_name": "default",
		"upstream_transport_failure_reason": nil, "mixed": "142ms -", "port": 9080.0,
		"md":     map[string]any{"key": "v", "n": 3.0, "obj": map[string]any{"inner": "x"}},
		"nested": map[string]any{"code": 200.0}, "const": 7.0,
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || !jsonEqual(g, w) {
			t.Errorf("%s = %#v (present %v), want %#v", k, g, ok, w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d keys, want %d: %s", len(got), len(want), line)
	}
	// Keys are sorted, so lines are stable.
	if !strings.HasPrefix(string(line), `{"authority":"reviews:9080","bytes_received":5,`) {
		t.Errorf("key order: %s", line)
	}
	// The legacy json_format renders every value as a string.
	legacy, _ := CompileJSON(&structpb.Struct{Fields: map[string]*structpb.Value{
		"code": structpb.NewStringValue("%RESPONSE_CODE%"), "none": structpb.NewStringValue("%ROUTE_NAME%")}}, false, false)
	if got := string(legacy.Append(nil, &Entry{ResponseCode: 404})); got != `{"code":"404","none":"-"}`+"\n" {
		t.Errorf("legacy json: %s", got)
	}
	// omit_empty_values leaves missing keys out.
	omit, _ := CompileJSON(&structpb.Struct{Fields: map[string]*structpb.Value{
		"code": structpb.NewStringValue("%RESPONSE_CODE%"), "none": structpb.NewStringValue("%ROUTE_NAME%")}}, true, true)
	if got := string(omit.Append(nil, &Entry{ResponseCode: 404})); got != `{"code":404}`+"\n" {
		t.Errorf("omit_empty_values: %s", got)
	}
	// Strings are escaped.
	esc, _ := CompileJSON(&structpb.Struct{Fields: map[string]*structpb.Value{"ua": structpb.NewStringValue("%REQ(USER-AGENT)%")}}, true, false)
	if got := string(esc.Append(nil, &Entry{RequestHeaders: attributes.HTTPHeaders{"User-Agent": {"a\"b\\c\x01\xff"}}})); got != `{"ua":"a\"b\\c\u0001\ufffd"}`+"\n" {
		t.Errorf("escaping: %s", got)
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func TestCustomText(t *testing.T) {
	e := knownEntry()
	e.ResponseFlags = "URX"
	got := render(t, `[%START_TIME%] "%REQ(:METHOD)% %REQ(:PATH):8%" %RESPONSE_CODE% retry_attempts=%UPSTREAM_REQUEST_ATTEMPT_COUNT% `+
		`flags=%RESPONSE_FLAGS% details=%RESPONSE_CODE_DETAILS% peer=%DOWNSTREAM_PEER_URI_SAN%`+"\n", e)
	want := `[2024-05-04T17:22:59.046Z] "GET /reviews" 200 retry_attempts=2 flags=URX details=via_upstream ` +
		"peer=spiffe://cluster.local/ns/default/sa/client\n"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestFormatErrors(t *testing.T) {
	for _, f := range []string{"%BOGUS%", "100% sure", "%REQ%", "%REQ()%", "%REQ(A?B?C)%", "%START_TIME(%Y", "%DURATION:%", "%GRPC_STATUS(BAD)%", "%", "%%"} {
		_, err := CompileText(f, false)
		if err == nil {
			t.Errorf("%q accepted", f)
		}
	}
	var ue *xdsfield.UnsupportedError
	if _, err := CompileText("x %NOT_AN_OPERATOR% y", false); !errors.As(err, &ue) || !strings.Contains(err.Error(), "%NOT_AN_OPERATOR%") {
		t.Errorf("unknown operator: %v", err)
	}
}

// TestDefaultTimeCached checks %START_TIME%'s cached second against time.Format: times within
// one second, the next second, out of order, another zone, and years the cache does not hold.
func TestDefaultTimeCached(t *testing.T) {
	base := time.Date(2024, 5, 4, 17, 22, 59, 46_123_456, time.UTC)
	for _, tm := range []time.Time{
		base, base.Add(900 * time.Millisecond), base.Add(time.Second), base, base.Add(-time.Hour * 24 * 366),
		base.In(time.FixedZone("x", 5*3600)), time.Date(12345, 1, 2, 3, 4, 5, 6e6, time.UTC), time.Date(1, 1, 1, 0, 0, 0, 999e6, time.UTC), base,
	} {
		want := tm.UTC().Format("2006-01-02T15:04:05.000Z")
		if tm.UTC().Year() > 9999 {
			want = "12345-01-02T03:04:05.006Z"
		}
		if got := string(appendDefaultTime(nil, tm)); got != want {
			t.Errorf("%v: %q, want %q", tm, got, want)
		}
	}
}

func TestAppendInt(t *testing.T) {
	for _, v := range []int64{0, 7, 9, 10, 99, 100, 200, 65535, 999_999_999, 1_000_000_000, -1, -12345, math.MaxInt64, math.MinInt64} {
		if got, want := string(appendInt([]byte("x"), v)), "x"+strconv.FormatInt(v, 10); got != want {
			t.Errorf("appendInt(%d) = %q, want %q", v, got, want)
		}
	}
}
