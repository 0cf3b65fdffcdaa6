package extauthz

import (
	"errors"
	"strings"
	"testing"
	"time"

	mutationv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/grpcunary"
	"github.com/strait-mesh/strait/proxy/xdsfield"
	"github.com/strait-mesh/strait/proxy/xdspb"
	pextauthzv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/ext_authz/v3"
)

func exact(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}, IgnoreCase: true}
}

func prefix(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: s}, IgnoreCase: true}
}

func list(ms ...*matcherv3.StringMatcher) *matcherv3.ListStringMatcher {
	return &matcherv3.ListStringMatcher{Patterns: ms}
}

// shadowPolicyMetadata returns the dynamic metadata of a request or connection for which the
// shadow RBAC filter rbacFilter matched the policy named v ("": none matched), as filters read
// it.
func shadowPolicyMetadata(rbacFilter string) func(v string) func(string) *structpb.Struct {
	return func(v string) func(string) *structpb.Struct {
		return func(ns string) *structpb.Struct {
			if ns != rbacFilter || v == "" {
				return nil
			}
			return &structpb.Struct{Fields: map[string]*structpb.Value{"istio_ext_authz_shadow_effective_policy_id": structpb.NewStringValue(v)}}
		}
	}
}

// istioHTTP is the ext_authz config istiod emits for an envoyExtAuthzHttp provider.
func istioHTTP(cluster string) *extauthzv3.ExtAuthz {
	return testenv.IstioExtAuthzHTTP(cluster, &extauthzv3.AuthorizationRequest{
		AllowedHeaders: list(exact("x-ext-authz"), prefix("x-pass-")),
		HeadersToAdd:   []*corev3.HeaderValue{{Key: "x-added", Value: "by-proxy"}},
	})
}

func TestCompileIstioShapes(t *testing.T) {
	c, err := Compile(xdspb.MustFrom[*pextauthzv3.ExtAuthz](istioHTTP("outbound|8000||ext-authz.foo.svc.cluster.local")), "f")
	if err != nil {
		t.Fatal(err)
	}
	if c.GRPC || c.Cluster != "outbound|8000||ext-authz.foo.svc.cluster.local" || c.Timeout != 600*time.Second ||
		c.StatusOnError != 403 || c.StatPrefix != "ext_authz." || !c.IngestMetadata || c.Body != nil {
		t.Fatalf("http config %+v", c)
	}
	if !c.client.match("location") || !c.client.match("set-cookie") || c.client.match("x-other") {
		t.Error("allowed_client_headers: the list plus Envoy's defaults")
	}

	c, err = Compile(xdspb.MustFrom[*pextauthzv3.ExtAuthz](testenv.IstioExtAuthzGRPC("outbound|9000||ext-authz.foo.svc.cluster.local")), "f")
	if err != nil {
		t.Fatal(err)
	}
	if !c.GRPC || c.Cluster != "outbound|9000||ext-authz.foo.svc.cluster.local" || c.grpc.Authority != "ext-authz.foo.svc.cluster.local" ||
		c.Timeout != 600*time.Second || c.grpc.MaxReceive != grpcunary.DefaultMaxReceiveBytes {
		t.Fatalf("grpc config %+v", c)
	}

	// Metadata gating: only a request whose RBAC shadow policy is a CUSTOM one is checked.
	md := shadowPolicyMetadata("envoy.filters.http.rbac")
	if !c.Enabled(md("istio-ext-authz-ns[foo]-policy[bar]-rule[0]")) || c.Enabled(md("")) || c.Enabled(md("other")) {
		t.Error("filter_enabled_metadata")
	}
}

func TestCompileDefaultsAndOptions(t *testing.T) {
	cfg := testenv.IstioExtAuthzGRPC("c")
	cfg.GetGrpcService().Timeout = nil
	cfg.GetGrpcService().GetEnvoyGrpc().Authority = ""
	cfg.GetGrpcService().GetEnvoyGrpc().MaxReceiveMessageLength = wrapperspb.UInt32(1000)
	cfg.StatusOnError = &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable}
	cfg.StatPrefix = "waf"
	cfg.WithRequestBody = &extauthzv3.BufferSettings{MaxRequestBytes: 100, AllowPartialMessage: true, PackAsBytes: true}
	cfg.FilterEnabled = &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: 0}}
	cfg.FilterEnabledMetadata = nil
	cfg.DenyAtDisable = &corev3.RuntimeFeatureFlag{DefaultValue: wrapperspb.Bool(true), RuntimeKey: "k"}
	cfg.EnableDynamicMetadataIngestion = wrapperspb.Bool(false)
	cfg.ChargeClusterResponseStats = wrapperspb.Bool(false)
	cfg.EmitClientSpan = wrapperspb.Bool(true)
	cfg.MetadataContextNamespaces = []string{"envoy.filters.http.jwt_authn"}
	cfg.IncludeTlsSession = true
	cfg.ClearRouteCache = true
	cfg.ClearRouteCacheHeaders = []string{"X-Route"}
	c, err := Compile(xdspb.MustFrom[*pextauthzv3.ExtAuthz](cfg), "f")
	if err != nil {
		t.Fatal(err)
	}
	if c.Timeout != DefaultTimeout || c.grpc.Authority != "c" || c.grpc.MaxReceive != 1000 || c.StatusOnError != 503 ||
		c.StatPrefix != "ext_authz.waf." || *c.Body != (BodySettings{MaxBytes: 100, AllowPartial: true, PackAsBytes: true}) ||
		!c.DenyAtDisable || c.IngestMetadata || !c.includeTLSSession || c.clearRouteHeaders[0] != "x-route" {
		t.Fatalf("config %+v", c)
	}
	if c.Enabled(func(string) *structpb.Struct { return nil }) {
		t.Error("filter_enabled 0% enabled the filter")
	}
	// An unknown status_on_error is 403, as Envoy's toErrorCode.
	cfg.StatusOnError = &typev3.HttpStatus{Code: 42}
	if c, err = Compile(xdspb.MustFrom[*pextauthzv3.ExtAuthz](cfg), "f"); err != nil || c.StatusOnError != 403 {
		t.Fatalf("status_on_error 42: %v %v", c, err)
	}
}

func TestCompileRefuses(t *testing.T) {
	mod := func(base func(string) *extauthzv3.ExtAuthz, f func(*extauthzv3.ExtAuthz)) *extauthzv3.ExtAuthz {
		c := base("c")
		f(c)
		return c
	}
	nacks := []struct {
		field string
		cfg   *extauthzv3.ExtAuthz
	}{
		{"f.typed_metadata_context_namespaces", mod(testenv.IstioExtAuthzGRPC, func(c *extauthzv3.ExtAuthz) { c.TypedMetadataContextNamespaces = []string{"x"} })},
		{"f.route_metadata_context_namespaces", mod(testenv.IstioExtAuthzGRPC, func(c *extauthzv3.ExtAuthz) { c.RouteMetadataContextNamespaces = []string{"x"} })},
		{"f.route_typed_metadata_context_namespaces", mod(testenv.IstioExtAuthzGRPC, func(c *extauthzv3.ExtAuthz) { c.RouteTypedMetadataContextNamespaces = []string{"x"} })},
		{"f.include_peer_certificate", mod(testenv.IstioExtAuthzGRPC, func(c *extauthzv3.ExtAuthz) { c.IncludePeerCertificate = true })},
		{"f.bootstrap_metadata_labels_key", mod(testenv.IstioExtAuthzGRPC, func(c *extauthzv3.ExtAuthz) { c.BootstrapMetadataLabelsKey = "labels" })},
		{"f.encode_raw_headers", mod(testenv.IstioExtAuthzGRPC, func(c *extauthzv3.ExtAuthz) { c.EncodeRawHeaders = true })},
		{"f.decoder_header_mutation_rules", mod(testenv.IstioExtAuthzGRPC, func(c *extauthzv3.ExtAuthz) {
			c.DecoderHeaderMutationRules = &mutationv3.HeaderMutationRules{DisallowAll: wrapperspb.Bool(true)}
		})},
		{"f.filter_metadata", mod(testenv.IstioExtAuthzGRPC, func(c *extauthzv3.ExtAuthz) { c.FilterMetadata = &structpb.Struct{} })},
		{"f.emit_filter_state_stats", mod(testenv.IstioExtAuthzGRPC, func(c *extauthzv3.ExtAuthz) { c.EmitFilterStateStats = true })},
		{"f.enforce_response_header_limits", mod(testenv.IstioExtAuthzGRPC, func(c *extauthzv3.ExtAuthz) { c.EnforceResponseHeaderLimits = true })},
		{"f.shadow_mode", mod(testenv.IstioExtAuthzGRPC, func(c *extauthzv3.ExtAuthz) { c.ShadowMode = true })},
		{"f.charge_cluster_response_stats", mod(testenv.IstioExtAuthzGRPC, func(c *extauthzv3.ExtAuthz) { c.ChargeClusterResponseStats = wrapperspb.Bool(true) })},
		{"f.transport_api_version", mod(testenv.IstioExtAuthzGRPC, func(c *extauthzv3.ExtAuthz) { c.TransportApiVersion = corev3.ApiVersion_V2 })},
		{"f.with_request_body.max_request_bytes", mod(testenv.IstioExtAuthzGRPC, func(c *extauthzv3.ExtAuthz) {
			c.WithRequestBody = &extauthzv3.BufferSettings{MaxRequestBytes: MaxRequestBytesLimit + 1}
		})},
		{"f.grpc_service.google_grpc", mod(testenv.IstioExtAuthzGRPC, func(c *extauthzv3.ExtAuthz) {
			c.Services = &extauthzv3.ExtAuthz_GrpcService{GrpcService: &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_GoogleGrpc_{
				GoogleGrpc: &corev3.GrpcService_GoogleGrpc{TargetUri: "x:1", StatPrefix: "s"}}}}
		})},
		{"f.grpc_service.retry_policy", mod(testenv.IstioExtAuthzGRPC, func(c *extauthzv3.ExtAuthz) { c.GetGrpcService().RetryPolicy = &corev3.RetryPolicy{} })},
		{"f.grpc_service.envoy_grpc.retry_policy", mod(testenv.IstioExtAuthzGRPC, func(c *extauthzv3.ExtAuthz) {
			c.GetGrpcService().GetEnvoyGrpc().RetryPolicy = &corev3.RetryPolicy{}
		})},
		{"f.http_service.retry_policy", mod(istioHTTP, func(c *extauthzv3.ExtAuthz) { c.GetHttpService().RetryPolicy = &corev3.RetryPolicy{} })},
		{"f.http_service.authorization_request.headers_to_add[0].raw_value", mod(istioHTTP, func(c *extauthzv3.ExtAuthz) {
			c.GetHttpService().GetAuthorizationRequest().HeadersToAdd[0].RawValue = []byte("x")
		})},
		{"f.allowed_headers.patterns[0].safe_regex.regex", mod(istioHTTP, func(c *extauthzv3.ExtAuthz) {
			c.AllowedHeaders = list(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{
				SafeRegex: &matcherv3.RegexMatcher{Regex: strings.Repeat("a{1000}", 100)}}})
		})},
		{"f.<unknown field>", mod(istioHTTP, func(c *extauthzv3.ExtAuthz) { c.ProtoReflect().SetUnknown([]byte{0xb8, 0x3e, 0x01}) })},
	}
	for _, tc := range nacks {
		t.Run(tc.field, func(t *testing.T) {
			_, err := Compile(xdspb.MustFrom[*pextauthzv3.ExtAuthz](tc.cfg), "f")
			var ue *xdsfield.UnsupportedError
			if tc.field == "f.allowed_headers.patterns[0].safe_regex.regex" {
				// A regex over the program size bound is a plain error naming the field.
				if err == nil || !strings.Contains(err.Error(), tc.field) {
					t.Fatalf("got %v", err)
				}
				return
			}
			if !errors.As(err, &ue) || ue.Field != tc.field {
				t.Fatalf("got %v, want an UnsupportedError naming %s", err, tc.field)
			}
		})
	}

	errs := []struct {
		name, want string
		cfg        *extauthzv3.ExtAuthz
	}{
		{"no service", "one of grpc_service or http_service", &extauthzv3.ExtAuthz{}},
		{"prefix and override", "only one of path_prefix and path_override", mod(istioHTTP, func(c *extauthzv3.ExtAuthz) { c.GetHttpService().PathOverride = "/x" })},
		{"bad prefix", "path_prefix", mod(istioHTTP, func(c *extauthzv3.ExtAuthz) { c.GetHttpService().PathPrefix = "check" })},
		{"no cluster", "server_uri.cluster: empty", mod(istioHTTP, func(c *extauthzv3.ExtAuthz) { c.GetHttpService().GetServerUri().HttpUpstreamType = nil })},
		{"no grpc cluster", "cluster_name: empty", mod(testenv.IstioExtAuthzGRPC, func(c *extauthzv3.ExtAuthz) { c.GetGrpcService().GetEnvoyGrpc().ClusterName = "" })},
		{"zero body", "max_request_bytes: must be greater than 0", mod(testenv.IstioExtAuthzGRPC, func(c *extauthzv3.ExtAuthz) { c.WithRequestBody = &extauthzv3.BufferSettings{} })},
		{"bad header to add", "headers_to_add[0].key", mod(istioHTTP, func(c *extauthzv3.ExtAuthz) {
			c.GetHttpService().GetAuthorizationRequest().HeadersToAdd[0].Key = "bad header"
		})},
		{"header to add: framing", "headers_to_add[0].key", mod(istioHTTP, func(c *extauthzv3.ExtAuthz) {
			c.GetHttpService().GetAuthorizationRequest().HeadersToAdd[0].Key = "content-length"
		})},
		{"bad metadata matcher", "filter_enabled_metadata.filter: empty", mod(istioHTTP, func(c *extauthzv3.ExtAuthz) { c.FilterEnabledMetadata.Filter = "" })},
	}
	for _, tc := range errs {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Compile(xdspb.MustFrom[*pextauthzv3.ExtAuthz](tc.cfg), "f"); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	// Compile does not modify its input.
	in := xdspb.MustFrom[*pextauthzv3.ExtAuthz](istioHTTP("c"))
	before := proto.Clone(in)
	if _, err := Compile(in, "f"); err != nil || !proto.Equal(in, before) {
		t.Fatalf("Compile changed its input or failed: %v", err)
	}
}
