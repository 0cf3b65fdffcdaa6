package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	meshconfig "istio.io/api/mesh/v1alpha1"
)

func TestDefaultMeshConfig(t *testing.T) {
	mc, err := LoadMeshConfig("")
	if err != nil {
		t.Fatal(err)
	}
	if mc.OutboundTrafficPolicy.Mode != meshconfig.MeshConfig_OutboundTrafficPolicy_ALLOW_ANY ||
		mc.TrustDomain != "cluster.local" || mc.RootNamespace != "istio-system" ||
		mc.AccessLogEncoding != meshconfig.MeshConfig_TEXT || !mc.EnableAutoMtls.GetValue() ||
		mc.DefaultConfig.DrainDuration.AsDuration() != 45*time.Second ||
		mc.DefaultConfig.DiscoveryAddress == "" || mc.DefaultConfig.ProxyStatsMatcher == nil ||
		len(mc.DefaultDestinationRuleExportTo) != 1 {
		t.Errorf("defaults: %v", mc)
	}
	// Each call returns an independent message.
	mc.TrustDomain = "changed"
	if DefaultMeshConfig().TrustDomain != "cluster.local" {
		t.Error("defaults shared between calls")
	}
}

func TestLoadMeshConfigMerges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mesh.yaml")
	data := `
outboundTrafficPolicy:
  mode: REGISTRY_ONLY
trustDomain: example.org
accessLogFile: /dev/stdout
accessLogEncoding: JSON
defaultDestinationRuleExportTo: ["."]
enableAutoMtls: false
defaultConfig:
  drainDuration: 10s
  holdApplicationUntilProxyStarts: true
  terminationDrainDuration: 500ms
`
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	mc, err := LoadMeshConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if mc.OutboundTrafficPolicy.Mode != meshconfig.MeshConfig_OutboundTrafficPolicy_REGISTRY_ONLY {
		t.Errorf("mode %v", mc.OutboundTrafficPolicy.Mode)
	}
	if mc.TrustDomain != "example.org" || mc.AccessLogFile != "/dev/stdout" || mc.AccessLogEncoding != meshconfig.MeshConfig_JSON {
		t.Errorf("scalars: %v", mc)
	}
	if got := mc.DefaultDestinationRuleExportTo; len(got) != 1 || got[0] != "." {
		t.Errorf("exportTo replaced: %v", got)
	}
	if mc.EnableAutoMtls == nil || mc.EnableAutoMtls.Value {
		t.Errorf("enableAutoMtls: %v", mc.EnableAutoMtls)
	}
	pc := mc.DefaultConfig
	if pc.DrainDuration.AsDuration() != 10*time.Second || !pc.HoldApplicationUntilProxyStarts.GetValue() ||
		pc.TerminationDrainDuration.AsDuration() != 500*time.Millisecond {
		t.Errorf("defaultConfig set fields: %v", pc)
	}
	if pc.DiscoveryAddress != "istiod.istio-system.svc:15012" || pc.ProxyAdminPort != 15000 {
		t.Errorf("defaultConfig defaults lost: %v", pc)
	}
	if mc.RootNamespace != "istio-system" || mc.DefaultVirtualServiceExportTo[0] != "*" {
		t.Errorf("top-level defaults lost: %v", mc)
	}
}

func TestLoadMeshConfigErrors(t *testing.T) {
	cases := []struct{ data, field, msg string }{
		{"outboundTrafficPolicy: {mode: DENY}", "outboundTrafficPolicy.mode", "invalid value"},
		{"trustDomian: x", "trustDomian", "did you mean \"trustDomain\""},
		{"defaultConfig: {drainDuration: forever}", "defaultConfig.drainDuration", "invalid duration"},
		{"defaultConfig: {drainDuration: 0s}", "defaultConfig.drainDuration", "1ms"},
		{"defaultDestinationRuleExportTo: ['*', '.']", "defaultDestinationRuleExportTo", "cannot be combined"},
		{"accessLogFile: [a]", "accessLogFile", "expected a string"},
		{"rootNamespace: Bad_NS", "rootNamespace", "invalid namespace"},
		{"defaultHttpRetryPolicy: {attempts: 2, retryOn: 'reset,bogus'}", "defaultHttpRetryPolicy.retryOn", "bogus"},
		{"defaultHttpRetryPolicy: {attempts: -1}", "defaultHttpRetryPolicy.attempts", "negative"},
		{"accessLogFormat: '[%START_TIME%] %BOGUS_OPERATOR%'", "accessLogFormat", "%BOGUS_OPERATOR%"},
		{"accessLogFormat: '100% sure'", "accessLogFormat", "expected a command operator"},
		{"accessLogFormat: '%REQ()%'", "accessLogFormat", "needs an argument"},
		{"{accessLogEncoding: JSON, accessLogFormat: 'not json'}", "accessLogFormat", "not a JSON object"},
		{`{accessLogEncoding: JSON, accessLogFormat: '{"code": "%RESPONSE_CODE%", "x": "%NOPE%"}'}`, "accessLogFormat", "%NOPE%"},
	}
	for _, tc := range cases {
		_, err := ParseMeshConfig("mesh.yaml", []byte(tc.data))
		if err == nil {
			t.Errorf("%q accepted", tc.data)
			continue
		}
		var ce *Error
		if !errors.As(Errors(err)[0], &ce) || ce.Field != tc.field || !strings.Contains(err.Error(), tc.msg) || !strings.HasPrefix(err.Error(), "mesh.yaml: MeshConfig: ") {
			t.Errorf("%q: got %v, want field %q containing %q", tc.data, err, tc.field, tc.msg)
		}
	}
	if _, err := LoadMeshConfig(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !strings.Contains(err.Error(), "reading mesh config") {
		t.Errorf("missing file: %v", err)
	}
}

func TestMeshConfigAccessLogFormats(t *testing.T) {
	for _, data := range []string{
		"{accessLogFile: /dev/stdout, accessLogFormat: '[%START_TIME(%s.%3f)%] %REQ(:METHOD)% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME):5% %DYNAMIC_METADATA(ns:key)%'}",
		`{accessLogFile: /dev/stdout, accessLogEncoding: JSON, accessLogFormat: '{"code": "%RESPONSE_CODE%", "nested": {"flags": "%RESPONSE_FLAGS%"}}'}`,
	} {
		if _, err := ParseMeshConfig("mesh.yaml", []byte(data)); err != nil {
			t.Errorf("%s: %v", data, err)
		}
	}
}

func TestMeshConfigExtensionProviders(t *testing.T) {
	mc, err := ParseMeshConfig("mesh.yaml", []byte(`
extensionProviders:
- name: otel
  opentelemetry: {service: otel.observability.svc.cluster.local, port: 4317}
- name: envoy
  envoyFileAccessLog: {path: /var/log/access.log}
`))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range mc.ExtensionProviders {
		names = append(names, p.Name)
	}
	if strings.Join(names, ",") != "prometheus,otel,envoy" || mc.ExtensionProviders[2].GetEnvoyFileAccessLog().Path != "/var/log/access.log" {
		t.Errorf("providers: %v", names)
	}
	if _, err := ParseMeshConfig("mesh.yaml", []byte("extensionProviders: [{name: a, prometheus: {}}, {name: a, prometheus: {}}]")); err == nil || !strings.Contains(err.Error(), "duplicate provider") {
		t.Errorf("duplicate providers: %v", err)
	}
}

func TestMeshConfigExtAuthzProviders(t *testing.T) {
	good := `
extensionProviders:
- name: http
  envoyExtAuthzHttp:
    service: ext-authz.foo.svc.cluster.local
    port: "8000"
    timeout: 0.5s
    pathPrefix: /check
    statusOnError: "503"
    includeRequestHeadersInCheck: [x-ext-authz, "x-*"]
    includeAdditionalHeadersInCheck: {x-a: "1"}
    includeRequestBodyInCheck: {maxRequestBytes: 1024}
- name: grpc
  envoyExtAuthzGrpc: {service: foo/ext-authz.foo.svc.cluster.local, port: 9000, failOpen: true}
- name: ip
  envoyExtAuthzGrpc: {service: 10.0.0.1, port: 9000}
`
	mc, err := ParseMeshConfig("mesh.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if h := mc.ExtensionProviders[2].GetEnvoyExtAuthzHttp(); h.GetPort() != 8000 || h.GetTimeout().AsDuration() != 500*time.Millisecond {
		t.Errorf("http provider: %v", h)
	}
	for _, tc := range []struct{ provider, field, msg string }{
		{"envoyExtAuthzHttp: {port: 8000}", "extensionProviders[2].envoyExtAuthzHttp.service", "service is required"},
		{"envoyExtAuthzGrpc: {service: a.example.com}", "extensionProviders[2].envoyExtAuthzGrpc.port", "port 0 must be in 1-65535"},
		{"envoyExtAuthzGrpc: {service: a.example.com, port: 70000}", "extensionProviders[2].envoyExtAuthzGrpc.port", "port 70000"},
		{"envoyExtAuthzHttp: {service: 'bad host!', port: 80}", "extensionProviders[2].envoyExtAuthzHttp.service", "invalid host name"},
		{"envoyExtAuthzHttp: {service: 'Bad_NS/a.example.com', port: 80}", "extensionProviders[2].envoyExtAuthzHttp.service", "namespace"},
		{"envoyExtAuthzHttp: {service: 'a/b/c', port: 80}", "extensionProviders[2].envoyExtAuthzHttp.service", "namespace/dnsName"},
		{"envoyExtAuthzGrpc: {service: a.example.com, port: 80, timeout: 0s}", "extensionProviders[2].envoyExtAuthzGrpc.timeout", "1ms"},
		{"envoyExtAuthzGrpc: {service: a.example.com, port: 80, statusOnError: '299'}", "extensionProviders[2].envoyExtAuthzGrpc.statusOnError", `invalid statusOnError "299"`},
		{"envoyExtAuthzGrpc: {service: a.example.com, port: 80, statusOnError: forbidden}", "extensionProviders[2].envoyExtAuthzGrpc.statusOnError", "invalid statusOnError"},
		{"envoyExtAuthzGrpc: {service: a.example.com, port: 80, statusOnError: '0'}", "extensionProviders[2].envoyExtAuthzGrpc.statusOnError", "invalid statusOnError"},
		{"envoyExtAuthzHttp: {service: a.example.com, port: 80, pathPrefix: check}", "extensionProviders[2].envoyExtAuthzHttp.pathPrefix", "starting with '/'"},
		{"envoyExtAuthzHttp: {service: a.example.com, port: 80, includeRequestBodyInCheck: {}}", "extensionProviders[2].envoyExtAuthzHttp.includeRequestBodyInCheck.maxRequestBytes", "at least 1"},
		{"envoyExtAuthzHttp: {service: a.example.com, port: 80, includeAdditionalHeadersInCheck: {'bad name': x}}", `extensionProviders[2].envoyExtAuthzHttp.includeAdditionalHeadersInCheck["bad name"]`, "invalid header name"},
		{"envoyExtAuthzHttp: {service: a.example.com, port: 80, includeAdditionalHeadersInCheck: {x-a: \"a\\nb\"}}", `extensionProviders[2].envoyExtAuthzHttp.includeAdditionalHeadersInCheck["x-a"]`, "CR, LF or NUL"},
	} {
		_, err := ParseMeshConfig("mesh.yaml", []byte("extensionProviders:\n- name: p\n  "+tc.provider+"\n"))
		if err == nil {
			t.Errorf("%s accepted", tc.provider)
			continue
		}
		var ce *Error
		if !errors.As(Errors(err)[0], &ce) || ce.Field != tc.field || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: got %v, want field %q containing %q", tc.provider, err, tc.field, tc.msg)
		}
	}
}

func TestMeshConfigTelemetryProviders(t *testing.T) {
	good := `
enableTracing: true
defaultProviders: {tracing: [zipkin], metrics: [prometheus], accessLogging: [json-log]}
defaultConfig:
  tracing:
    sampling: 10
    maxPathTagLength: 99
    zipkin: {address: zipkin.istio-system:9411}
    customTags: {team: {literal: {value: a}}, user: {header: {name: x-user}}}
extensionProviders:
- name: zipkin
  zipkin: {service: zipkin.istio-system.svc.cluster.local, port: 9411, maxTagLength: 256, enable64bitTraceId: true, path: /api/v2/spans}
- name: otel-http
  opentelemetry:
    service: otel.observability.svc.cluster.local
    port: 4318
    http: {path: /v1/traces, timeout: 2s, headers: [{name: x-token, value: abc}]}
- name: otel-grpc
  opentelemetry: {service: otel.observability.svc.cluster.local, port: 4317, grpc: {timeout: 1s}}
- name: json-log
  envoyFileAccessLog: {path: /dev/stdout, logFormat: {labels: {code: "%RESPONSE_CODE%"}}}
- name: text-log
  envoyFileAccessLog: {path: /dev/stdout, logFormat: {text: "%RESPONSE_CODE%"}}
`
	if _, err := ParseMeshConfig("mesh.yaml", []byte(good)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ data, field, msg string }{
		{"extensionProviders: [{name: d, datadog: {service: a.b, port: 1}}]", "extensionProviders[2].datadog", "provider type datadog is not supported yet"},
		{"extensionProviders: [{name: s, skywalking: {service: a.b, port: 1}}]", "extensionProviders[2].skywalking", "not supported yet"},
		{"extensionProviders: [{name: s, stackdriver: {}}]", "extensionProviders[2].stackdriver", "not supported yet"},
		{"extensionProviders: [{name: s, envoyOtelAls: {service: a.b, port: 1}}]", "extensionProviders[2].envoyOtelAls", "not supported yet"},
		{"extensionProviders: [{name: s, envoyHttpAls: {service: a.b, port: 1}}]", "extensionProviders[2].envoyHttpAls", "not supported yet"},
		{"extensionProviders: [{name: s, envoyTcpAls: {service: a.b, port: 1}}]", "extensionProviders[2].envoyTcpAls", "not supported yet"},
		{"extensionProviders: [{name: z, zipkin: {service: a.b}}]", "extensionProviders[2].zipkin.port", "must be in 1-65535"},
		{"extensionProviders: [{name: z, zipkin: {port: 1}}]", "extensionProviders[2].zipkin.service", "service is required"},
		{"extensionProviders: [{name: o, opentelemetry: {service: a.b, port: 1, resourceDetectors: {environment: {}}}}]", "extensionProviders[2].opentelemetry.resourceDetectors", "not supported yet"},
		{"extensionProviders: [{name: o, opentelemetry: {service: a.b, port: 1, http: {headers: [{name: a, envName: B}]}}}]", "extensionProviders[2].opentelemetry.http.headers[0].envName", "not supported yet"},
		{"extensionProviders: [{name: f, envoyFileAccessLog: {path: /dev/stdout, logFormat: {text: '%NOPE%'}}}]", "extensionProviders[2].envoyFileAccessLog.logFormat.text", "NOPE"},
		{"defaultProviders: {tracing: [nope]}", "defaultProviders.tracing[0]", "not one of extensionProviders"},
		{"defaultProviders: {metrics: [envoy]}", "defaultProviders.metrics[0]", "not a metrics provider"},
		{"defaultConfig: {tracing: {sampling: 101}}", "defaultConfig.tracing.sampling", "must be in 0-100"},
		{"defaultConfig: {tracing: {datadog: {address: a:1}}}", "defaultConfig.tracing", "tracer datadog is not supported yet"},
		{"defaultConfig: {tracing: {zipkin: {address: nope}}}", "defaultConfig.tracing.zipkin.address", "host:port"},
	} {
		_, err := ParseMeshConfig("mesh.yaml", []byte(tc.data))
		var ce *Error
		if err == nil || !errors.As(Errors(err)[0], &ce) || ce.Field != tc.field || !strings.Contains(ce.Msg, tc.msg) {
			t.Errorf("%s: got %v, want %s: ...%s...", tc.data, err, tc.field, tc.msg)
		}
	}
}
