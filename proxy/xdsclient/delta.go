package xdsclient

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/status"

	"github.com/strait-mesh/strait/internal/grpclite"
	discoveryv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/service/discovery/v3"
)

// deltaStream is the per-stream state of an incremental ADS stream.
type deltaStream struct {
	c          *Client
	stream     *deltaADS
	subscribed map[string]map[string]bool // names subscribed on this stream, per non-wildcard type
	demanded   map[demandKey]bool         // demands subscribed on this stream
	started    map[string]bool            // a request for the type was sent on this stream
	first      bool                       // the node has not been sent yet
	// view is what the server believes this client has: every response is applied to it,
	// accepted or not, because the server tracks versions sent rather than versions ACKed. The
	// next response is merged onto the view, so a rejected update followed by a fix converges.
	view map[string]map[string]*Resource
}

// runDelta runs one Delta stream until it fails. got reports whether any response arrived.
func (c *Client) runDelta(ctx context.Context, conn *grpclite.Conn) (got bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := openDelta(ctx, conn)
	if err != nil {
		return false, fmt.Errorf("opening delta ads stream: %w", err)
	}
	s := &deltaStream{c: c, stream: stream, subscribed: map[string]map[string]bool{}, demanded: map[demandKey]bool{}, started: map[string]bool{}, first: true, view: map[string]map[string]*Resource{}}
	for t, set := range c.accepted {
		s.view[t] = copySet(set)
	}
	recv := pump(ctx, stream.Recv)
	if err := s.sync(); err != nil {
		return false, s.sendErr(ctx, recv, err)
	}
	c.markConnected("delta")
	defer c.markDisconnected()
	for {
		select {
		case <-ctx.Done():
			return got, ctx.Err()
		case <-c.wake:
			if err := s.sync(); err != nil {
				return got, fmt.Errorf("sending delta subscription: %w", err)
			}
		case r := <-recv:
			if r.err != nil {
				if !got && grpclite.CodeOf(r.err) == grpclite.Unimplemented {
					return false, errUnimplemented
				}
				return got, fmt.Errorf("receiving delta ads: %w", r.err)
			}
			got = true
			if err := s.handle(r.resp); err != nil {
				return got, fmt.Errorf("sending delta ack: %w", err)
			}
			// Subscriptions changed by the handler go out after the ACK.
			if err := s.sync(); err != nil {
				return got, fmt.Errorf("sending delta subscription: %w", err)
			}
		}
	}
}

// sendErr turns a failed first Send into the stream's real status (Send reports io.EOF when the
// server rejected the stream; Recv carries the code).
func (s *deltaStream) sendErr(ctx context.Context, recv <-chan received[*discoveryv3.DeltaDiscoveryResponse], err error) error {
	select {
	case r := <-recv:
		if r.err != nil {
			if grpclite.CodeOf(r.err) == grpclite.Unimplemented {
				return errUnimplemented
			}
			return fmt.Errorf("opening delta ads stream: %w", r.err)
		}
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
	}
	return fmt.Errorf("sending first delta request: %w", err)
}

func (s *deltaStream) send(req *discoveryv3.DeltaDiscoveryRequest) error {
	if s.first {
		req.Node = s.c.streamNode()
		s.first = false
	}
	return s.stream.Send(req)
}

// sync sends, per type in Envoy's order, the first request or the subscription changes since the
// last request.
func (s *deltaStream) sync() error {
	for _, t := range Types {
		if isWildcard(t) {
			if s.started[t] {
				if t == ListenerType {
					continue
				}
				if names := s.newDemands(t); len(names) > 0 {
					if err := s.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: t, ResourceNamesSubscribe: names}); err != nil {
						return err
					}
				}
				continue
			}
			req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: t, ResourceNamesSubscribe: []string{"*"}}
			if t != ListenerType {
				req.ResourceNamesSubscribe = append(req.ResourceNamesSubscribe, s.newDemands(t)...)
			}
			req.InitialResourceVersions = versionsOf(s.c.accepted[t], nil)
			if err := s.send(req); err != nil {
				return err
			}
			s.started[t] = true
			continue
		}
		want := s.c.desired(t)
		have := s.subscribed[t]
		var sub, unsub []string
		wantSet := make(map[string]bool, len(want))
		for _, n := range want {
			wantSet[n] = true
			if !have[n] {
				sub = append(sub, n)
			}
		}
		for n := range have {
			if !wantSet[n] {
				unsub = append(unsub, n)
			}
		}
		if len(sub) == 0 && len(unsub) == 0 {
			continue
		}
		req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: t, ResourceNamesSubscribe: sub}
		if s.started[t] {
			req.ResourceNamesUnsubscribe = unsub
		} else {
			req.InitialResourceVersions = versionsOf(s.c.accepted[t], wantSet)
		}
		if err := s.send(req); err != nil {
			return err
		}
		s.started[t] = true
		s.subscribed[t] = wantSet
		// Resources no longer subscribed are forgotten, as Envoy does.
		if len(unsub) > 0 {
			s.view[t] = copySet(s.view[t])
		}
		for _, n := range unsub {
			delete(s.view[t], n)
			if _, ok := s.c.accepted[t][n]; ok {
				next := copySet(s.c.accepted[t])
				delete(next, n)
				s.c.accepted[t] = next
			}
		}
	}
	return nil
}

// versionsOf returns name → version of the accepted resources, limited to names when non-nil.
func versionsOf(set map[string]*Resource, names map[string]bool) map[string]string {
	if len(set) == 0 {
		return nil
	}
	out := make(map[string]string, len(set))
	for n, r := range set {
		if names == nil || names[n] {
			out[n] = r.Version
		}
	}
	return out
}

// handle applies one response and sends the ACK or NACK.
func (s *deltaStream) handle(resp *discoveryv3.DeltaDiscoveryResponse) error {
	t := resp.GetTypeUrl()
	ack := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: t, ResponseNonce: resp.GetNonce()}
	cur, known := s.view[t]
	if !known {
		ack.ErrorDetail = &status.Status{Code: int32(grpclite.InvalidArgument), Message: "unsupported resource type " + t}
		return s.send(ack)
	}
	next, err := s.merge(t, cur, resp)
	if err == nil {
		s.view[t] = next
		err = s.c.apply(t, next)
	}
	if t == VirtualHostType || t == ClusterType {
		s.c.answerDemands(resp, err)
	}
	if err == nil {
		s.c.settleDemands()
	}
	if err != nil {
		s.c.log.Warn("xds update rejected", "type", t, "nonce", resp.GetNonce(), "error", err)
		ack.ErrorDetail = &status.Status{Code: int32(grpclite.InvalidArgument), Message: err.Error()}
	} else {
		s.c.log.Debug("xds update accepted", "type", t, "resources", len(next))
	}
	return s.send(ack)
}

// merge builds the candidate set: the accepted set plus the response's resources, minus removals.
func (s *deltaStream) merge(t string, cur map[string]*Resource, resp *discoveryv3.DeltaDiscoveryResponse) (map[string]*Resource, error) {
	next := copySet(cur)
	now := time.Now()
	seen := make(map[string]bool, len(resp.GetResources()))
	for _, r := range resp.GetResources() {
		name, msg, raw, err := decode(t, r.GetResource())
		if err != nil {
			return nil, fmt.Errorf("resource %q: %w", r.GetName(), err)
		}
		if r.GetName() != "" && name != r.GetName() {
			return nil, fmt.Errorf("resource %q: body is named %q", r.GetName(), name)
		}
		if name == "" {
			return nil, fmt.Errorf("resource without a name in %s response", t)
		}
		if seen[name] {
			return nil, fmt.Errorf("resource %q: duplicate in one response", name)
		}
		seen[name] = true
		next[name] = &Resource{Name: name, Version: r.GetVersion(), Message: msg, Any: raw, Updated: now}
	}
	for _, n := range resp.GetRemovedResources() {
		delete(next, n)
	}
	return next, nil
}
