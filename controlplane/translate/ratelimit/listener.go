package ratelimit

import (
	"fmt"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/strait-mesh/strait/controlplane/config"
)

// Listener returns l with the filters of policies (see Filters; service as there) at the front
// of the HTTP filters of each of its HTTP connection managers, the port of each being its filter
// chain's destination_port or else the listener's port; l itself, unmodified, when no rule
// applies. The Global rules' route rate_limits are added to a connection manager's inline
// route_config (RouteConfiguration) or, for one that uses RDS, returned by route configuration
// name for the caller to add: a name used by several connection managers that need different
// rate_limits is an error. l is never modified: what changes is copied.
func Listener(l *listenerv3.Listener, policies []*config.Object, service bool) (*listenerv3.Listener, map[string][]*routev3.RateLimit, error) {
	if len(policies) == 0 {
		return l, nil, nil
	}
	var rds map[string][]*routev3.RateLimit
	port := l.GetAddress().GetSocketAddress().GetPortValue()
	var out *listenerv3.Listener
	patch := func(fc *listenerv3.FilterChain) (*listenerv3.FilterChain, error) {
		p := port
		if dp := fc.GetFilterChainMatch().GetDestinationPort(); dp != nil {
			p = dp.GetValue()
		}
		var chain *listenerv3.FilterChain
		for i, f := range fc.GetFilters() {
			if f.GetName() != config.HCMFilterName {
				continue
			}
			ch, err := Filters(policies, p, service)
			if err != nil || len(ch.Filters) == 0 {
				return nil, err
			}
			hcm := &hcmv3.HttpConnectionManager{}
			if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
				return nil, fmt.Errorf("listener %s: filter chain %q: decoding the connection manager: %w", l.GetName(), fc.GetName(), err)
			}
			hcm.HttpFilters = append(ch.Filters, hcm.GetHttpFilters()...)
			if len(ch.RateLimits) > 0 {
				switch rs := hcm.GetRouteSpecifier().(type) {
				case *hcmv3.HttpConnectionManager_RouteConfig:
					rs.RouteConfig = RouteConfiguration(rs.RouteConfig, ch.RateLimits)
				case *hcmv3.HttpConnectionManager_Rds:
					name := rs.Rds.GetRouteConfigName()
					if prev, ok := rds[name]; ok && !equalRateLimits(prev, ch.RateLimits) {
						return nil, fmt.Errorf("listener %s: filter chain %q: route configuration %q is shared with a connection manager on another port that other Global rules apply to", l.GetName(), fc.GetName(), name)
					}
					if rds == nil {
						rds = map[string][]*routev3.RateLimit{}
					}
					rds[name] = ch.RateLimits
				default:
					return nil, fmt.Errorf("listener %s: filter chain %q: a Global rule needs the connection manager's route configuration (inline or RDS)", l.GetName(), fc.GetName())
				}
			}
			tc, err := anypb.New(hcm)
			if err != nil {
				return nil, fmt.Errorf("listener %s: filter chain %q: encoding the connection manager: %w", l.GetName(), fc.GetName(), err)
			}
			if chain == nil {
				chain = proto.Clone(fc).(*listenerv3.FilterChain)
			}
			chain.Filters[i] = &listenerv3.Filter{Name: f.GetName(), ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: tc}}
		}
		return chain, nil
	}
	for i, fc := range l.GetFilterChains() {
		chain, err := patch(fc)
		if err != nil {
			return nil, nil, err
		}
		if chain == nil {
			continue
		}
		if out == nil {
			out = proto.Clone(l).(*listenerv3.Listener)
		}
		out.FilterChains[i] = chain
	}
	if dc := l.GetDefaultFilterChain(); dc != nil {
		chain, err := patch(dc)
		if err != nil {
			return nil, nil, err
		}
		if chain != nil {
			if out == nil {
				out = proto.Clone(l).(*listenerv3.Listener)
			}
			out.DefaultFilterChain = chain
		}
	}
	if out == nil {
		return l, nil, nil
	}
	return out, rds, nil
}

// equalRateLimits reports whether a and b are the same rate_limits.
func equalRateLimits(a, b []*routev3.RateLimit) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}
