package cluster

import (
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	odcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/outlier_detection_monitors/common/v3"
	consecutivev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/outlier_detection_monitors/consecutive_errors/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"
)

// applyOutlierDetection maps outlierDetection to Envoy outlier detection, as Istio does:
// consecutive5xxErrors (or the deprecated consecutiveErrors) -> consecutive_5xx enforced at 100%
// (0 disables it); consecutiveGatewayErrors -> consecutive_gateway_failure; splitExternalLocalOriginErrors
// and consecutiveLocalOriginFailures -> local-origin detection; interval, baseEjectionTime,
// maxEjectionPercent as such; minHealthPercent -> common_lb_config.healthy_panic_threshold;
// outlierDetectionHttpErrorCodes -> a consecutive-errors monitor counting exactly those codes.
// Success-rate ejection is disabled (Istio does not expose it).
func applyOutlierDetection(c *clusterv3.Cluster, od *networking.OutlierDetection, r *Rule) error {
	if od == nil {
		return nil
	}
	out := &clusterv3.OutlierDetection{EnforcingSuccessRate: wrapperspb.UInt32(0)}
	// Envoy's default consecutive_5xx is 5 and enabled; Istio disables it unless asked.
	out.EnforcingConsecutive_5Xx = wrapperspb.UInt32(0)
	out.EnforcingConsecutiveGatewayFailure = wrapperspb.UInt32(0)
	if v := od.GetConsecutive_5XxErrors(); v != nil {
		out.Consecutive_5Xx = wrapperspb.UInt32(v.GetValue())
		if v.GetValue() > 0 {
			out.EnforcingConsecutive_5Xx = wrapperspb.UInt32(100)
		}
	} else if n := od.GetConsecutiveErrors(); n > 0 {
		out.Consecutive_5Xx = wrapperspb.UInt32(uint32(n))
		out.EnforcingConsecutive_5Xx = wrapperspb.UInt32(100)
	}
	if v := od.GetConsecutiveGatewayErrors(); v != nil {
		out.ConsecutiveGatewayFailure = wrapperspb.UInt32(v.GetValue())
		if v.GetValue() > 0 {
			out.EnforcingConsecutiveGatewayFailure = wrapperspb.UInt32(100)
		}
	}
	if od.GetSplitExternalLocalOriginErrors() {
		out.SplitExternalLocalOriginErrors = true
		if v := od.GetConsecutiveLocalOriginFailures(); v != nil {
			out.ConsecutiveLocalOriginFailure = wrapperspb.UInt32(v.GetValue())
			out.EnforcingConsecutiveLocalOriginFailure = wrapperspb.UInt32(100)
		}
		out.EnforcingLocalOriginSuccessRate = wrapperspb.UInt32(0)
	} else if od.GetConsecutiveLocalOriginFailures() != nil {
		return r.errf("trafficPolicy.outlierDetection.consecutiveLocalOriginFailures", "needs splitExternalLocalOriginErrors: true")
	}
	if d := od.GetInterval(); d != nil {
		out.Interval = durationpb.New(d.AsDuration())
	}
	if d := od.GetBaseEjectionTime(); d != nil {
		out.BaseEjectionTime = durationpb.New(d.AsDuration())
	}
	if p := od.GetMaxEjectionPercent(); p > 0 {
		out.MaxEjectionPercent = wrapperspb.UInt32(uint32(p))
	}
	if codes := od.GetOutlierDetectionHttpErrorCodes(); len(codes) > 0 {
		threshold := uint32(5)
		if v := od.GetConsecutive_5XxErrors(); v != nil && v.GetValue() > 0 {
			threshold = v.GetValue()
		}
		buckets := &odcommonv3.ErrorBuckets{}
		for _, code := range codes {
			buckets.HttpErrors = append(buckets.HttpErrors, &odcommonv3.HttpErrors{
				Range: &typev3.Int32Range{Start: int32(code), End: int32(code) + 1}})
		}
		mon, err := anypb.New(&consecutivev3.ConsecutiveErrors{Name: "http-error-codes",
			Threshold: wrapperspb.UInt32(threshold), Enforcing: wrapperspb.UInt32(100), ErrorBuckets: buckets})
		if err != nil {
			return r.errf("trafficPolicy.outlierDetection.outlierDetectionHttpErrorCodes", "encoding monitor: %v", err)
		}
		out.Monitors = []*corev3.TypedExtensionConfig{{Name: "envoy.outlier_detection_monitors.consecutive_errors", TypedConfig: mon}}
		// The monitor replaces 5xx counting: only the listed codes count.
		out.EnforcingConsecutive_5Xx = wrapperspb.UInt32(0)
	}
	c.OutlierDetection = out
	if c.CommonLbConfig == nil {
		c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{}
	}
	c.CommonLbConfig.HealthyPanicThreshold = &typev3.Percent{Value: float64(od.GetMinHealthPercent())}
	return nil
}
