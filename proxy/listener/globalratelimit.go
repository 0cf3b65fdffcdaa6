package listener

import (
	"context"

	"google.golang.org/protobuf/types/known/anypb"

	"github.com/strait-mesh/strait/proxy/ratelimit"
	rlnetv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/ratelimit/v3"
)

// typeNetworkGlobalRateLimit is the type URL of envoy.filters.network.ratelimit.
const typeNetworkGlobalRateLimit = ratelimit.NetworkGlobalTypeURL

// connGlobalRateLimit is a compiled envoy.filters.network.ratelimit with its statistics.
type connGlobalRateLimit struct {
	cfg    *ratelimit.NetworkGlobal
	caller clusterCaller
	ctx    context.Context // the chain's: done when the listener closes
	st     *ratelimit.NetworkGlobalStats
}

var _ netFilter = (*connGlobalRateLimit)(nil)

func compileNetworkGlobalRateLimit(ctx context.Context, a *anypb.Any, env Env, path string) (*connGlobalRateLimit, error) {
	c, err := compileTyped(a, path, func(c *rlnetv3.RateLimit, field string) (*ratelimit.NetworkGlobal, error) {
		return ratelimit.CompileNetworkGlobal(field, c)
	})
	if err != nil {
		return nil, err
	}
	return &connGlobalRateLimit{cfg: c, caller: clusterCaller{env: env, name: c.Client.Cluster}, ctx: ctx,
		st: ratelimit.NewNetworkGlobalStats(envStats(env), c.StatPrefix)}, nil
}

// onConnection runs the filter with Envoy's semantics: every new connection is one
// ShouldRateLimit call (domain and the configured descriptors) through the proxy's own cluster,
// within the filter's timeout, and none of its data is forwarded (the terminal does not see
// the connection) until the service answers. OK continues; OVER_LIMIT closes the connection
// (cx_closed); a failed call (no answer in time, a transport or gRPC error, an UNKNOWN code)
// closes it with failure_mode_deny (cx_closed), else continues (failure_mode_allowed). The
// reply's dynamic_metadata goes to the connection's envoy.filters.network.ratelimit namespace.
// A connection the client closes during the call is closed and its call cancelled, counted in
// total only, as Envoy does. Envoy's runtime keys ratelimit.tcp_filter_enabled and
// ratelimit.tcp_filter_enforcing have their default, 100%: strait-proxy has no runtime layer.
func (f *connGlobalRateLimit) onConnection(cs *connState) bool {
	f.st.Total.Inc()
	f.st.Active.Inc()
	var out ratelimit.Outcome
	gone := holdDuring(f.ctx, cs, func(ctx context.Context) {
		out = f.cfg.Client.Check(ctx, f.caller, f.cfg.Domain, &f.cfg.Descriptors)
	})
	f.st.Active.Dec()
	if gone {
		return false
	}
	if out.Metadata != nil {
		cs.md.set(ratelimit.NetworkGlobalFilterName, out.Metadata)
	}
	switch out.Code {
	case ratelimit.CodeOK:
		f.st.OK.Inc()
		return true
	case ratelimit.CodeOverLimit:
		f.st.OverLimit.Inc()
	default:
		f.st.Error.Inc()
		if !f.cfg.FailureModeDeny {
			f.st.FailureModeAllowed.Inc()
			return true
		}
	}
	f.st.CxClosed.Inc()
	return false
}
