package l7

import (
	"strings"

	"github.com/strait-mesh/strait/proxy/route"
	"github.com/strait-mesh/strait/proxy/telemetry"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
)

// istioStatsFilter compiles Istio's stats filter (istio.stats, a stats.PluginConfig or a
// TypedStruct carrying one). It has no request-path stage: its configuration changes how the
// finished request is recorded in Istio's standard metrics (applyIstioStats). Without the
// filter the connection manager records the standard metrics unchanged (unlike Envoy, which
// records none without it), so that a control plane need not send it; to turn the metrics off
// it sends the filter with an override that drops every metric: the connection manager then
// does no recording work on the request path at all (no recorder, so no host report, no gRPC
// message counting, no metrics record), as Envoy's filter is then a no-op.
func (h *Handler) istioStatsFilter(field string, f *hcmv3.HttpFilter) (Filter, error) {
	if f.GetDisabled() {
		return nil, &route.UnsupportedError{Field: field + ".disabled", Detail: "a disabled istio.stats filter"}
	}
	if h.istioStats != nil {
		return nil, &route.UnsupportedError{Field: field, Detail: "a second istio.stats filter"}
	}
	c, err := telemetry.CompileStatsConfig(field+".typed_config", f.GetTypedConfig())
	if err != nil {
		return nil, err
	}
	h.istioStats = c
	if c.Overrides.DropsAll() {
		// Every HTTP metric is dropped: this connection manager records nothing, so it needs
		// none of the recorder's per-request work (telemetry.go checks opts.Telemetry).
		h.opts.Telemetry = nil
	}
	return func(next StreamHandler) StreamHandler { return next }, nil
}

// applyIstioStats applies the istio.stats configuration to a finished request's metrics
// record: the host header fallback, and the overrides with the request's dimension values,
// evaluated only when the configuration has dimensions. false: every metric is dropped.
//
//go:noinline
func (h *Handler) applyIstioStats(s *Stream, q *telemetry.HTTPRequest) bool {
	c := h.istioStats
	if c == nil {
		return true
	}
	if c.DisableHostHeaderFallback && q.Reporter == telemetry.Source && !strings.HasPrefix(q.Cluster, "outbound|") {
		q.Authority = "" // destination_service: unknown rather than the request's host
	}
	o := c.Overrides
	if o == nil {
		return true
	}
	if o.DropsAll() {
		return false
	}
	q.Overrides = o
	if o.HasDimensions() {
		r := h.record(s)
		o.Evaluate(r, &q.Dimensions)
		putRecord(r)
	}
	return true
}

// needsHostReport reports whether a finished request must know its upstream host: for the
// access log, or for istio.stats dimensions (upstream.address).
func (h *Handler) needsHostReport() bool {
	return h.accessLog != nil || (h.istioStats != nil && h.istioStats.Overrides.HasDimensions())
}
