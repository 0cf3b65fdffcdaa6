package config

import (
	"math"
	"regexp"
	"strings"

	telemetry "istio.io/api/telemetry/v1alpha1"

	"github.com/strait-mesh/strait/proxy/accesslog"
	"github.com/strait-mesh/strait/proxy/attributes"
	proxytelemetry "github.com/strait-mesh/strait/proxy/telemetry"
)

// Limits on a Telemetry, so that one object cannot make every proxy's configuration huge.
const (
	maxTelemetryEntries = 32  // tracing, metrics, accessLogging entries; overrides per metrics entry
	maxTelemetryTags    = 64  // customTags per tracing entry, tagOverrides per override
	maxProviderRefs     = 16  // providers per entry
	maxTagValueLength   = 256 // literal values, environment and header names, formatters
)

// metricLabelRE is a Prometheus label name, which a tagOverrides key becomes.
var metricLabelRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// validateTelemetry checks a Telemetry with Istio's rules (its validation webhook and the CRD's
// schema), and refuses what Strait does not implement:
//   - selector as for the security policies; targetRef and targetRefs are refused: they attach a
//     Telemetry to Gateway API gateways and waypoints, which Strait does not have;
//   - provider references need a name; a tracing entry may name at most one provider (Istio
//     uses only the first);
//   - tracing.randomSamplingPercentage in 0-100; custom tags with a name and exactly one of
//     literal, environment, header (a valid header name) or formatter (a substitution format
//     string strait-proxy can render);
//   - metrics overrides: tagOverrides keys are Prometheus label names; UPSERT needs a value and
//     REMOVE must not have one; values and accessLogging.filter.expression are CEL expressions
//     over Envoy's attributes, compiled here by strait-proxy's own compiler (package
//     attributes: its vocabulary, limits and refusals), so that what the proxy would refuse
//     is refused at apply time, naming the field;
//   - at most proxytelemetry.MaxDimensionExpressions distinct UPSERT values per mode: strait-
//     proxy's istio.stats filter evaluates each on every request and refuses more;
//   - reportingInterval at least 1ms; every mode and metric one of Istio's enum values.
func validateTelemetry(fe *fieldErrs, t *telemetry.Telemetry) {
	validatePolicySelector(fe, "spec.selector", t.GetSelector())
	if t.GetTargetRef() != nil || len(t.GetTargetRefs()) > 0 {
		p := "spec.targetRefs"
		if t.GetTargetRef() != nil {
			p = "spec.targetRef"
		}
		fe.add(p, "targetRef and targetRefs are not supported yet: they attach a Telemetry to Gateway API gateways and waypoints, which Strait does not have; use selector")
	}
	checkCount := func(p string, n, max int, what string) {
		if n > max {
			fe.add(p, "%d %s, more than the limit of %d", n, what, max)
		}
	}
	checkCount("spec.tracing", len(t.GetTracing()), maxTelemetryEntries, "entries")
	checkCount("spec.metrics", len(t.GetMetrics()), maxTelemetryEntries, "entries")
	checkCount("spec.accessLogging", len(t.GetAccessLogging()), maxTelemetryEntries, "entries")
	eachItem(fe, "spec.tracing", t.GetTracing(), "tracing entry", func(_ int, p string, tr *telemetry.Tracing) {
		validateTracing(fe, p, tr)
	})
	eachItem(fe, "spec.metrics", t.GetMetrics(), "metrics entry", func(_ int, p string, m *telemetry.Metrics) {
		validateTelemetryMetrics(fe, p, m)
	})
	validateDimensionCount(fe, t.GetMetrics())
	eachItem(fe, "spec.accessLogging", t.GetAccessLogging(), "accessLogging entry", func(_ int, p string, a *telemetry.AccessLogging) {
		validateProviderRefs(fe, p+".providers", a.GetProviders())
		validateWorkloadMode(fe, p+".match.mode", a.GetMatch().GetMode())
		if f := a.GetFilter(); f != nil {
			if _, err := attributes.CompileBool(f.GetExpression()); err != nil {
				fe.add(p+".filter.expression", "%v", err)
			}
		}
	})
}

// validateProviderRefs checks a providers list: each entry set, with a name.
func validateProviderRefs(fe *fieldErrs, p string, refs []*telemetry.ProviderRef) {
	if len(refs) > maxProviderRefs {
		fe.add(p, "%d providers, more than the limit of %d", len(refs), maxProviderRefs)
		return
	}
	eachItem(fe, p, refs, "provider", func(_ int, ip string, r *telemetry.ProviderRef) {
		if strings.TrimSpace(r.GetName()) == "" {
			fe.add(ip+".name", "name is required: the name of one of MeshConfig's extensionProviders")
		}
	})
}

// validateWorkloadMode checks that m is one of CLIENT_AND_SERVER, CLIENT and SERVER.
func validateWorkloadMode(fe *fieldErrs, p string, m telemetry.WorkloadMode) {
	if _, ok := telemetry.WorkloadMode_name[int32(m)]; !ok {
		fe.add(p, "invalid mode %d (valid: CLIENT_AND_SERVER, CLIENT, SERVER)", int32(m))
	}
}

// validateTracing checks one tracing entry.
func validateTracing(fe *fieldErrs, p string, tr *telemetry.Tracing) {
	validateProviderRefs(fe, p+".providers", tr.GetProviders())
	if len(tr.GetProviders()) > 1 {
		fe.add(p+".providers", "only one tracing provider per entry is supported (Istio would use only the first)")
	}
	validateWorkloadMode(fe, p+".match.mode", tr.GetMatch().GetMode())
	if s := tr.GetRandomSamplingPercentage(); s != nil {
		if v := s.GetValue(); math.IsNaN(v) || v < 0 || v > 100 {
			fe.add(p+".randomSamplingPercentage", "percentage %v must be in 0-100", v)
		}
	}
	tags := tr.GetCustomTags()
	if len(tags) > maxTelemetryTags {
		fe.add(p+".customTags", "%d custom tags, more than the limit of %d", len(tags), maxTelemetryTags)
		return
	}
	for _, name := range sortedStringKeys(tags) {
		tp := p + ".customTags[" + quoteShort(name) + "]"
		if strings.TrimSpace(name) == "" {
			fe.add(tp, "tag name must not be empty")
		}
		validateCustomTag(fe, tp, tags[name])
	}
}

// validateCustomTag checks one custom tag: exactly one type, with its required value.
func validateCustomTag(fe *fieldErrs, p string, tag *telemetry.Tracing_CustomTag) {
	long := func(fp, v string) bool {
		if len(v) > maxTagValueLength {
			fe.add(fp, "value is %d bytes, more than the limit of %d", len(v), maxTagValueLength)
			return true
		}
		return false
	}
	switch t := tag.GetType().(type) {
	case nil:
		fe.add(p, "one of literal, environment, header or formatter is required")
	case *telemetry.Tracing_CustomTag_Literal:
		if t.Literal == nil {
			fe.add(p+".literal.value", "value is required")
			return
		}
		long(p+".literal.value", t.Literal.GetValue())
	case *telemetry.Tracing_CustomTag_Environment:
		if t.Environment.GetName() == "" {
			fe.add(p+".environment.name", "name is required")
		}
		long(p+".environment.name", t.Environment.GetName())
		long(p+".environment.defaultValue", t.Environment.GetDefaultValue())
	case *telemetry.Tracing_CustomTag_Header:
		if !long(p+".header.name", t.Header.GetName()) {
			validateHeaderName(fe, p+".header.name", t.Header.GetName())
		}
		long(p+".header.defaultValue", t.Header.GetDefaultValue())
	case *telemetry.Tracing_CustomTag_Formatter:
		v := t.Formatter.GetValue()
		if v == "" {
			fe.add(p+".formatter.value", "value is required")
			return
		}
		if long(p+".formatter.value", v) {
			return
		}
		if _, err := accesslog.CompileText(v, false); err != nil {
			fe.add(p+".formatter.value", "%v", err)
		}
	}
}

// validateTelemetryMetrics checks one metrics entry.
func validateTelemetryMetrics(fe *fieldErrs, p string, m *telemetry.Metrics) {
	validateProviderRefs(fe, p+".providers", m.GetProviders())
	validateDuration(fe, p+".reportingInterval", m.GetReportingInterval())
	if len(m.GetOverrides()) > maxTelemetryEntries {
		fe.add(p+".overrides", "%d overrides, more than the limit of %d", len(m.GetOverrides()), maxTelemetryEntries)
		return
	}
	eachItem(fe, p+".overrides", m.GetOverrides(), "override", func(_ int, op string, o *telemetry.MetricsOverrides) {
		if sel := o.GetMatch(); sel != nil {
			validateWorkloadMode(fe, op+".match.mode", sel.GetMode())
			switch mm := sel.GetMetricMatch().(type) {
			case *telemetry.MetricSelector_Metric:
				if _, ok := telemetry.MetricSelector_IstioMetric_name[int32(mm.Metric)]; !ok {
					fe.add(op+".match.metric", "invalid metric %d", int32(mm.Metric))
				}
			case *telemetry.MetricSelector_CustomMetric:
				if !metricLabelRE.MatchString(mm.CustomMetric) {
					fe.add(op+".match.customMetric", "invalid metric name %s: want a Prometheus name without the istio_ prefix, such as requests_total", quoteShort(mm.CustomMetric))
				}
			}
		}
		tags := o.GetTagOverrides()
		if len(tags) > maxTelemetryTags {
			fe.add(op+".tagOverrides", "%d tag overrides, more than the limit of %d", len(tags), maxTelemetryTags)
			return
		}
		for _, name := range sortedStringKeys(tags) {
			tp := op + ".tagOverrides[" + quoteShort(name) + "]"
			if !metricLabelRE.MatchString(name) {
				fe.add(tp, "invalid tag name: want a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)")
			}
			validateTagOverride(fe, tp, tags[name])
		}
	})
}

// validateTagOverride checks a tag override: UPSERT with a CEL value, or REMOVE without one.
func validateTagOverride(fe *fieldErrs, p string, t *telemetry.MetricsOverrides_TagOverride) {
	if t == nil {
		fe.add(p, "tag override must not be null")
		return
	}
	switch t.GetOperation() {
	case telemetry.MetricsOverrides_TagOverride_UPSERT:
		if t.GetValue() == "" {
			fe.add(p+".value", "value is required when operation is UPSERT: a CEL expression such as request.host")
			return
		}
		if _, err := attributes.Compile(t.GetValue()); err != nil {
			fe.add(p+".value", "%v", err)
		}
	case telemetry.MetricsOverrides_TagOverride_REMOVE:
		if t.GetValue() != "" {
			fe.add(p+".value", "value must not be set when operation is REMOVE")
		}
	default:
		fe.add(p+".operation", "invalid operation %d (valid: UPSERT, REMOVE)", int32(t.GetOperation()))
	}
}

// validateDimensionCount refuses more distinct tagOverrides values (CEL expressions) for one mode
// (CLIENT or SERVER) than strait-proxy's istio.stats filter accepts: the overrides of one mode
// become one filter, which would be refused by every proxy it is sent to. Several Telemetries
// that together exceed the limit are caught when they are translated.
func validateDimensionCount(fe *fieldErrs, entries []*telemetry.Metrics) {
	for _, mode := range []telemetry.WorkloadMode{telemetry.WorkloadMode_CLIENT, telemetry.WorkloadMode_SERVER} {
		distinct := map[string]bool{}
		for _, m := range entries {
			for _, o := range m.GetOverrides() {
				if md := o.GetMatch().GetMode(); md != telemetry.WorkloadMode_CLIENT_AND_SERVER && md != mode {
					continue
				}
				for _, t := range o.GetTagOverrides() {
					if t.GetOperation() == telemetry.MetricsOverrides_TagOverride_UPSERT && t.GetValue() != "" {
						distinct[t.GetValue()] = true
					}
				}
			}
		}
		if n := len(distinct); n > proxytelemetry.MaxDimensionExpressions {
			fe.add("spec.metrics", "%d distinct tagOverrides values apply to mode %s, more than the limit of %d (strait-proxy evaluates each on every request)",
				n, mode, proxytelemetry.MaxDimensionExpressions)
		}
	}
}
