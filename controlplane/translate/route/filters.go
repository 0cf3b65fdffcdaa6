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

	"github.com/strait-mesh/strait/internal/vocab"
)

// fault maps HTTPFaultInjection to the fault filter's per-route HTTPFault. A delay or abort
// without a percentage affects no request (the API's documented default), so it is emitted
// with an explicit 0%. Validation (controlplane/config: validateFault) guarantees the delay's
// duration, the abort's status and the percentages; what Envoy's fault filter cannot express is
// reported here.
func fault(in *networking.HTTPFaultInjection) (*faultv3.HTTPFault, error) {
	if in.Delay == nil && in.Abort == nil {
		return nil, errf("", "neither delay nor abort is set")
	}
	out := &faultv3.HTTPFault{}
	if d := in.Delay; d != nil {
		fd := &faultcommonv3.FaultDelay{}
		switch t := d.HttpDelayType.(type) {
		case *networking.HTTPFaultInjection_Delay_FixedDelay:
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
			fa.ErrorType = &faultv3.FaultAbort_HttpStatus{HttpStatus: uint32(t.HttpStatus)}
		case *networking.HTTPFaultInjection_Abort_GrpcStatus:
			code, _ := vocab.GRPCStatus(t.GrpcStatus) // validated
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
