package telemetry

import (
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	uuidv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/request_id/uuid/v3"
	metadatav3 "github.com/envoyproxy/go-control-plane/envoy/type/metadata/v3"
	tracingv3 "github.com/envoyproxy/go-control-plane/envoy/type/tracing/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	meshconfig "istio.io/api/mesh/v1alpha1"
	tpb "istio.io/api/telemetry/v1alpha1"

	"github.com/strait-mesh/strait/controlplane/translate/provider"
)

// Envoy's tracer names and istiod's defaults.
const (
	tracerZipkin        = "envoy.tracers.zipkin"
	tracerOpenTelemetry = "envoy.tracers.opentelemetry"
	// defaultSampling is istiod's PILOT_TRACE_SAMPLING: 1% of requests without a decision.
	defaultSampling = 1.0
	// zipkinEndpoint is the collector path istiod uses when the provider names none.
	zipkinEndpoint = "/api/v2/spans"
	// defaultOTelHTTPTimeout is the OTLP/HTTP export timeout when the provider sets none
	// (Envoy requires one).
	defaultOTelHTTPTimeout = 5 * time.Second
	// legacyZipkinAddress is Istio's default defaultConfig.tracing.zipkin.address.
	legacyZipkinAddress = "zipkin.istio-system:9411"
	// RBAC's shadow-rule metadata keys behind Istio's dry-run tags.
	rbacFilter = "envoy.filters.http.rbac"
)

// tracingSpec is the merged tracing of one mode.
type tracingSpec struct {
	provider                  *meshconfig.MeshConfig_ExtensionProvider
	providerName              string
	disabled                  bool
	sampling                  *float64
	customTags                map[string]*tpb.Tracing_CustomTag
	useRequestID              bool
	enableIstioTags           bool
	disableContextPropagation bool
}

// buildTracing returns the tracing of mode's connection managers, and the request ID extension
// that goes with it; both nil when tracing is off.
func buildTracing(in Inputs, w Workload, ap applied, mode tpb.WorkloadMode, report func(error)) (*hcmv3.HttpConnectionManager_Tracing, *hcmv3.RequestIDExtension) {
	defaults := in.Mesh.GetDefaultProviders().GetTracing()
	var entries []*tpb.Tracing
	var owners []string
	for i, s := range ap.specs {
		for _, t := range s.GetTracing() {
			entries = append(entries, t)
			owners = append(owners, ap.names[i])
		}
	}
	pc := in.Mesh.GetDefaultConfig()
	if len(entries) == 0 && len(defaults) == 0 {
		return legacyTracing(in, w, report)
	}
	spec := tracingSpec{useRequestID: true, enableIstioTags: true}
	if len(defaults) > 0 {
		spec.providerName = defaults[0]
	}
	owner := "MeshConfig defaultProviders.tracing"
	for i, t := range entries {
		if t.GetMatch() != nil && !appliesTo(t.GetMatch().GetMode(), mode) {
			continue
		}
		if names := providerNames(t.GetProviders()); len(names) > 0 {
			spec.providerName, owner = names[0], "Telemetry "+owners[i]
		}
		if v := t.GetDisableSpanReporting(); v != nil {
			spec.disabled = v.GetValue()
		}
		if t.GetCustomTags() != nil {
			spec.customTags = t.GetCustomTags()
		}
		if v := t.GetRandomSamplingPercentage(); v != nil {
			s := v.GetValue()
			spec.sampling = &s
		}
		if v := t.GetUseRequestIdForTraceSampling(); v != nil {
			spec.useRequestID = v.GetValue()
		}
		if v := t.GetEnableIstioTags(); v != nil {
			spec.enableIstioTags = v.GetValue()
		}
		if v := t.GetDisableContextPropagation(); v != nil {
			spec.disableContextPropagation = v.GetValue()
		}
	}
	if spec.providerName == "" || spec.disabled {
		return nil, nil
	}
	p := lookupProvider(in.Mesh, spec.providerName)
	if p == nil {
		report(fmt.Errorf("%s: tracing provider %q is not one of MeshConfig's extensionProviders; no spans are reported", owner, spec.providerName))
		return nil, nil
	}
	t, err := tracerFor(in, w, p)
	if err != nil {
		report(fmt.Errorf("%s: tracing provider %q: %w; no spans are reported", owner, spec.providerName, err))
		return nil, nil
	}
	sampling := legacySampling(pc)
	if spec.sampling != nil {
		sampling = *spec.sampling
	}
	setSampling(t, sampling)
	t.CustomTags = customTags(w, spec.enableIstioTags, spec.customTags, pc.GetTracing().GetCustomTags())
	if t.MaxPathTagLength == nil && pc.GetTracing().GetMaxPathTagLength() != 0 {
		t.MaxPathTagLength = wrapperspb.UInt32(pc.GetTracing().GetMaxPathTagLength())
	}
	t.NoContextPropagation = spec.disableContextPropagation
	return t, requestID(spec.useRequestID)
}

// legacyTracing is istiod's tracing without the Telemetry API: when enableTracing is on, spans
// go to defaultConfig.tracing's zipkin collector (Envoy's bootstrap tracer in Istio; here the
// collector must be a service in the registry), sampled at defaultConfig.tracing.sampling.
// The collector of Istio's default address (zipkin.istio-system:9411) missing from the registry
// is not reported: the mesh then simply has no tracing backend.
func legacyTracing(in Inputs, w Workload, report func(error)) (*hcmv3.HttpConnectionManager_Tracing, *hcmv3.RequestIDExtension) {
	pc := in.Mesh.GetDefaultConfig()
	z := pc.GetTracing().GetZipkin()
	if !in.Mesh.GetEnableTracing() || z == nil || z.GetAddress() == "" {
		return nil, nil
	}
	host, cluster, err := legacyCollector(in, z.GetAddress())
	if err != nil {
		if z.GetAddress() != legacyZipkinAddress {
			report(fmt.Errorf("MeshConfig defaultConfig.tracing.zipkin.address: %w; no spans are reported", err))
		}
		return nil, nil
	}
	t := &hcmv3.HttpConnectionManager_Tracing{Provider: &tracev3.Tracing_Http{Name: tracerZipkin,
		ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: mustAny(zipkinConfig(host, cluster, "", true))}}}
	if w.Router {
		t.SpawnUpstreamSpan = wrapperspb.Bool(true)
	}
	setSampling(t, legacySampling(pc))
	enable := true
	if v := pc.GetTracing().GetEnableIstioTags(); v != nil {
		enable = v.GetValue()
	}
	t.CustomTags = customTags(w, enable, nil, pc.GetTracing().GetCustomTags())
	if n := pc.GetTracing().GetMaxPathTagLength(); n != 0 {
		t.MaxPathTagLength = wrapperspb.UInt32(n)
	}
	return t, requestID(true)
}

// legacyCollector resolves defaultConfig.tracing.zipkin.address ("host:port", the host a
// registry hostname or a Kubernetes short name "name.namespace") to its outbound cluster.
func legacyCollector(in Inputs, address string) (host, cluster string, err error) {
	h, p, err := net.SplitHostPort(address)
	if err != nil {
		return "", "", fmt.Errorf("address %q: want host:port", address)
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return "", "", fmt.Errorf("address %q: bad port", address)
	}
	candidates := []string{h}
	if strings.Count(h, ".") == 1 {
		candidates = append(candidates, h+".svc."+in.DomainSuffix)
	}
	var firstErr error
	for _, c := range candidates {
		host, cluster, err := provider.Cluster(c, uint32(n), in.Services)
		if err == nil {
			return host, cluster, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return "", "", firstErr
}

// legacySampling is defaultConfig.tracing.sampling, or istiod's default; above 100 is 1%, as
// istiod reads it.
func legacySampling(pc *meshconfig.ProxyConfig) float64 {
	s := pc.GetTracing().GetSampling()
	switch {
	case s == 0:
		return defaultSampling
	case s > 100:
		return defaultSampling
	}
	return s
}

// setSampling sets Istio's sampling: every client-forced and overall request, and the given
// percentage of requests without a decision.
func setSampling(t *hcmv3.HttpConnectionManager_Tracing, random float64) {
	t.ClientSampling = &typev3.Percent{Value: 100}
	t.RandomSampling = &typev3.Percent{Value: random}
	t.OverallSampling = &typev3.Percent{Value: 100}
}

// requestID is the UUID request ID extension istiod sets with tracing.
func requestID(useForSampling bool) *hcmv3.RequestIDExtension {
	return &hcmv3.RequestIDExtension{TypedConfig: mustAny(&uuidv3.UuidRequestIdConfig{
		PackTraceReason:              wrapperspb.Bool(true),
		UseRequestIdForTraceSampling: wrapperspb.Bool(useForSampling),
	})}
}

// tracerFor builds the connection manager tracing of a zipkin or opentelemetry provider, with
// its collector's cluster (provider.Cluster, the lookup ext_authz providers use).
func tracerFor(in Inputs, w Workload, p *meshconfig.MeshConfig_ExtensionProvider) (*hcmv3.HttpConnectionManager_Tracing, error) {
	t := &hcmv3.HttpConnectionManager_Tracing{}
	if w.Router {
		t.SpawnUpstreamSpan = wrapperspb.Bool(true)
	}
	var name string
	var maxTag uint32
	switch kind := p.GetProvider().(type) {
	case *meshconfig.MeshConfig_ExtensionProvider_Zipkin:
		z := kind.Zipkin
		host, cluster, err := provider.Cluster(z.GetService(), z.GetPort(), in.Services)
		if err != nil {
			return nil, err
		}
		name, maxTag = tracerZipkin, z.GetMaxTagLength()
		t.Provider = &tracev3.Tracing_Http{Name: name, ConfigType: &tracev3.Tracing_Http_TypedConfig{
			TypedConfig: mustAny(zipkinConfig(host, cluster, z.GetPath(), !z.GetEnable_64BitTraceId()))}}
	case *meshconfig.MeshConfig_ExtensionProvider_Opentelemetry:
		o := kind.Opentelemetry
		host, cluster, err := provider.Cluster(o.GetService(), o.GetPort(), in.Services)
		if err != nil {
			return nil, err
		}
		oc := otelConfig(serviceCluster(w), host, cluster, o)
		name, maxTag = tracerOpenTelemetry, o.GetMaxTagLength()
		t.Provider = &tracev3.Tracing_Http{Name: name, ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: mustAny(oc)}}
	default:
		return nil, fmt.Errorf("a provider of type %s does not trace (want zipkin or opentelemetry)", providerType(p))
	}
	if maxTag != 0 {
		t.MaxPathTagLength = wrapperspb.UInt32(maxTag)
	}
	return t, nil
}

// zipkinConfig is istiod's ZipkinConfig: JSON v2 spans to the collector's cluster.
func zipkinConfig(host, cluster, path string, traceID128 bool) *tracev3.ZipkinConfig {
	if path == "" {
		path = zipkinEndpoint
	}
	return &tracev3.ZipkinConfig{
		CollectorCluster:         cluster,
		CollectorEndpoint:        path,
		CollectorEndpointVersion: tracev3.ZipkinConfig_HTTP_JSON,
		CollectorHostname:        host,
		TraceId_128Bit:           traceID128,
		SharedSpanContext:        wrapperspb.Bool(false),
	}
}

// otelConfig is istiod's OpenTelemetryConfig: OTLP over gRPC (Envoy's gRPC client to the
// collector's cluster, with its authority) or, with http set, over HTTP to the collector's
// cluster. The HTTP service's http_uri.uri is the full URI Envoy's HttpUri documents,
// http://HOST:PORT/PATH: istiod writes HOST/PATH without a scheme, which Envoy's exporter
// tolerates but strait-proxy refuses as not a URI; both send the same path, and the Host
// header carries the port.
func otelConfig(serviceName, host, cluster string, o *meshconfig.MeshConfig_ExtensionProvider_OpenTelemetryTracingProvider) *tracev3.OpenTelemetryConfig {
	oc := &tracev3.OpenTelemetryConfig{ServiceName: serviceName}
	if h := o.GetHttp(); h != nil {
		base := url.URL{Scheme: "http", Host: net.JoinHostPort(host, strconv.FormatUint(uint64(o.GetPort()), 10))}
		uri := base.JoinPath(h.GetPath()).String() // MeshConfig validation keeps ? and # out of the path
		timeout := h.GetTimeout()
		if timeout == nil {
			timeout = durationpb.New(defaultOTelHTTPTimeout)
		}
		oc.HttpService = &corev3.HttpService{
			HttpUri: &corev3.HttpUri{Uri: uri, HttpUpstreamType: &corev3.HttpUri_Cluster{Cluster: cluster}, Timeout: timeout},
		}
		for _, hd := range h.GetHeaders() {
			oc.HttpService.RequestHeadersToAdd = append(oc.HttpService.RequestHeadersToAdd, &corev3.HeaderValueOption{
				AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
				Header:       &corev3.HeaderValue{Key: hd.GetName(), Value: hd.GetValue()}})
		}
		return oc
	}
	oc.GrpcService = &corev3.GrpcService{
		TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: cluster, Authority: host}},
		Timeout:         o.GetGrpc().GetTimeout(),
	}
	for _, hd := range o.GetGrpc().GetInitialMetadata() {
		oc.GrpcService.InitialMetadata = append(oc.GrpcService.InitialMetadata, &corev3.HeaderValue{Key: hd.GetName(), Value: hd.GetValue()})
	}
	return oc
}

// serviceCluster is the span's service name: the node's cluster, else Istio's service cluster
// "<canonical service>.<namespace>".
func serviceCluster(w Workload) string {
	if w.ServiceCluster != "" {
		return w.ServiceCluster
	}
	return canonicalService(w) + "." + w.Namespace
}

// canonicalService follows Istio's fallbacks: service.istio.io/canonical-name,
// app.kubernetes.io/name, app, the workload name.
func canonicalService(w Workload) string {
	for _, k := range []string{"service.istio.io/canonical-name", "app.kubernetes.io/name", "app"} {
		if v := w.Labels[k]; v != "" {
			return v
		}
	}
	if w.Name != "" {
		return w.Name
	}
	return "unknown"
}

// customTags are the span tags istiod adds, sorted by name: Istio's own (canonical service and
// revision, mesh, namespace and cluster, and the dry-run authorization results) when enabled,
// then the Telemetry's custom tags, or without them defaultConfig.tracing's.
func customTags(w Workload, istio bool, tags map[string]*tpb.Tracing_CustomTag, legacy map[string]*meshconfig.Tracing_CustomTag) []*tracingv3.CustomTag {
	var out []*tracingv3.CustomTag
	if istio {
		orUnknown := func(v, def string) string {
			if v == "" {
				return def
			}
			return v
		}
		ns := orUnknown(w.Namespace, "default")
		for _, kv := range [][2]string{
			{"istio.canonical_revision", orUnknown(w.Labels["service.istio.io/canonical-revision"], "latest")},
			{"istio.canonical_service", orUnknown(w.Labels["service.istio.io/canonical-name"], "unknown")},
			{"istio.mesh_id", orUnknown(w.MeshID, "unknown")},
			{"istio.namespace", ns},
			{"istio.cluster_id", orUnknown(w.ClusterID, "unknown")},
		} {
			out = append(out, &tracingv3.CustomTag{Tag: kv[0], Type: &tracingv3.CustomTag_Literal_{Literal: &tracingv3.CustomTag_Literal{Value: kv[1]}}})
		}
		for _, kv := range [][2]string{
			{"istio.authorization.dry_run.allow_policy.name", "istio_dry_run_allow_shadow_effective_policy_id"},
			{"istio.authorization.dry_run.allow_policy.result", "istio_dry_run_allow_shadow_engine_result"},
			{"istio.authorization.dry_run.deny_policy.name", "istio_dry_run_deny_shadow_effective_policy_id"},
			{"istio.authorization.dry_run.deny_policy.result", "istio_dry_run_deny_shadow_engine_result"},
		} {
			out = append(out, &tracingv3.CustomTag{Tag: kv[0], Type: &tracingv3.CustomTag_Metadata_{Metadata: &tracingv3.CustomTag_Metadata{
				Kind: &metadatav3.MetadataKind{Kind: &metadatav3.MetadataKind_Request_{Request: &metadatav3.MetadataKind_Request{}}},
				MetadataKey: &metadatav3.MetadataKey{Key: rbacFilter, Path: []*metadatav3.MetadataKey_PathSegment{
					{Segment: &metadatav3.MetadataKey_PathSegment_Key{Key: kv[1]}}}},
			}}})
		}
	}
	if len(tags) > 0 {
		for name, t := range tags {
			ct := &tracingv3.CustomTag{Tag: name}
			switch v := t.GetType().(type) {
			case *tpb.Tracing_CustomTag_Literal:
				ct.Type = &tracingv3.CustomTag_Literal_{Literal: &tracingv3.CustomTag_Literal{Value: v.Literal.GetValue()}}
			case *tpb.Tracing_CustomTag_Environment:
				ct.Type = &tracingv3.CustomTag_Environment_{Environment: &tracingv3.CustomTag_Environment{Name: v.Environment.GetName(), DefaultValue: v.Environment.GetDefaultValue()}}
			case *tpb.Tracing_CustomTag_Header:
				ct.Type = &tracingv3.CustomTag_RequestHeader{RequestHeader: &tracingv3.CustomTag_Header{Name: v.Header.GetName(), DefaultValue: v.Header.GetDefaultValue()}}
			case *tpb.Tracing_CustomTag_Formatter:
				ct.Type = &tracingv3.CustomTag_Value{Value: v.Formatter.GetValue()}
			default:
				continue
			}
			out = append(out, ct)
		}
	} else {
		for name, t := range legacy {
			ct := &tracingv3.CustomTag{Tag: name}
			switch v := t.GetType().(type) {
			case *meshconfig.Tracing_CustomTag_Literal:
				ct.Type = &tracingv3.CustomTag_Literal_{Literal: &tracingv3.CustomTag_Literal{Value: v.Literal.GetValue()}}
			case *meshconfig.Tracing_CustomTag_Environment:
				ct.Type = &tracingv3.CustomTag_Environment_{Environment: &tracingv3.CustomTag_Environment{Name: v.Environment.GetName(), DefaultValue: v.Environment.GetDefaultValue()}}
			case *meshconfig.Tracing_CustomTag_Header:
				ct.Type = &tracingv3.CustomTag_RequestHeader{RequestHeader: &tracingv3.CustomTag_Header{Name: v.Header.GetName(), DefaultValue: v.Header.GetDefaultValue()}}
			default:
				continue
			}
			out = append(out, ct)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Tag < out[j].Tag })
	return out
}

// providerType names a provider's type ("zipkin", "envoyFileAccessLog").
func providerType(p *meshconfig.MeshConfig_ExtensionProvider) string {
	m := p.ProtoReflect()
	if fd := m.WhichOneof(m.Descriptor().Oneofs().ByName("provider")); fd != nil {
		return fd.JSONName()
	}
	return "typeless"
}
