package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	envoytypev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	meshconfig "istio.io/api/mesh/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"
	"sigs.k8s.io/yaml"

	"github.com/strait-mesh/strait/internal/vocab"
	"github.com/strait-mesh/strait/proxy/accesslog"
)

// DefaultMeshConfig returns Istio's default MeshConfig: the values istiod uses for fields a mesh
// config file does not set. Each call returns a new message that the caller may modify.
func DefaultMeshConfig() *meshconfig.MeshConfig {
	return &meshconfig.MeshConfig{
		EnableTracing:         true,
		AccessLogEncoding:     meshconfig.MeshConfig_TEXT,
		IngressService:        "istio-ingressgateway",
		IngressControllerMode: meshconfig.MeshConfig_STRICT,
		IngressClass:          "istio",
		TrustDomain:           "cluster.local",
		TrustDomainAliases:    []string{},
		EnableAutoMtls:        wrapperspb.Bool(true),
		OutboundTrafficPolicy: &meshconfig.MeshConfig_OutboundTrafficPolicy{
			Mode: meshconfig.MeshConfig_OutboundTrafficPolicy_ALLOW_ANY,
		},
		InboundTrafficPolicy: &meshconfig.MeshConfig_InboundTrafficPolicy{
			Mode: meshconfig.MeshConfig_InboundTrafficPolicy_PASSTHROUGH,
		},
		LocalityLbSetting:              &networking.LocalityLoadBalancerSetting{Enabled: wrapperspb.Bool(true)},
		DefaultConfig:                  DefaultProxyConfig(),
		RootNamespace:                  "istio-system",
		ProxyListenPort:                vocab.OutboundCapturePort,
		ProxyInboundListenPort:         vocab.InboundCapturePort,
		ConnectTimeout:                 durationpb.New(10 * time.Second),
		ProtocolDetectionTimeout:       durationpb.New(0),
		DefaultServiceExportTo:         []string{"*"},
		DefaultVirtualServiceExportTo:  []string{"*"},
		DefaultDestinationRuleExportTo: []string{"*"},
		DnsRefreshRate:                 durationpb.New(60 * time.Second),
		EnablePrometheusMerge:          wrapperspb.Bool(true),
		DefaultProviders:               &meshconfig.MeshConfig_DefaultProviders{},
		ExtensionProviders: []*meshconfig.MeshConfig_ExtensionProvider{
			{Name: "prometheus", Provider: &meshconfig.MeshConfig_ExtensionProvider_Prometheus{
				Prometheus: &meshconfig.MeshConfig_ExtensionProvider_PrometheusMetricsProvider{},
			}},
			{Name: "envoy", Provider: &meshconfig.MeshConfig_ExtensionProvider_EnvoyFileAccessLog{
				EnvoyFileAccessLog: &meshconfig.MeshConfig_ExtensionProvider_EnvoyFileAccessLogProvider{Path: "/dev/stdout"},
			}},
		},
	}
}

// DefaultProxyConfig returns Istio's default ProxyConfig (MeshConfig.defaultConfig).
func DefaultProxyConfig() *meshconfig.ProxyConfig {
	return &meshconfig.ProxyConfig{
		ConfigPath:                      "./etc/istio/proxy",
		ClusterName:                     &meshconfig.ProxyConfig_ServiceCluster{ServiceCluster: "istio-proxy"},
		DrainDuration:                   durationpb.New(45 * time.Second),
		TerminationDrainDuration:        durationpb.New(5 * time.Second),
		ProxyAdminPort:                  vocab.AdminPort,
		ControlPlaneAuthPolicy:          meshconfig.AuthenticationPolicy_MUTUAL_TLS,
		DiscoveryAddress:                "istiod.istio-system.svc:15012",
		StatNameLength:                  189,
		StatusPort:                      vocab.StatusPort,
		ProxyStatsMatcher:               &meshconfig.ProxyConfig_ProxyStatsMatcher{},
		HoldApplicationUntilProxyStarts: wrapperspb.Bool(false),
		Tracing: &meshconfig.Tracing{Tracer: &meshconfig.Tracing_Zipkin_{
			Zipkin: &meshconfig.Tracing_Zipkin{Address: "zipkin.istio-system:9411"},
		}},
	}
}

// MaxMeshConfigSize bounds the mesh config file.
const MaxMeshConfigSize = 1 << 20

// LoadMeshConfig reads a MeshConfig from a YAML or JSON file (the "mesh" key of Istio's
// istio ConfigMap) and fills every field it does not set with DefaultMeshConfig's value. Nested
// messages merge field by field (setting defaultConfig.drainDuration keeps the other proxy
// defaults); lists and maps replace the default, except extensionProviders, which are added to
// the default providers (a provider with a default's name replaces it), as istiod does. Decoding is strict: unknown fields, wrong types
// and invalid enum values are errors naming the field. An empty path returns the defaults.
func LoadMeshConfig(path string) (*meshconfig.MeshConfig, error) {
	if path == "" {
		return DefaultMeshConfig(), nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading mesh config: %w", err)
	}
	mc, err := ParseMeshConfig(path, data)
	if err != nil {
		return nil, err
	}
	return mc, nil
}

// ParseMeshConfig is LoadMeshConfig for data already read; origin names it in errors.
func ParseMeshConfig(origin string, data []byte) (mc *meshconfig.MeshConfig, err error) {
	defer func() {
		if r := recover(); r != nil {
			mc, err = nil, &Error{Origin: origin, Kind: "MeshConfig", Msg: fmt.Sprintf("internal error decoding mesh config: %v", r)}
		}
	}()
	merr := func(field, format string, args ...any) *Error {
		return &Error{Origin: origin, Kind: "MeshConfig", Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	if len(data) > MaxMeshConfigSize {
		return nil, merr("", "file is %d bytes, more than the limit of %d", len(data), MaxMeshConfigSize)
	}
	mc = DefaultMeshConfig()
	if blankYAML(data) {
		return mc, nil
	}
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, merr("", "parsing YAML: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return nil, merr("", "parsing: %v", err)
	}
	if tree == nil {
		return mc, nil
	}
	if treeDepth(tree, 0) > MaxDepth {
		return nil, merr("", "nesting deeper than %d levels", MaxDepth)
	}
	user := &meshconfig.MeshConfig{}
	w := &walker{maxDepth: MaxDepth}
	normalized := w.message(user.ProtoReflect().Descriptor(), tree, "", 0)
	if len(w.errs) > 0 {
		errs := make([]error, 0, len(w.errs))
		for _, e := range w.errs {
			errs = append(errs, merr(e.path, "%s", e.msg))
		}
		return nil, errors.Join(errs...)
	}
	if js, err = json.Marshal(normalized); err != nil {
		return nil, merr("", "encoding: %v", err)
	}
	if err := protojson.Unmarshal(js, user); err != nil {
		return nil, merr("", "decoding: %v", err)
	}
	defaultProviders := mc.ExtensionProviders
	mergeSet(mc.ProtoReflect(), user.ProtoReflect(), tree.(map[string]any))
	if len(user.ExtensionProviders) > 0 {
		mc.ExtensionProviders = mergeProviders(defaultProviders, user.ExtensionProviders)
	}
	if err := validateMeshConfig(origin, mc); err != nil {
		return nil, err
	}
	return mc, nil
}

// mergeSet copies into dst the fields of src that the JSON object set names. Message fields that
// are objects in set merge recursively; everything else replaces dst's value.
func mergeSet(dst, src protoreflect.Message, set map[string]any) {
	fields := src.Descriptor().Fields()
	for key, raw := range set {
		fd := fields.ByJSONName(key)
		if fd == nil {
			fd = fields.ByTextName(key)
		}
		if fd == nil {
			continue
		}
		if raw == nil {
			dst.Clear(fd)
			continue
		}
		sub, isObj := raw.(map[string]any)
		if fd.Message() != nil && !fd.IsList() && !fd.IsMap() && isObj && wellKnown(fd.Message().FullName()) == nil && dst.Has(fd) {
			mergeSet(dst.Mutable(fd).Message(), src.Get(fd).Message(), sub)
			continue
		}
		if src.Has(fd) {
			dst.Set(fd, src.Get(fd))
		} else {
			dst.Clear(fd) // explicitly set to its zero value
		}
	}
}

// mergeProviders returns the default providers not overridden by name, followed by the user's.
func mergeProviders(defaults, user []*meshconfig.MeshConfig_ExtensionProvider) []*meshconfig.MeshConfig_ExtensionProvider {
	names := map[string]bool{}
	for _, p := range user {
		names[p.GetName()] = true
	}
	var out []*meshconfig.MeshConfig_ExtensionProvider
	for _, p := range defaults {
		if !names[p.GetName()] {
			out = append(out, p)
		}
	}
	return append(out, user...)
}

// validateMeshConfig checks the fields Strait reads.
func validateMeshConfig(origin string, mc *meshconfig.MeshConfig) error {
	var fe fieldErrs
	if mc.TrustDomain != "" {
		if msg := fqdnErr(mc.TrustDomain); msg != "" {
			fe.add("trustDomain", "%s", msg)
		}
	}
	if !isDNS1123Label(mc.RootNamespace) {
		fe.add("rootNamespace", "invalid namespace %s: %s", quoteShort(mc.RootNamespace), dns1123LabelMsg)
	}
	validateExportTo(&fe, "defaultServiceExportTo", mc.DefaultServiceExportTo)
	validateExportTo(&fe, "defaultVirtualServiceExportTo", mc.DefaultVirtualServiceExportTo)
	validateExportTo(&fe, "defaultDestinationRuleExportTo", mc.DefaultDestinationRuleExportTo)
	validateDuration(&fe, "connectTimeout", mc.ConnectTimeout)
	if r := mc.DefaultHttpRetryPolicy; r != nil {
		validateRetries(&fe, "defaultHttpRetryPolicy", r)
	}
	validateDuration(&fe, "dnsRefreshRate", mc.DnsRefreshRate)
	if mc.ProxyListenPort > 65535 {
		fe.add("proxyListenPort", "port %d must be in 1-65535", mc.ProxyListenPort)
	}
	if mc.ProxyInboundListenPort > 65535 {
		fe.add("proxyInboundListenPort", "port %d must be in 1-65535", mc.ProxyInboundListenPort)
	}
	validateAccessLogFormat(&fe, mc)
	providers := map[string]bool{}
	for i, p := range mc.ExtensionProviders {
		switch {
		case p.GetName() == "":
			fe.add(fmt.Sprintf("extensionProviders[%d].name", i), "name is required")
		case providers[p.GetName()]:
			fe.add(fmt.Sprintf("extensionProviders[%d].name", i), "duplicate provider name %s", quoteShort(p.GetName()))
		}
		providers[p.GetName()] = true
		switch kind := p.GetProvider().(type) {
		case nil:
			fe.add(fmt.Sprintf("extensionProviders[%d]", i), "a provider type (such as prometheus or envoyFileAccessLog) is required")
		case *meshconfig.MeshConfig_ExtensionProvider_EnvoyExtAuthzHttp:
			validateExtAuthzHTTP(&fe, fmt.Sprintf("extensionProviders[%d].envoyExtAuthzHttp", i), kind.EnvoyExtAuthzHttp)
		case *meshconfig.MeshConfig_ExtensionProvider_EnvoyExtAuthzGrpc:
			validateExtAuthzGRPC(&fe, fmt.Sprintf("extensionProviders[%d].envoyExtAuthzGrpc", i), kind.EnvoyExtAuthzGrpc)
		default:
			validateTelemetryProvider(&fe, i, p)
		}
	}
	validateDefaultProviders(&fe, mc)
	if pc := mc.DefaultConfig; pc != nil {
		validateDuration(&fe, "defaultConfig.drainDuration", pc.DrainDuration)
		validateDuration(&fe, "defaultConfig.terminationDrainDuration", pc.TerminationDrainDuration)
		validateLegacyTracing(&fe, pc.GetTracing())
		if pc.DiscoveryAddress != "" {
			if i := strings.LastIndexByte(pc.DiscoveryAddress, ':'); i <= 0 {
				fe.add("defaultConfig.discoveryAddress", "discoveryAddress %s must be host:port", quoteShort(pc.DiscoveryAddress))
			}
		}
		for _, f := range []struct {
			name string
			v    int32
		}{{"proxyAdminPort", pc.ProxyAdminPort}, {"statusPort", pc.StatusPort}} {
			if f.v < 0 || f.v > 65535 {
				fe.add("defaultConfig."+f.name, "port %d must be in 0-65535", f.v)
			}
		}
	}
	if len(fe.errs) == 0 {
		return nil
	}
	errs := make([]error, 0, len(fe.errs))
	for _, e := range fe.errs {
		errs = append(errs, &Error{Origin: origin, Kind: "MeshConfig", Field: e.path, Msg: e.msg})
	}
	return errors.Join(errs...)
}

// validateAccessLogFormat checks accessLogFormat with the parser strait-proxy uses, so that a
// format the proxies would refuse (an unknown command operator, a stray '%') is an error naming
// the field instead of a NACK on every proxy: for TEXT a format string, for JSON an object whose
// values are format strings (or nested objects). Istio would fall back to its default JSON format
// for an object that does not parse; strait refuses it.
func validateAccessLogFormat(fe *fieldErrs, mc *meshconfig.MeshConfig) {
	f := mc.GetAccessLogFormat()
	if f == "" {
		return
	}
	switch mc.GetAccessLogEncoding() {
	case meshconfig.MeshConfig_JSON:
		var st structpb.Struct
		if err := protojson.Unmarshal([]byte(f), &st); err != nil {
			fe.add("accessLogFormat", "accessLogEncoding is JSON but the format is not a JSON object: %v", err)
			return
		}
		if _, err := accesslog.CompileJSON(&st, true, false); err != nil {
			fe.add("accessLogFormat", "%v", err)
		}
	default:
		if _, err := accesslog.CompileText(f, false); err != nil {
			fe.add("accessLogFormat", "%v", err)
		}
	}
}

// validateExtAuthzHTTP checks an envoyExtAuthzHttp provider (path p) with the rules of Istio's
// validation (pkg/config/validation ValidateExtensionProviderEnvoyExtAuthzHTTP): service and
// port required, statusOnError one of Envoy's HTTP status codes, pathPrefix starting with '/'.
// Strait also refuses what Envoy would refuse in the generated filter: a timeout below 1ms,
// maxRequestBytes 0, additional header names that are not HTTP tokens and values with CR, LF
// or NUL.
func validateExtAuthzHTTP(fe *fieldErrs, p string, c *meshconfig.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationHttpProvider) {
	validateExtAuthzCommon(fe, p, c.GetService(), c.GetPort(), c.GetTimeout(), c.GetStatusOnError(), c.GetIncludeRequestBodyInCheck())
	if pp := c.GetPathPrefix(); pp != "" {
		if _, err := url.Parse(pp); err != nil || !strings.HasPrefix(pp, "/") {
			fe.add(p+".pathPrefix", "invalid pathPrefix %s: want a URL path starting with '/'", quoteShort(pp))
		}
	}
	for _, k := range sortedStringKeys(c.GetIncludeAdditionalHeadersInCheck()) {
		kp := p + ".includeAdditionalHeadersInCheck[" + quoteShort(k) + "]"
		validateHeaderName(fe, kp, k)
		if v := c.GetIncludeAdditionalHeadersInCheck()[k]; strings.ContainsAny(v, "\r\n\x00") {
			fe.add(kp, "header value must not contain CR, LF or NUL")
		}
	}
}

// validateExtAuthzGRPC checks an envoyExtAuthzGrpc provider (path p) as Istio does
// (ValidateExtensionProviderEnvoyExtAuthzGRPC), with Strait's additions of validateExtAuthzHTTP.
func validateExtAuthzGRPC(fe *fieldErrs, p string, c *meshconfig.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationGrpcProvider) {
	validateExtAuthzCommon(fe, p, c.GetService(), c.GetPort(), c.GetTimeout(), c.GetStatusOnError(), c.GetIncludeRequestBodyInCheck())
}

// validateExtAuthzCommon checks the fields both external authorization providers have.
func validateExtAuthzCommon(fe *fieldErrs, p, service string, port uint32, timeout *durationpb.Duration, status string,
	body *meshconfig.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationRequestBody) {
	validateExtAuthzService(fe, p+".service", service)
	if port == 0 || port > 65535 {
		fe.add(p+".port", "port %d must be in 1-65535", port)
	}
	validateDuration(fe, p+".timeout", timeout)
	if status != "" {
		code, err := strconv.ParseInt(status, 10, 32)
		if _, known := envoytypev3.StatusCode_name[int32(code)]; err != nil || !known || code == 0 {
			fe.add(p+".statusOnError", "invalid statusOnError %s: want an HTTP status code Envoy knows, such as \"403\" or \"503\"", quoteShort(status))
		}
	}
	if body != nil && body.GetMaxRequestBytes() == 0 {
		fe.add(p+".includeRequestBodyInCheck.maxRequestBytes", "maxRequestBytes must be at least 1")
	}
}

// validateExtAuthzService checks a provider's service: "<hostname>" (a DNS name or an IP) or
// "<namespace>/<hostname>", as Istio's validateExtensionProviderService.
func validateExtAuthzService(fe *fieldErrs, p, service string) {
	switch {
	case service == "":
		fe.add(p, "service is required: the hostname of a service in the registry, or namespace/hostname")
	case strings.Contains(service, "/"):
		if msg := namespacedHostErr(service, true, false); msg != "" {
			fe.add(p, "%s", msg)
		}
	case isIP(service):
	default:
		if msg := fqdnErr(service); msg != "" {
			fe.add(p, "%s", msg)
		}
	}
}
