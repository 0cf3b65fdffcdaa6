package ratelimit

import (
	"fmt"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/strait-mesh/strait/controlplane/config"
)

// Listener returns l with the filters of policies (see Filters) at the front of the HTTP
// filters of each of its HTTP connection managers, the port of each being its filter chain's
// destination_port or else the listener's port; l itself, unmodified, when no rule applies. l is
// never modified: what changes is copied.
func Listener(l *listenerv3.Listener, policies []*config.Object) (*listenerv3.Listener, error) {
	if len(policies) == 0 {
		return l, nil
	}
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
			rls, err := Filters(policies, p)
			if err != nil || len(rls) == 0 {
				return nil, err
			}
			hcm := &hcmv3.HttpConnectionManager{}
			if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
				return nil, fmt.Errorf("listener %s: filter chain %q: decoding the connection manager: %w", l.GetName(), fc.GetName(), err)
			}
			hcm.HttpFilters = append(rls, hcm.GetHttpFilters()...)
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
			return nil, err
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
			return nil, err
		}
		if chain != nil {
			if out == nil {
				out = proto.Clone(l).(*listenerv3.Listener)
			}
			out.DefaultFilterChain = chain
		}
	}
	if out == nil {
		return l, nil
	}
	return out, nil
}
