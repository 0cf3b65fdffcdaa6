package config

import (
	"slices"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/anypb"
	networking "istio.io/api/networking/v1alpha3"
)

// Names of the filters an EnvoyFilter match may name, with the deprecated names Envoy still
// resolves to them.
const (
	// HCMFilterName is the name of the HTTP connection manager network filter.
	HCMFilterName = "envoy.filters.network.http_connection_manager"
)

// FilterNameAliases maps deprecated Envoy filter names, which Istio's EnvoyFilter matches still
// accept, to their current names.
var FilterNameAliases = map[string]string{
	"envoy.http_connection_manager": HCMFilterName,
	"envoy.tcp_proxy":               "envoy.filters.network.tcp_proxy",
	"envoy.router":                  "envoy.filters.http.router",
	"envoy.cors":                    "envoy.filters.http.cors",
	"envoy.fault":                   "envoy.filters.http.fault",
	"envoy.lua":                     "envoy.filters.http.lua",
	"envoy.rate_limit":              "envoy.filters.http.ratelimit",
	"envoy.ratelimit":               "envoy.filters.http.ratelimit",
	"envoy.ext_authz":               "envoy.filters.http.ext_authz",
	"envoy.filters.http.jwt_authn":  "envoy.filters.http.jwt_authn",
}

// CanonicalFilterName returns the current name of an Envoy filter given by a deprecated one
// (FilterNameAliases), or name itself.
func CanonicalFilterName(name string) string {
	if n, ok := FilterNameAliases[name]; ok {
		return n
	}
	return name
}

// efOps lists, for each applyTo Strait applies, the patch operations it supports there, as
// Istio applies them. Istio ignores ADD on ROUTE_CONFIGURATION and HTTP_ROUTE, and REPLACE is
// only for filters: such a patch is refused rather than accepted and ignored.
var efOps = map[networking.EnvoyFilter_ApplyTo][]networking.EnvoyFilter_Patch_Operation{
	networking.EnvoyFilter_LISTENER:            {networking.EnvoyFilter_Patch_MERGE, networking.EnvoyFilter_Patch_ADD, networking.EnvoyFilter_Patch_REMOVE},
	networking.EnvoyFilter_FILTER_CHAIN:        {networking.EnvoyFilter_Patch_MERGE, networking.EnvoyFilter_Patch_ADD, networking.EnvoyFilter_Patch_REMOVE},
	networking.EnvoyFilter_NETWORK_FILTER:      filterOps,
	networking.EnvoyFilter_HTTP_FILTER:         filterOps,
	networking.EnvoyFilter_ROUTE_CONFIGURATION: {networking.EnvoyFilter_Patch_MERGE},
	networking.EnvoyFilter_VIRTUAL_HOST:        {networking.EnvoyFilter_Patch_MERGE, networking.EnvoyFilter_Patch_ADD, networking.EnvoyFilter_Patch_REMOVE},
	networking.EnvoyFilter_HTTP_ROUTE: {networking.EnvoyFilter_Patch_MERGE, networking.EnvoyFilter_Patch_REMOVE,
		networking.EnvoyFilter_Patch_INSERT_BEFORE, networking.EnvoyFilter_Patch_INSERT_AFTER, networking.EnvoyFilter_Patch_INSERT_FIRST},
	networking.EnvoyFilter_CLUSTER: {networking.EnvoyFilter_Patch_MERGE, networking.EnvoyFilter_Patch_ADD, networking.EnvoyFilter_Patch_REMOVE},
}

var filterOps = []networking.EnvoyFilter_Patch_Operation{networking.EnvoyFilter_Patch_MERGE, networking.EnvoyFilter_Patch_ADD,
	networking.EnvoyFilter_Patch_REMOVE, networking.EnvoyFilter_Patch_INSERT_BEFORE, networking.EnvoyFilter_Patch_INSERT_AFTER,
	networking.EnvoyFilter_Patch_INSERT_FIRST, networking.EnvoyFilter_Patch_REPLACE}

// validateEnvoyFilter checks an EnvoyFilter with Istio's rules (workloadSelector or targetRefs;
// each patch has an applyTo, a patch with an operation, a value unless it removes, a match of
// the class its applyTo needs, a proxyVersion that compiles) and Strait's: what Strait does not
// apply (targetRefs, the WAYPOINT context, EXTENSION_CONFIG, BOOTSTRAP, LISTENER_FILTER,
// filterClass, MERGE_AND_REPLACE_LIST, an operation Istio ignores for its applyTo) is refused as
// not supported, and each value must decode strictly into the Envoy message of its applyTo and
// name only filters strait-proxy implements.
func validateEnvoyFilter(fe *fieldErrs, namespace string, ef *networking.EnvoyFilter) {
	if ef.GetWorkloadSelector() != nil && len(ef.GetTargetRefs()) > 0 {
		fe.add("spec", "only one of workloadSelector and targetRefs may be set")
	}
	if ws := ef.GetWorkloadSelector(); ws != nil {
		validateWorkloadSelector(fe, "spec.workloadSelector", ws.GetLabels())
	}
	if len(ef.GetTargetRefs()) > 0 {
		fe.add("spec.targetRefs", "targetRefs is not supported yet: Strait selects an EnvoyFilter's workloads by workloadSelector or namespace")
	}
	eachItem(fe, "spec.configPatches", ef.GetConfigPatches(), "config patch", func(_ int, p string, cp *networking.EnvoyFilter_EnvoyConfigObjectPatch) {
		validateEnvoyPatch(fe, p, cp)
	})
}

// validateEnvoyPatch checks one config patch at path p.
func validateEnvoyPatch(fe *fieldErrs, p string, cp *networking.EnvoyFilter_EnvoyConfigObjectPatch) {
	applyTo := cp.GetApplyTo()
	switch applyTo {
	case networking.EnvoyFilter_INVALID:
		fe.add(p+".applyTo", "applyTo is required")
		return
	case networking.EnvoyFilter_EXTENSION_CONFIG, networking.EnvoyFilter_BOOTSTRAP, networking.EnvoyFilter_LISTENER_FILTER:
		fe.add(p+".applyTo", "applyTo %s is not supported yet", applyTo)
		return
	}
	validateEnvoyMatch(fe, p+".match", applyTo, cp.GetMatch())
	patch := cp.GetPatch()
	if patch == nil {
		fe.add(p+".patch", "patch is required")
		return
	}
	op := patch.GetOperation()
	switch {
	case op == networking.EnvoyFilter_Patch_INVALID:
		fe.add(p+".patch.operation", "operation is required")
		return
	case op == networking.EnvoyFilter_Patch_MERGE_AND_REPLACE_LIST:
		fe.add(p+".patch.operation", "operation MERGE_AND_REPLACE_LIST is not supported yet")
		return
	case !slices.Contains(efOps[applyTo], op):
		fe.add(p+".patch.operation", "operation %s is not supported for applyTo %s (supported: %s)", op, applyTo, opNames(efOps[applyTo]))
		return
	}
	if op == networking.EnvoyFilter_Patch_MERGE || op == networking.EnvoyFilter_Patch_REMOVE || op == networking.EnvoyFilter_Patch_REPLACE {
		f := cp.GetMatch().GetListener().GetFilterChain().GetFilter()
		switch {
		case applyTo == networking.EnvoyFilter_HTTP_FILTER && f.GetSubFilter().GetName() == "":
			fe.add(p+".match.listener.filterChain.filter.subFilter.name", "operation %s of an HTTP filter needs the filter's name (subFilter.name)", op)
		case applyTo == networking.EnvoyFilter_NETWORK_FILTER && f.GetName() == "":
			fe.add(p+".match.listener.filterChain.filter.name", "operation %s of a network filter needs the filter's name (filter.name)", op)
		}
	}
	if patch.GetFilterClass() != networking.EnvoyFilter_Patch_UNSPECIFIED {
		fe.add(p+".patch.filterClass", "filterClass is not supported yet: place the filter with INSERT_BEFORE, INSERT_AFTER or INSERT_FIRST")
	}
	if op == networking.EnvoyFilter_Patch_REMOVE {
		if patch.GetValue() != nil {
			fe.add(p+".patch.value", "a REMOVE patch takes no value")
		}
		return
	}
	if patch.GetValue() == nil {
		fe.add(p+".patch.value", "value is required for operation %s", op)
		return
	}
	msg, errs := decodeEnvoyPatch(applyTo, patch.GetValue(), p+".patch.value")
	for _, e := range errs {
		fe.add(e.path, "%s", e.msg)
	}
	if msg == nil {
		return
	}
	adds := op != networking.EnvoyFilter_Patch_MERGE
	vp := p + ".patch.value"
	switch v := msg.(type) {
	case *hcmv3.HttpFilter:
		if adds && v.GetName() == "" {
			fe.add(vp+".name", "name is required: the filter's name")
		}
		checkProxyFilter(fe, vp, "HTTP", v.GetName(), v.GetTypedConfig(), v.GetIsOptional(), ProxyHTTPFilterTypes,
			map[string]bool{"envoy.filters.http.router": true, "envoy.filters.http.fault": true, "envoy.filters.http.cors": true}, adds)
	case *listenerv3.Filter:
		if adds && v.GetName() == "" {
			fe.add(vp+".name", "name is required: the filter's name")
		}
		checkProxyFilter(fe, vp, "network", v.GetName(), v.GetTypedConfig(), false, ProxyNetworkFilterTypes, nil, adds)
	case interface{ GetName() string }:
		if adds && v.GetName() == "" && applyTo != networking.EnvoyFilter_HTTP_ROUTE && applyTo != networking.EnvoyFilter_FILTER_CHAIN {
			fe.add(vp+".name", "name is required")
		}
	}
}

// checkProxyFilter refuses a filter strait-proxy does not implement: a typed_config of another
// type, or (when the patch adds the filter) no typed_config and a name strait-proxy does not
// resolve by itself (named). An optional HTTP filter is accepted: Envoy and strait-proxy skip
// it.
func checkProxyFilter(fe *fieldErrs, p, what, name string, tc *anypb.Any, optional bool, types []string, named map[string]bool, adds bool) {
	if optional {
		return
	}
	if tc == nil {
		if adds && !named[CanonicalFilterName(name)] {
			fe.add(p+".typed_config", "typed_config is required: strait-proxy resolves no %s filter %q by name alone", what, name)
		}
		return
	}
	if !slices.Contains(types, tc.GetTypeUrl()) {
		fe.add(p+".typed_config", "%s filter %q (%s) is not supported yet: strait-proxy does not implement it", what, name, tc.GetTypeUrl())
	}
}

// validateEnvoyMatch checks a patch's match at path p for applyTo.
func validateEnvoyMatch(fe *fieldErrs, p string, applyTo networking.EnvoyFilter_ApplyTo, m *networking.EnvoyFilter_EnvoyConfigObjectMatch) {
	if m == nil {
		return
	}
	ctx := m.GetContext()
	if ctx == networking.EnvoyFilter_WAYPOINT {
		fe.add(p+".context", "context WAYPOINT is not supported yet")
	}
	if v := m.GetProxy().GetProxyVersion(); v != "" {
		validateRegex(fe, p+".proxy.proxyVersion", v)
	}
	switch applyTo {
	case networking.EnvoyFilter_LISTENER, networking.EnvoyFilter_FILTER_CHAIN, networking.EnvoyFilter_NETWORK_FILTER, networking.EnvoyFilter_HTTP_FILTER:
		if m.GetRouteConfiguration() != nil || m.GetCluster() != nil || m.GetWaypoint() != nil {
			fe.add(p, "applyTo %s needs a listener match (or none)", applyTo)
		}
	case networking.EnvoyFilter_ROUTE_CONFIGURATION, networking.EnvoyFilter_VIRTUAL_HOST, networking.EnvoyFilter_HTTP_ROUTE:
		if m.GetListener() != nil || m.GetCluster() != nil || m.GetWaypoint() != nil {
			fe.add(p, "applyTo %s needs a routeConfiguration match (or none)", applyTo)
		}
	case networking.EnvoyFilter_CLUSTER:
		if m.GetListener() != nil || m.GetRouteConfiguration() != nil || m.GetWaypoint() != nil {
			fe.add(p, "applyTo %s needs a cluster match (or none)", applyTo)
		}
	}
	if m.GetWaypoint() != nil {
		fe.add(p+".waypoint", "waypoint match is not supported yet")
	}
	if l := m.GetListener(); l != nil {
		if l.GetPortName() != "" {
			fe.add(p+".listener.portName", "portName is not supported (Istio does not implement it either): use portNumber")
		}
		if l.GetListenerFilter() != "" {
			fe.add(p+".listener.listenerFilter", "listenerFilter is not supported yet")
		}
		if f := l.GetFilterChain().GetFilter(); f != nil {
			if f.GetSubFilter() != nil {
				if applyTo != networking.EnvoyFilter_HTTP_FILTER {
					fe.add(p+".listener.filterChain.filter.subFilter", "subFilter applies only to applyTo HTTP_FILTER")
				}
				if CanonicalFilterName(f.GetName()) != HCMFilterName {
					fe.add(p+".listener.filterChain.filter.name", "a subFilter match needs filter name %s", HCMFilterName)
				}
			}
			if applyTo == networking.EnvoyFilter_HTTP_FILTER && f.GetName() != "" && CanonicalFilterName(f.GetName()) != HCMFilterName {
				fe.add(p+".listener.filterChain.filter.name", "HTTP filters live in %s: applyTo HTTP_FILTER cannot match filter %s", HCMFilterName, quoteShort(f.GetName()))
			}
		}
	}
	if rc := m.GetRouteConfiguration(); rc != nil && (rc.GetPortName() != "" || rc.GetGateway() != "") &&
		(ctx == networking.EnvoyFilter_SIDECAR_INBOUND || ctx == networking.EnvoyFilter_SIDECAR_OUTBOUND) {
		fe.add(p+".routeConfiguration", "portName and gateway match only gateways' route configurations (context GATEWAY or ANY), not %s", ctx)
	}
}

func opNames(ops []networking.EnvoyFilter_Patch_Operation) string {
	s := ""
	for i, o := range ops {
		if i > 0 {
			s += ", "
		}
		s += o.String()
	}
	return s
}
