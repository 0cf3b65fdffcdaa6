package telemetry

import (
	"fmt"
	"sort"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	celv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/filters/cel/v3"
	meshconfig "istio.io/api/mesh/v1alpha1"
	tpb "istio.io/api/telemetry/v1alpha1"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/translate/listener"
)

// celFilterName is Envoy's CEL access log filter, which istiod uses for filter.expression.
const celFilterName = "envoy.access_loggers.extension_filters.cel"

// logSpec is one selected access log provider of a mode.
type logSpec struct {
	filter   *tpb.AccessLogging_Filter
	disabled bool
}

// buildAccessLogs returns the access logs of mode. set is false when neither a Telemetry nor
// defaultProviders.accessLogging selects any provider istiod can use: MeshConfig's
// accessLogFile then applies, as in Istio.
func buildAccessLogs(in Inputs, ap applied, mode tpb.WorkloadMode, report func(error)) (set bool, logs []*accesslogv3.AccessLog) {
	providers := mergeLogs(ap, in.Mesh, mode)
	names := make([]string, 0, len(providers))
	for n := range providers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := lookupProvider(in.Mesh, n)
		if p == nil {
			report(fmt.Errorf("%s: accessLogging: provider %q is not one of MeshConfig's extensionProviders; left out", ap.owner(), n))
			continue
		}
		f, ok := p.GetProvider().(*meshconfig.MeshConfig_ExtensionProvider_EnvoyFileAccessLog)
		if !ok {
			report(fmt.Errorf("%s: accessLogging: provider %q (of type %s) is not an access log provider (envoyFileAccessLog); left out", ap.owner(), n, providerType(p)))
			continue
		}
		set = true
		spec := providers[n]
		if spec.disabled {
			continue
		}
		path := f.EnvoyFileAccessLog.GetPath()
		if path == "" {
			path = "/dev/stdout"
		}
		enc, format := config.ProviderLogFormat(f.EnvoyFileAccessLog)
		built := listener.AccessLog{File: path, Encoding: enc, Format: format}.Build()
		for _, al := range built {
			if spec.filter != nil {
				al.Filter = &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_ExtensionFilter{
					ExtensionFilter: &accesslogv3.ExtensionFilter{Name: celFilterName, ConfigType: &accesslogv3.ExtensionFilter_TypedConfig{
						TypedConfig: mustAny(&celv3.ExpressionFilter{Expression: spec.filter.GetExpression()})}}}}
			}
			logs = append(logs, al)
		}
	}
	return set, logs
}

// mergeLogs selects the access log providers of mode as istiod's mergeLogs does: the providers
// named by the most specific level that names any (for this mode), else defaultProviders;
// each entry without providers applies to its parent's; disabled removes a provider; a filter
// goes with the providers of the entry that sets it.
func mergeLogs(ap applied, mc *meshconfig.MeshConfig, mode tpb.WorkloadMode) map[string]logSpec {
	out := map[string]logSpec{}
	defaults := mc.GetDefaultProviders().GetAccessLogging()
	var levels [][]*tpb.AccessLogging
	for _, s := range ap.specs {
		if len(s.GetAccessLogging()) > 0 {
			levels = append(levels, s.GetAccessLogging())
		}
	}
	if len(levels) == 0 {
		for _, d := range defaults {
			out[d] = logSpec{}
		}
		return out
	}
	inScope := defaults
	filters := map[string]*tpb.AccessLogging_Filter{}
	for _, level := range levels {
		var names []string
		for _, l := range level {
			if l.GetMatch() != nil && !appliesTo(l.GetMatch().GetMode(), mode) {
				continue
			}
			for _, n := range providerNames(l.GetProviders()) {
				names = append(names, n)
				filters[n] = l.GetFilter()
			}
		}
		if len(names) > 0 {
			inScope = names
		}
	}
	scope := map[string]bool{}
	for _, n := range inScope {
		scope[n] = true
	}
	parent := defaults
	for _, level := range levels {
		for _, l := range level {
			names := providerNames(l.GetProviders())
			if len(names) == 0 {
				names = parent
			}
			parent = names
			if l.GetMatch() != nil && !appliesTo(l.GetMatch().GetMode(), mode) {
				continue
			}
			for _, n := range names {
				if !scope[n] {
					continue
				}
				if l.GetDisabled().GetValue() {
					out[n] = logSpec{disabled: true}
					continue
				}
				out[n] = logSpec{filter: filters[n]}
			}
		}
	}
	return out
}
