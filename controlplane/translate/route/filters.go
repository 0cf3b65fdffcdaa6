package route

import (
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	faultcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"
)

// HTTP filter names under which routes carry per-route config. The listener generator must
// install these filters (before the router) in every HTTP connection manager whose routes can
// use them; a route's typed_per_filter_config for an absent filter has no effect in Envoy.
const (
	FaultFilterName = "envoy.filters.http.fault"
	CORSFilterName  = "envoy.filters.http.cors"
)

// fault maps HTTPFaultInjection to the fault filter's per-route HTTPFault. A delay or abort
// without a percentage affects no request (the API's documented default), so it is emitted
// with an explicit 0%.
func fault(in *networking.HTTPFaultInjection) (*faultv3.HTTPFault, error) {
	if in.Delay == nil && in.Abort == nil {
		return nil, errf("", "neither delay nor abort is set")
	}
	out := &faultv3.HTTPFault{}
	if d := in.Delay; d != nil {
		fd := &faultcommonv3.FaultDelay{}
		switch t := d.HttpDelayType.(type) {
		case *networking.HTTPFaultInjection_Delay_FixedDelay:
			if err := t.FixedDelay.CheckValid(); err != nil || t.FixedDelay.AsDuration() <= 0 {
				return nil, errf("delay.fixedDelay", "invalid duration %v", t.FixedDelay)
			}
			fd.FaultDelaySecifier = &faultcommonv3.FaultDelay_FixedDelay{FixedDelay: proto.Clone(t.FixedDelay).(*durationpb.Duration)}
		case *networking.HTTPFaultInjection_Delay_ExponentialDelay:
			return nil, errf("delay.exponentialDelay", "not supported (Envoy has fixed delays only)")
		default:
			return nil, errf("delay.fixedDelay", "required")
		}
		p, err := faultPercent(d.Percentage, d.Percent)
		if err != nil {
			return nil, atField("delay.percentage", err)
		}
		fd.Percentage = p
		out.Delay = fd
	}
	if a := in.Abort; a != nil {
		fa := &faultv3.FaultAbort{}
		switch t := a.ErrorType.(type) {
		case *networking.HTTPFaultInjection_Abort_HttpStatus:
			if t.HttpStatus < 200 || t.HttpStatus >= 600 {
				return nil, errf("abort.httpStatus", "%d is not an HTTP status in [200, 599]", t.HttpStatus)
			}
			fa.ErrorType = &faultv3.FaultAbort_HttpStatus{HttpStatus: uint32(t.HttpStatus)}
		case *networking.HTTPFaultInjection_Abort_GrpcStatus:
			code, ok := grpcCode(t.GrpcStatus)
			if !ok {
				return nil, errf("abort.grpcStatus", "%q is not a gRPC status code name (e.g. UNAVAILABLE)", t.GrpcStatus)
			}
			fa.ErrorType = &faultv3.FaultAbort_GrpcStatus{GrpcStatus: code}
		case *networking.HTTPFaultInjection_Abort_Http2Error:
			return nil, errf("abort.http2Error", "not supported by Envoy's fault filter")
		default:
			return nil, errf("abort", "httpStatus or grpcStatus is required")
		}
		p, err := faultPercent(a.Percentage, 0)
		if err != nil {
			return nil, atField("abort.percentage", err)
		}
		fa.Percentage = p
		out.Abort = fa
	}
	return out, nil
}

// faultPercent converts a fault percentage: percentage (per million), else the deprecated
// integer percent (per hundred; 0 when unset).
func faultPercent(p *networking.Percent, legacy int32) (*typev3.FractionalPercent, error) {
	if p != nil {
		return percentage(p.Value)
	}
	if legacy < 0 || legacy > 100 {
		return nil, errf("", "%d is not a percentage in [0, 100]", legacy)
	}
	return &typev3.FractionalPercent{Numerator: uint32(legacy), Denominator: typev3.FractionalPercent_HUNDRED}, nil
}

// grpcCodes maps gRPC status code names (as Istio accepts them) to numbers.
var grpcCodes = map[string]uint32{
	"OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4, "NOT_FOUND": 5,
	"ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8, "FAILED_PRECONDITION": 9,
	"ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12, "INTERNAL": 13, "UNAVAILABLE": 14,
	"DATA_LOSS": 15, "UNAUTHENTICATED": 16,
}

func grpcCode(s string) (uint32, bool) {
	if c, ok := grpcCodes[strings.ToUpper(strings.TrimSpace(s))]; ok {
		return c, true
	}
	if n, err := strconv.ParseUint(s, 10, 32); err == nil && n <= 16 {
		return uint32(n), true
	}
	return 0, false
}

// cors maps CorsPolicy to the CORS filter's per-route policy: allowOrigins (else the deprecated
// allowOrigin list, as exact matches), comma-joined methods and headers, maxAge in seconds.
func cors(in *networking.CorsPolicy) (*corsv3.CorsPolicy, error) {
	out := &corsv3.CorsPolicy{
		AllowMethods:  strings.Join(in.AllowMethods, ","),
		AllowHeaders:  strings.Join(in.AllowHeaders, ","),
		ExposeHeaders: strings.Join(in.ExposeHeaders, ","),
		FilterEnabled: &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: 100, Denominator: typev3.FractionalPercent_HUNDRED}},
	}
	if in.AllowOrigins == nil {
		for _, o := range in.AllowOrigin { // deprecated exact origins, used when allowOrigins is unset
			out.AllowOriginStringMatch = append(out.AllowOriginStringMatch, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: o}})
		}
	}
	for i, o := range in.AllowOrigins {
		sm, err := stringMatcher(o, false)
		if err != nil {
			return nil, atField("allowOrigins["+strconv.Itoa(i)+"]", err)
		}
		out.AllowOriginStringMatch = append(out.AllowOriginStringMatch, sm)
	}
	if in.MaxAge != nil {
		if err := in.MaxAge.CheckValid(); err != nil || in.MaxAge.AsDuration() < 0 || in.MaxAge.Nanos != 0 {
			return nil, errf("maxAge", "%v is not a whole number of seconds", in.MaxAge)
		}
		out.MaxAge = strconv.FormatInt(in.MaxAge.Seconds, 10)
	}
	if in.AllowCredentials != nil {
		out.AllowCredentials = wrapperspb.Bool(in.AllowCredentials.Value)
	}
	// Unset means FORWARD (Envoy's behaviour before 1.30), set explicitly as Istio does.
	out.ForwardNotMatchingPreflights = wrapperspb.Bool(in.UnmatchedPreflights != networking.CorsPolicy_IGNORE)
	return out, nil
}
