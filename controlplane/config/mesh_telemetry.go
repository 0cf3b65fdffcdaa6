package config

import (
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	meshconfig "istio.io/api/mesh/v1alpha1"

	"github.com/strait-mesh/strait/proxy/accesslog"
)

// The MeshConfig side of the Telemetry API: the telemetry extension providers Strait translates,
// MeshConfig.defaultProviders, and the legacy defaultConfig.tracing. Provider types Strait does
// not translate (lightstep, datadog, stackdriver, opencensus, skywalking, the gRPC access log
// services, sds) are refused by name, so that no provider is accepted and then ignored.

// ProviderKind is what an extension provider is for.
type ProviderKind string

// The kinds of extension providers.
const (
	ProviderTracing   ProviderKind = "tracing"
	ProviderMetrics   ProviderKind = "metrics"
	ProviderAccessLog ProviderKind = "access logging"
	ProviderExtAuthz  ProviderKind = "external authorization"
)

// KindOfProvider returns what a provider of MeshConfig.extensionProviders is for: zipkin and
// opentelemetry trace, prometheus records metrics, envoyFileAccessLog logs, envoyExtAuthzHttp
// and envoyExtAuthzGrpc authorize. It is "" for a provider type Strait does not translate
// (validateMeshConfig refuses those).
func KindOfProvider(p *meshconfig.MeshConfig_ExtensionProvider) ProviderKind {
	switch p.GetProvider().(type) {
	case *meshconfig.MeshConfig_ExtensionProvider_Zipkin, *meshconfig.MeshConfig_ExtensionProvider_Opentelemetry:
		return ProviderTracing
	case *meshconfig.MeshConfig_ExtensionProvider_Prometheus:
		return ProviderMetrics
	case *meshconfig.MeshConfig_ExtensionProvider_EnvoyFileAccessLog:
		return ProviderAccessLog
	case *meshconfig.MeshConfig_ExtensionProvider_EnvoyExtAuthzHttp, *meshconfig.MeshConfig_ExtensionProvider_EnvoyExtAuthzGrpc:
		return ProviderExtAuthz
	}
	return ""
}

// providerTypeName is the field name of a provider's type, for messages.
func providerTypeName(p *meshconfig.MeshConfig_ExtensionProvider) string {
	m := p.ProtoReflect()
	if od := m.Descriptor().Oneofs().ByName("provider"); od != nil {
		if fd := m.WhichOneof(od); fd != nil {
			return fd.JSONName()
		}
	}
	return "?"
}

// validateTelemetryProvider checks provider i when it is one of the telemetry provider types,
// and refuses the types Strait does not translate.
func validateTelemetryProvider(fe *fieldErrs, i int, p *meshconfig.MeshConfig_ExtensionProvider) {
	base := fmt.Sprintf("extensionProviders[%d]", i)
	switch kind := p.GetProvider().(type) {
	case *meshconfig.MeshConfig_ExtensionProvider_Zipkin:
		z := kind.Zipkin
		pp := base + ".zipkin"
		validateExtAuthzService(fe, pp+".service", z.GetService())
		validateProviderPort(fe, pp+".port", z.GetPort())
		if path := z.GetPath(); path != "" && !strings.HasPrefix(path, "/") {
			fe.add(pp+".path", "path %s must start with '/'", quoteShort(path))
		}
		if z.GetTraceContextOption() != meshconfig.MeshConfig_ExtensionProvider_ZipkinTracingProvider_USE_B3 {
			fe.add(pp+".traceContextOption", "traceContextOption %s is not supported yet (only USE_B3)", z.GetTraceContextOption())
		}
		if z.GetTimeout() != nil || len(z.GetHeaders()) > 0 {
			fe.add(pp, "timeout and headers are not supported yet for zipkin")
		}
	case *meshconfig.MeshConfig_ExtensionProvider_Opentelemetry:
		o := kind.Opentelemetry
		pp := base + ".opentelemetry"
		validateExtAuthzService(fe, pp+".service", o.GetService())
		validateProviderPort(fe, pp+".port", o.GetPort())
		if h := o.GetHttp(); h != nil {
			if path := h.GetPath(); path != "" && strings.ContainsAny(path, "?#\r\n ") {
				fe.add(pp+".http.path", "path %s must be a URL path", quoteShort(path))
			}
			validateDuration(fe, pp+".http.timeout", h.GetTimeout())
			validateProviderHeaders(fe, pp+".http.headers", h.GetHeaders())
		}
		if g := o.GetGrpc(); g != nil {
			validateDuration(fe, pp+".grpc.timeout", g.GetTimeout())
			validateProviderHeaders(fe, pp+".grpc.initialMetadata", g.GetInitialMetadata())
		}
		if o.GetResourceDetectors() != nil {
			fe.add(pp+".resourceDetectors", "resourceDetectors are not supported yet")
		}
		if o.GetSampling() != nil {
			fe.add(pp+".dynatraceSampler", "custom samplers are not supported yet")
		}
		if o.GetServiceAttributeEnrichment() != 0 {
			fe.add(pp+".serviceAttributeEnrichment", "serviceAttributeEnrichment is not supported yet")
		}
	case *meshconfig.MeshConfig_ExtensionProvider_EnvoyFileAccessLog:
		f := kind.EnvoyFileAccessLog
		pp := base + ".envoyFileAccessLog"
		if strings.ContainsAny(f.GetPath(), "\x00\r\n") {
			fe.add(pp+".path", "path must not contain NUL, CR or LF")
		}
		if f.GetOmitEmptyValues() {
			fe.add(pp+".omitEmptyValues", "omitEmptyValues is not supported yet")
		}
		switch lf := f.GetLogFormat().GetLogFormat().(type) {
		case *meshconfig.MeshConfig_ExtensionProvider_EnvoyFileAccessLogProvider_LogFormat_Text:
			if lf.Text != "" {
				if _, err := accesslog.CompileText(lf.Text, false); err != nil {
					fe.add(pp+".logFormat.text", "%v", err)
				}
			}
		case *meshconfig.MeshConfig_ExtensionProvider_EnvoyFileAccessLogProvider_LogFormat_Labels:
			if len(lf.Labels.GetFields()) > 0 {
				if _, err := accesslog.CompileJSON(lf.Labels, true, false); err != nil {
					fe.add(pp+".logFormat.labels", "%v", err)
				}
			}
		}
	case *meshconfig.MeshConfig_ExtensionProvider_Prometheus:
		// No settings.
	case *meshconfig.MeshConfig_ExtensionProvider_EnvoyExtAuthzHttp, *meshconfig.MeshConfig_ExtensionProvider_EnvoyExtAuthzGrpc, nil:
		// Checked by validateMeshConfig.
	default:
		fe.add(base+"."+providerTypeName(p), "provider type %s is not supported yet (supported: zipkin, opentelemetry, prometheus, envoyFileAccessLog, envoyExtAuthzHttp, envoyExtAuthzGrpc)", providerTypeName(p))
	}
}

// validateProviderPort checks a provider's port: 1-65535.
func validateProviderPort(fe *fieldErrs, p string, port uint32) {
	if port == 0 || port > 65535 {
		fe.add(p, "port %d must be in 1-65535", port)
	}
}

// validateProviderHeaders checks the headers (or gRPC initial metadata) a provider sends: valid
// names and values given inline (envName, which makes istiod read its own environment, is
// refused).
func validateProviderHeaders(fe *fieldErrs, p string, headers []*meshconfig.MeshConfig_ExtensionProvider_HttpHeader) {
	eachItem(fe, p, headers, "header", func(_ int, hp string, h *meshconfig.MeshConfig_ExtensionProvider_HttpHeader) {
		validateHeaderName(fe, hp+".name", h.GetName())
		switch v := h.GetHeaderValue().(type) {
		case *meshconfig.MeshConfig_ExtensionProvider_HttpHeader_Value:
			if strings.ContainsAny(v.Value, "\x00\r\n") {
				fe.add(hp+".value", "header value must not contain CR, LF or NUL")
			}
		case *meshconfig.MeshConfig_ExtensionProvider_HttpHeader_EnvName:
			fe.add(hp+".envName", "envName is not supported yet: give the value")
		default:
			fe.add(hp, "value is required")
		}
	})
}

// validateDefaultProviders checks MeshConfig.defaultProviders: every name is one of
// extensionProviders, of the right kind.
func validateDefaultProviders(fe *fieldErrs, mc *meshconfig.MeshConfig) {
	byName := map[string]*meshconfig.MeshConfig_ExtensionProvider{}
	for _, p := range mc.GetExtensionProviders() {
		byName[strings.ToLower(p.GetName())] = p
	}
	dp := mc.GetDefaultProviders()
	for _, l := range []struct {
		field string
		names []string
		kind  ProviderKind
	}{
		{"defaultProviders.tracing", dp.GetTracing(), ProviderTracing},
		{"defaultProviders.metrics", dp.GetMetrics(), ProviderMetrics},
		{"defaultProviders.accessLogging", dp.GetAccessLogging(), ProviderAccessLog},
	} {
		for i, n := range l.names {
			p := byName[strings.ToLower(n)]
			switch {
			case p == nil:
				fe.add(fmt.Sprintf("%s[%d]", l.field, i), "provider %s is not one of extensionProviders", quoteShort(n))
			case KindOfProvider(p) != l.kind:
				fe.add(fmt.Sprintf("%s[%d]", l.field, i), "provider %s is a %s provider, not a %s provider", quoteShort(n), providerTypeName(p), l.kind)
			}
		}
	}
	if len(dp.GetTracing()) > 1 {
		fe.add("defaultProviders.tracing", "only one default tracing provider is supported (Istio uses only the first)")
	}
}

// validateLegacyTracing checks defaultConfig.tracing, the tracing istiod configures when no
// Telemetry and no default tracing provider apply (and enableTracing is on): a zipkin address,
// sampling, custom tags and the path tag length. The other tracers are refused.
func validateLegacyTracing(fe *fieldErrs, t *meshconfig.Tracing) {
	if t == nil {
		return
	}
	const p = "defaultConfig.tracing"
	switch tr := t.GetTracer().(type) {
	case nil:
	case *meshconfig.Tracing_Zipkin_:
		if a := tr.Zipkin.GetAddress(); a != "" {
			host, port, err := net.SplitHostPort(a)
			n, perr := strconv.Atoi(port)
			if err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
				fe.add(p+".zipkin.address", "address %s must be host:port", quoteShort(a))
			}
		}
	default:
		fe.add(p, "tracer %s is not supported yet: use zipkin, or an extension provider with a Telemetry", tracerName(t))
	}
	if s := t.GetSampling(); math.IsNaN(s) || s < 0 || s > 100 {
		fe.add(p+".sampling", "sampling %v must be in 0-100", s)
	}
	if t.GetTlsSettings() != nil {
		fe.add(p+".tlsSettings", "tlsSettings is not supported yet")
	}
	for _, name := range sortedStringKeys(t.GetCustomTags()) {
		tp := p + ".customTags[" + quoteShort(name) + "]"
		switch ct := t.GetCustomTags()[name].GetType().(type) {
		case nil:
			fe.add(tp, "one of literal, environment or header is required")
		case *meshconfig.Tracing_CustomTag_Environment:
			if ct.Environment.GetName() == "" {
				fe.add(tp+".environment.name", "name is required")
			}
		case *meshconfig.Tracing_CustomTag_Header:
			validateHeaderName(fe, tp+".header.name", ct.Header.GetName())
		}
	}
}

// tracerName names the tracer of a legacy tracing setting.
func tracerName(t *meshconfig.Tracing) string {
	m := t.ProtoReflect()
	if od := m.Descriptor().Oneofs().ByName("tracer"); od != nil {
		if fd := m.WhichOneof(od); fd != nil {
			return fd.JSONName()
		}
	}
	return "?"
}

// ProviderLogFormat returns an envoyFileAccessLog provider's format as MeshConfig's
// accessLogEncoding and accessLogFormat would give it: TEXT with the text (Istio's default when
// empty), or JSON with the labels encoded as a JSON object (Istio's default keys when empty).
func ProviderLogFormat(f *meshconfig.MeshConfig_ExtensionProvider_EnvoyFileAccessLogProvider) (meshconfig.MeshConfig_AccessLogEncoding, string) {
	switch lf := f.GetLogFormat().GetLogFormat().(type) {
	case *meshconfig.MeshConfig_ExtensionProvider_EnvoyFileAccessLogProvider_LogFormat_Labels:
		if len(lf.Labels.GetFields()) == 0 {
			return meshconfig.MeshConfig_JSON, ""
		}
		b, err := protojson.Marshal(lf.Labels)
		if err != nil {
			return meshconfig.MeshConfig_JSON, ""
		}
		return meshconfig.MeshConfig_JSON, string(b)
	case *meshconfig.MeshConfig_ExtensionProvider_EnvoyFileAccessLogProvider_LogFormat_Text:
		return meshconfig.MeshConfig_TEXT, lf.Text
	}
	return meshconfig.MeshConfig_TEXT, ""
}
