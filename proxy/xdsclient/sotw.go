package xdsclient

import (
	"context"
	"fmt"
	"slices"
	"time"

	"google.golang.org/genproto/googleapis/rpc/status"

	"github.com/strait-mesh/strait/internal/grpclite"
	discoveryv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/service/discovery/v3"
)

// sotwStream is the per-stream state of a state-of-the-world ADS stream.
type sotwStream struct {
	c      *Client
	stream *sotwADS
	names  map[string][]string // names last requested per non-wildcard type
	nonce  map[string]string   // last nonce received per type
	sent   map[string]bool
	first  bool
	// A SotW server answers a NACK (which carries the previous version) by sending the rejected
	// version again. Repeated NACKs of the same version are therefore delayed with a growing
	// backoff per type instead of looping at full speed.
	nackVersion map[string]string
	nackDelay   map[string]time.Duration
	delayed     chan *discoveryv3.DiscoveryRequest
}

const (
	nackBackoffBase = 100 * time.Millisecond
	nackBackoffMax  = 10 * time.Second
)

// runSotW runs one SotW stream until it fails. got reports whether any response arrived.
func (c *Client) runSotW(ctx context.Context, conn *grpclite.Conn) (got bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := openSotW(ctx, conn)
	if err != nil {
		return false, fmt.Errorf("opening sotw ads stream: %w", err)
	}
	s := &sotwStream{c: c, stream: stream, names: map[string][]string{}, nonce: map[string]string{}, sent: map[string]bool{}, first: true,
		nackVersion: map[string]string{}, nackDelay: map[string]time.Duration{}, delayed: make(chan *discoveryv3.DiscoveryRequest, len(Types))}
	recv := pump(ctx, stream.Recv)
	if err := s.sync(); err != nil {
		return false, fmt.Errorf("sending sotw request: %w", err)
	}
	c.markConnected("sotw")
	c.failDemands(ErrOnDemandUnavailable)
	defer c.markDisconnected()
	for {
		select {
		case <-ctx.Done():
			return got, ctx.Err()
		case <-c.wake:
			if err := s.sync(); err != nil {
				return got, fmt.Errorf("sending sotw request: %w", err)
			}
		case req := <-s.delayed:
			if req.GetResponseNonce() != s.nonce[req.GetTypeUrl()] {
				continue // a newer response superseded the rejected one
			}
			if err := s.send(req); err != nil {
				return got, fmt.Errorf("sending sotw nack: %w", err)
			}
		case r := <-recv:
			if r.err != nil {
				return got, fmt.Errorf("receiving sotw ads: %w", r.err)
			}
			got = true
			if err := s.handle(r.resp); err != nil {
				return got, fmt.Errorf("sending sotw ack: %w", err)
			}
			if err := s.sync(); err != nil {
				return got, fmt.Errorf("sending sotw request: %w", err)
			}
		}
	}
}

func (s *sotwStream) send(req *discoveryv3.DiscoveryRequest) error {
	if s.first {
		req.Node = s.c.opts.Node
		s.first = false
	}
	return s.stream.Send(req)
}

// sync sends the first request per type, and a new request whenever a type's names changed.
// Named types are not requested while they have no names: an empty list means "everything" in
// SotW.
func (s *sotwStream) sync() error {
	for _, t := range Types {
		if t == VirtualHostType {
			continue // VHDS is Delta only
		}
		var names []string
		if !isWildcard(t) {
			names = s.c.desired(t)
			if s.sent[t] && slices.Equal(names, s.names[t]) {
				continue
			}
			if !s.sent[t] && len(names) == 0 {
				continue
			}
		} else if s.sent[t] {
			continue
		}
		req := &discoveryv3.DiscoveryRequest{
			TypeUrl:       t,
			ResourceNames: names,
			VersionInfo:   s.c.versions[t],
			ResponseNonce: s.nonce[t],
		}
		if err := s.send(req); err != nil {
			return err
		}
		s.sent[t] = true
		s.names[t] = names
		if !isWildcard(t) {
			keep := make(map[string]bool, len(names))
			for _, n := range names {
				keep[n] = true
			}
			next := copySet(s.c.accepted[t])
			for n := range next {
				if !keep[n] {
					delete(next, n)
				}
			}
			s.c.accepted[t] = next
		}
	}
	return nil
}

// handle applies one response and sends the ACK or NACK.
func (s *sotwStream) handle(resp *discoveryv3.DiscoveryResponse) error {
	t := resp.GetTypeUrl()
	s.nonce[t] = resp.GetNonce()
	req := &discoveryv3.DiscoveryRequest{TypeUrl: t, ResponseNonce: resp.GetNonce(), ResourceNames: s.names[t]}
	if _, known := s.c.accepted[t]; !known {
		req.ErrorDetail = &status.Status{Code: int32(grpclite.InvalidArgument), Message: "unsupported resource type " + t}
		return s.send(req)
	}
	next, err := s.merge(t, resp)
	if err == nil {
		err = s.c.apply(t, next)
	}
	if err != nil {
		req.VersionInfo = s.c.versions[t]
		req.ErrorDetail = &status.Status{Code: int32(grpclite.InvalidArgument), Message: err.Error()}
		if s.nackVersion[t] == resp.GetVersionInfo() {
			d := min(max(2*s.nackDelay[t], nackBackoffBase), nackBackoffMax)
			s.nackDelay[t] = d
			time.AfterFunc(d, func() {
				select {
				case s.delayed <- req:
				default: // the stream is gone or a NACK is already queued
				}
			})
			return nil
		}
		s.c.log.Warn("xds update rejected", "type", t, "version", resp.GetVersionInfo(), "error", err)
		s.nackVersion[t] = resp.GetVersionInfo()
		s.nackDelay[t] = 0
	} else {
		delete(s.nackVersion, t)
		s.c.versions[t] = resp.GetVersionInfo()
		req.VersionInfo = resp.GetVersionInfo()
		s.c.log.Debug("xds update accepted", "type", t, "version", resp.GetVersionInfo(), "resources", len(next))
	}
	return s.send(req)
}

// merge builds the candidate set. LDS and CDS responses carry the full state; for the named types
// a response replaces the resources it carries and keeps the other subscribed ones.
func (s *sotwStream) merge(t string, resp *discoveryv3.DiscoveryResponse) (map[string]*Resource, error) {
	var next map[string]*Resource
	var keep map[string]bool
	if isWildcard(t) {
		next = make(map[string]*Resource, len(resp.GetResources()))
	} else {
		next = copySet(s.c.accepted[t])
		keep = make(map[string]bool, len(s.names[t]))
		for _, n := range s.names[t] {
			keep[n] = true
		}
	}
	now := time.Now()
	seen := make(map[string]bool, len(resp.GetResources()))
	for _, a := range resp.GetResources() {
		name, msg, raw, err := decode(t, a)
		if err != nil {
			return nil, err
		}
		if name == "" {
			return nil, fmt.Errorf("resource without a name in %s response", t)
		}
		if seen[name] {
			return nil, fmt.Errorf("resource %q: duplicate in one response", name)
		}
		seen[name] = true
		if keep != nil && !keep[name] {
			continue // not subscribed (e.g. a wildcard answer to an empty list)
		}
		version := resp.GetVersionInfo()
		if old, ok := next[name]; ok && old.Any != nil && sameAny(old, raw) {
			next[name] = old // unchanged: keep its version and time
			continue
		}
		next[name] = &Resource{Name: name, Version: version, Message: msg, Any: raw, Updated: now}
	}
	return next, nil
}
