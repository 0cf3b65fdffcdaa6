package route

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	previousprioritiesv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/priority/previous_priorities/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/internal/vocab"
)

// headerOps are translated Headers operations for one direction pair.
type headerOps struct {
	reqAdd, respAdd       []*corev3.HeaderValueOption
	reqRemove, respRemove []string
	// hostRewrite is request.set (else request.add) of ":authority" or "host": Envoy rewrites the
	// authority with host_rewrite_literal, it cannot set pseudo-headers through headers_to_add.
	hostRewrite string
}

// translateHeaders maps Istio header operations: set → OVERWRITE_IF_EXISTS_OR_ADD, add →
// APPEND_IF_EXISTS_OR_ADD, remove → *_headers_to_remove; keys in sorted order.
func translateHeaders(h *networking.Headers) (*headerOps, error) {
	out := &headerOps{}
	var err error
	if req := h.GetRequest(); req != nil {
		for _, k := range sortedKeys(req.Set) {
			if lk := strings.ToLower(k); lk == ":authority" || lk == "host" {
				out.hostRewrite = req.Set[k]
				continue
			}
			if err := checkHeaderName(k); err != nil {
				return nil, atField("request.set["+k+"]", err)
			}
			out.reqAdd = append(out.reqAdd, headerValue(k, req.Set[k], corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD))
		}
		for _, k := range sortedKeys(req.Add) {
			if lk := strings.ToLower(k); lk == ":authority" || lk == "host" {
				if out.hostRewrite == "" { // set wins over add
					out.hostRewrite = req.Add[k]
				}
				continue
			}
			if err := checkHeaderName(k); err != nil {
				return nil, atField("request.add["+k+"]", err)
			}
			out.reqAdd = append(out.reqAdd, headerValue(k, req.Add[k], corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD))
		}
		if out.reqRemove, err = removeList(req.Remove); err != nil {
			return nil, atField("request.remove", err)
		}
	}
	if resp := h.GetResponse(); resp != nil {
		for _, k := range sortedKeys(resp.Set) {
			if err := checkHeaderName(k); err != nil {
				return nil, atField("response.set["+k+"]", err)
			}
			out.respAdd = append(out.respAdd, headerValue(k, resp.Set[k], corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD))
		}
		for _, k := range sortedKeys(resp.Add) {
			if err := checkHeaderName(k); err != nil {
				return nil, atField("response.add["+k+"]", err)
			}
			out.respAdd = append(out.respAdd, headerValue(k, resp.Add[k], corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD))
		}
		if out.respRemove, err = removeList(resp.Remove); err != nil {
			return nil, atField("response.remove", err)
		}
	}
	return out, nil
}

// checkHeaderName rejects names Envoy will not modify through header operations: pseudo-headers
// and Host (the authority is rewritten with request.set of ":authority" or "host" instead).
func checkHeaderName(k string) error {
	if k == "" {
		return errf("", "empty header name")
	}
	if strings.HasPrefix(k, ":") || strings.EqualFold(k, "host") {
		return errf("", "header %q cannot be modified (only request.set may rewrite :authority/host)", k)
	}
	return nil
}

func removeList(names []string) ([]string, error) {
	for _, k := range names {
		if err := checkHeaderName(k); err != nil {
			return nil, err
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	return append([]string(nil), names...), nil
}

func headerValue(k, v string, action corev3.HeaderValueOption_HeaderAppendAction) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}, AppendAction: action}
}

// applyPolicies applies the route-level header operations (then the single destination's, which
// win for the same header; an authority rewrite is taken from rewrite.authority, else the route's
// headers, else the destination's), fault injection and CORS.
func (c *routeCtx) applyPolicies(out *routev3.Route, r *networking.HTTPRoute, destOps *headerOps) error {
	if r.Headers != nil {
		if c.proxyless {
			return errf("headers", "header operations are not supported by proxyless gRPC clients")
		}
		ops, err := translateHeaders(r.Headers)
		if err != nil {
			return atField("headers", err)
		}
		if err := applyHeaderOps(out, ops); err != nil {
			return atField("headers", err)
		}
	}
	if destOps != nil {
		if err := applyHeaderOps(out, destOps); err != nil {
			return atField("route[0].headers", err)
		}
	}
	if r.Fault != nil {
		f, err := fault(r.Fault)
		if err != nil {
			return atField("fault", err)
		}
		if err := setPerFilter(out, vocab.FilterFault, f); err != nil {
			return err
		}
	}
	if r.CorsPolicy != nil {
		if c.proxyless {
			return errf("corsPolicy", "not supported by proxyless gRPC clients")
		}
		p, err := cors(r.CorsPolicy)
		if err != nil {
			return atField("corsPolicy", err)
		}
		if err := setPerFilter(out, vocab.FilterCORS, p); err != nil {
			return err
		}
	}
	return nil
}

func applyHeaderOps(out *routev3.Route, ops *headerOps) error {
	out.RequestHeadersToAdd = append(out.RequestHeadersToAdd, ops.reqAdd...)
	out.RequestHeadersToRemove = append(out.RequestHeadersToRemove, ops.reqRemove...)
	out.ResponseHeadersToAdd = append(out.ResponseHeadersToAdd, ops.respAdd...)
	out.ResponseHeadersToRemove = append(out.ResponseHeadersToRemove, ops.respRemove...)
	if ops.hostRewrite != "" {
		action := out.GetRoute()
		if action == nil {
			return errf("request.set[:authority]", "an authority rewrite needs a route that forwards")
		}
		// The most general rewrite wins, as in Istio: rewrite.authority, then the route's
		// headers, then the destination's.
		if action.HostRewriteSpecifier == nil {
			action.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: ops.hostRewrite}
		}
	}
	return nil
}

func setPerFilter(out *routev3.Route, name string, m proto.Message) error {
	a, err := anypb.New(m)
	if err != nil {
		return fmt.Errorf("packing %s config: %w", name, err)
	}
	if out.TypedPerFilterConfig == nil {
		out.TypedPerFilterConfig = map[string]*anypb.Any{}
	}
	out.TypedPerFilterConfig[name] = a
	return nil
}

// defaultRetryOn is Istio's default retry condition list, in Istio's order.
var defaultRetryOn = vocab.RetryOnList(vocab.RetryConnectFailure, vocab.RetryRefusedStream,
	vocab.RetryGrpcUnavailable, vocab.RetryGrpcCancelled, vocab.RetryRetriableStatusCodes)

// proxylessDefaultRetryOn is the part of defaultRetryOn gRPC's xDS client knows.
var proxylessDefaultRetryOn = vocab.RetryOnList(vocab.RetryGrpcUnavailable, vocab.RetryGrpcCancelled)

// retriableStatusCodes is the condition that retries the codes listed in retryOn.
var retriableStatusCodes = vocab.RetryRetriableStatusCodes.String()

// DefaultRetryPolicy returns Istio's default retry policy for routes without retries: 2 retries on
// connect-failure, refused-stream, unavailable, cancelled and 503, never the same host twice
// (previous_hosts, up to 5 host selection attempts).
func DefaultRetryPolicy() *routev3.RetryPolicy {
	return &routev3.RetryPolicy{
		RetryOn:                       defaultRetryOn,
		NumRetries:                    wrapperspb.UInt32(2),
		RetriableStatusCodes:          []uint32{503},
		RetryHostPredicate:            []*routev3.RetryPolicy_RetryHostPredicate{previousHosts()},
		HostSelectionRetryMaxAttempts: 5,
	}
}

// newRetryPolicy is DefaultRetryPolicy sharing the Builder's immutable host predicate.
func (b *Builder) newRetryPolicy() *routev3.RetryPolicy {
	return &routev3.RetryPolicy{
		RetryOn:                       defaultRetryOn,
		NumRetries:                    wrapperspb.UInt32(2),
		RetriableStatusCodes:          []uint32{503},
		RetryHostPredicate:            b.previousHosts,
		HostSelectionRetryMaxAttempts: 5,
	}
}

func previousHosts() *routev3.RetryPolicy_RetryHostPredicate {
	a, _ := anypb.New(&previoushostsv3.PreviousHostsPredicate{}) // cannot fail for a registered type
	return &routev3.RetryPolicy_RetryHostPredicate{
		Name:       vocab.PreviousHostsPredicate,
		ConfigType: &routev3.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: a},
	}
}

// grpcRetryOnNames lists the retry conditions gRPC's xDS client implements.
func grpcRetryOnNames() string {
	var names []string
	for _, c := range vocab.RetryConditions() {
		if c.GRPC() {
			names = append(names, c.Name)
		}
	}
	return strings.Join(names, ", ")
}

// retryPolicy maps HTTPRetry. nil means the mesh's defaultHttpRetryPolicy, else Istio's
// default; attempts 0 disables retries. hashed tells that the route hashes to an endpoint
// (consistentHash): retries then do not move away from previously tried hosts unless
// retryIgnorePreviousHosts says so, as in Istio.
func (c *routeCtx) retryPolicy(in *networking.HTTPRetry, hashed bool) (*routev3.RetryPolicy, error) {
	if in == nil {
		switch {
		case c.proxyless:
			return nil, nil // gRPC has its own defaults; Istio's HTTP conditions do not apply
		case hashed:
			return c.b.defaultRetryHashed, nil
		}
		return c.b.defaultRetry, nil
	}
	return c.convertRetry(in, hashed)
}

// convertRetry maps an explicit HTTPRetry onto the default policy: numbers in retryOn become
// retriable_status_codes (with the retriable-status-codes condition), the other entries are
// retry conditions. It converts what validation (controlplane/config: validateRetries, for
// VirtualServices and the mesh config's defaultHttpRetryPolicy) accepted and does not check it
// again: attempts are not negative, retryOn holds vocab's conditions and HTTP status codes, and
// durations are at least 1ms.
func (c *routeCtx) convertRetry(in *networking.HTTPRetry, hashed bool) (*routev3.RetryPolicy, error) {
	if in.Attempts <= 0 {
		return nil, nil
	}
	out := c.b.newRetryPolicy()
	if hashed {
		out.RetryHostPredicate = nil
	}
	out.NumRetries = wrapperspb.UInt32(uint32(in.Attempts))
	if in.RetryOn != "" {
		var conds []string
		out.RetriableStatusCodes = nil
		for _, s := range strings.Split(in.RetryOn, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			if code, err := strconv.Atoi(s); err == nil {
				out.RetriableStatusCodes = append(out.RetriableStatusCodes, uint32(code))
				continue
			}
			if !contains(conds, s) {
				conds = append(conds, s)
			}
		}
		if len(out.RetriableStatusCodes) > 0 && !contains(conds, retriableStatusCodes) {
			conds = append(conds, retriableStatusCodes)
		}
		out.RetryOn = strings.Join(conds, ",")
	}
	if in.PerTryTimeout != nil {
		out.PerTryTimeout = proto.Clone(in.PerTryTimeout).(*durationpb.Duration)
	}
	if in.Backoff != nil {
		out.RetryBackOff = &routev3.RetryPolicy_RetryBackOff{BaseInterval: proto.Clone(in.Backoff).(*durationpb.Duration)}
	}
	if in.RetryIgnorePreviousHosts != nil {
		out.RetryHostPredicate = nil
		if in.RetryIgnorePreviousHosts.Value {
			out.RetryHostPredicate = c.b.previousHosts
		}
	}
	if in.RetryRemoteLocalities.GetValue() {
		// Retry in other priorities (localities), recomputing the priority load every 2 attempts.
		a, err := anypb.New(&previousprioritiesv3.PreviousPrioritiesConfig{UpdateFrequency: 2})
		if err != nil {
			return nil, fmt.Errorf("packing retry priority: %w", err)
		}
		out.RetryPriority = &routev3.RetryPolicy_RetryPriority{
			Name:       vocab.PreviousPrioritiesPredicate,
			ConfigType: &routev3.RetryPolicy_RetryPriority_TypedConfig{TypedConfig: a},
		}
	}
	if c.proxyless {
		if in.RetryOn == "" {
			// Istio's default conditions that gRPC knows; the others are HTTP-only.
			out.RetryOn, out.RetriableStatusCodes = proxylessDefaultRetryOn, nil
		}
		return proxylessRetry(out)
	}
	return out, nil
}

// proxylessRetry keeps what gRPC's xDS client reads (retry_on with gRPC status conditions,
// num_retries, retry_back_off) and rejects the rest.
func proxylessRetry(p *routev3.RetryPolicy) (*routev3.RetryPolicy, error) {
	for _, cond := range strings.Split(p.RetryOn, ",") {
		if rc, ok := vocab.LookupRetryCondition(cond); cond != "" && (!ok || !rc.GRPC()) {
			return nil, errf("retryOn", "%q is not a retry condition gRPC supports (%s)", cond, grpcRetryOnNames())
		}
	}
	if len(p.RetriableStatusCodes) > 0 {
		return nil, errf("retryOn", "HTTP status codes are not supported by proxyless gRPC clients")
	}
	if p.PerTryTimeout != nil {
		return nil, errf("perTryTimeout", "not supported by proxyless gRPC clients")
	}
	if p.RetryPriority != nil {
		return nil, errf("retryRemoteLocalities", "not supported by proxyless gRPC clients")
	}
	return &routev3.RetryPolicy{RetryOn: p.RetryOn, NumRetries: p.NumRetries, RetryBackOff: p.RetryBackOff}, nil
}

// mirrors maps mirror (+ mirrorPercentage, or the deprecated integer mirrorPercent) and
// mirrors[] to request_mirror_policies. No percentage means 100%; an explicit 0% mirrors nothing,
// so no policy is emitted for it (as Istio).
func (c *routeCtx) mirrors(action *routev3.RouteAction, r *networking.HTTPRoute) error {
	if r.Mirror == nil && len(r.Mirrors) == 0 {
		if r.MirrorPercentage != nil || r.MirrorPercent != nil {
			return errf("mirrorPercentage", "set without mirror")
		}
		return nil
	}
	if c.proxyless {
		return errf("mirror", "not supported by proxyless gRPC clients")
	}
	if r.Mirror != nil && len(r.Mirrors) > 0 {
		return errf("mirrors", "mirror and mirrors are mutually exclusive")
	}
	if r.Mirror != nil {
		var frac *typev3.FractionalPercent
		var err error
		switch {
		case r.MirrorPercentage != nil && r.MirrorPercent != nil:
			return errf("mirrorPercent", "mirrorPercent and mirrorPercentage are mutually exclusive")
		case r.MirrorPercentage != nil:
			frac, err = percentage(r.MirrorPercentage.Value)
		case r.MirrorPercent != nil:
			if r.MirrorPercent.Value > 100 {
				return errf("mirrorPercent", "%d is not a percentage in [0, 100]", r.MirrorPercent.Value)
			}
			frac = &typev3.FractionalPercent{Numerator: r.MirrorPercent.Value, Denominator: typev3.FractionalPercent_HUNDRED}
		default:
			frac = hundredPercent()
		}
		if err != nil {
			return atField("mirrorPercentage", err)
		}
		if frac.Numerator == 0 {
			return nil
		}
		p, err := c.mirrorPolicy(r.Mirror, frac)
		if err != nil {
			return atField("mirror", err)
		}
		action.RequestMirrorPolicies = append(action.RequestMirrorPolicies, p)
		return nil
	}
	for i, m := range r.Mirrors {
		field := "mirrors[" + strconv.Itoa(i) + "]"
		if m.Destination == nil {
			return errf(field+".destination", "required")
		}
		frac := hundredPercent()
		if m.Percentage != nil {
			var err error
			if frac, err = percentage(m.Percentage.Value); err != nil {
				return atField(field+".percentage", err)
			}
		}
		if frac.Numerator == 0 {
			continue
		}
		p, err := c.mirrorPolicy(m.Destination, frac)
		if err != nil {
			return atField(field+".destination", err)
		}
		action.RequestMirrorPolicies = append(action.RequestMirrorPolicies, p)
	}
	return nil
}

func (c *routeCtx) mirrorPolicy(d *networking.Destination, frac *typev3.FractionalPercent) (*routev3.RouteAction_RequestMirrorPolicy, error) {
	rd, err := c.destination(d)
	if err != nil {
		return nil, err
	}
	return &routev3.RouteAction_RequestMirrorPolicy{
		Cluster:         rd.cluster,
		RuntimeFraction: &corev3.RuntimeFractionalPercent{DefaultValue: frac},
	}, nil
}

func hundredPercent() *typev3.FractionalPercent {
	return &typev3.FractionalPercent{Numerator: 100, Denominator: typev3.FractionalPercent_HUNDRED}
}

// percentage converts an Istio percentage in [0, 100] (fractional allowed) to Envoy's
// per-million fraction, as Istio does.
func percentage(v float64) (*typev3.FractionalPercent, error) {
	if math.IsNaN(v) || v < 0 || v > 100 {
		return nil, errf("", "%v is not a percentage in [0, 100]", v)
	}
	return &typev3.FractionalPercent{Numerator: uint32(math.Round(v * 10000)), Denominator: typev3.FractionalPercent_MILLION}, nil
}
