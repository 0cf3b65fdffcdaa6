package xds

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strait-mesh/strait/controlplane/translate"
)

// proxyState is one connected proxy (one node ID), shared by its open streams.
type proxyState struct {
	key         string // node ID, the cache key
	proxy       *translate.Proxy
	connectedAt time.Time
	version     string // its pilot_xds{version} label

	// Guarded by Server.connMu.
	conns  int
	latest *stream // the most recently opened stream; its status is reported

	// genMu serializes generations of this proxy and guards the fields below it.
	genMu       sync.Mutex
	closed      bool
	generated   *proxySnapshot // what the cache serves this proxy
	meshVersion uint64         // mesh snapshot generated from
	// genProxy is proxy with the on-demand hosts it demanded (ondemand.go), what generation
	// sees; demands counts the changes of that set, genDemands the count generated from.
	genProxy   *translate.Proxy
	demanded   map[string]map[string]bool // type → demanded names
	demands    uint64
	genDemands uint64

	// stMu guards convergence and NACK bookkeeping.
	stMu         sync.Mutex
	pushStart    time.Time         // start of the latest generation that changed something
	pending      map[string]string // typeURL → version pushed after an Update, not yet ACKed
	pendingSince time.Time         // first Update not yet ACKed by this proxy
	lastNack     *nackEvent
}

// nackEvent is one rejected response.
type nackEvent struct {
	Type    string    `json:"type"`
	Version string    `json:"version"`
	Nonce   string    `json:"nonce"`
	Message string    `json:"message"`
	Time    time.Time `json:"time"`
}

// streamKey identifies a stream: the SotW and Delta servers number their streams independently.
type streamKey struct {
	delta bool
	id    int64
}

// stream is one ADS stream of a proxy.
type stream struct {
	id       int64
	delta    bool
	proxy    *proxyState
	openedAt time.Time

	mu    sync.Mutex
	types map[string]*typeStatus // typeURL → what was sent and acknowledged
}

// typeStatus tracks one resource type on one stream.
type typeStatus struct {
	sentVersion  string
	sentNonce    string
	sentAt       time.Time
	ackedVersion string
	ackedAt      time.Time
	nacked       bool
}

// markPushed records a push of the changed types, for push time and convergence time. from is the
// time of the first mesh Update the push reflects; zero for the initial generation of a proxy.
func (p *proxyState) markPushed(changedTypes map[string]string, from, genStart time.Time) {
	p.stMu.Lock()
	defer p.stMu.Unlock()
	p.pushStart = genStart
	if from.IsZero() {
		return
	}
	if p.pending == nil {
		p.pending = make(map[string]string, len(changedTypes))
	}
	if len(p.pending) == 0 {
		p.pendingSince = from
	}
	for t, v := range changedTypes {
		if v == "" {
			delete(p.pending, t)
			continue
		}
		p.pending[t] = v
	}
}

// acked records an ACK and returns the convergence time when it completes the pending push.
func (p *proxyState) acked(typeURL, version string) (time.Duration, bool) {
	p.stMu.Lock()
	defer p.stMu.Unlock()
	if v, ok := p.pending[typeURL]; !ok || v != version {
		return 0, false
	}
	delete(p.pending, typeURL)
	if len(p.pending) > 0 {
		return 0, false
	}
	return time.Since(p.pendingSince), true
}

// streamCallbacks are the go-control-plane callbacks of one stream: each stream has its own
// go-control-plane server (see adsService), so the stream's key and flow state are known here and
// go-control-plane's own stream numbers are not used.
func (s *Server) streamCallbacks(key streamKey, f *streamFlow) serverv3.CallbackFuncs {
	return serverv3.CallbackFuncs{
		StreamOpenFunc:        func(ctx context.Context, _ int64, _ string) error { return s.openStream(ctx, key) },
		DeltaStreamOpenFunc:   func(ctx context.Context, _ int64, _ string) error { return s.openStream(ctx, key) },
		StreamClosedFunc:      func(int64, *corev3.Node) { s.closeStream(key) },
		DeltaStreamClosedFunc: func(int64, *corev3.Node) { s.closeStream(key) },
		StreamRequestFunc: func(_ int64, req *discovery.DiscoveryRequest) error {
			return s.onRequest(key, f, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(),
				req.GetVersionInfo(), req.GetErrorDetail(), false)
		},
		StreamDeltaRequestFunc: func(_ int64, req *discovery.DeltaDiscoveryRequest) error {
			if err := s.onRequest(key, f, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), "",
				req.GetErrorDetail(), len(req.GetResourceNamesSubscribe())+len(req.GetResourceNamesUnsubscribe()) > 0); err != nil {
				return err
			}
			if _, ok := demandTypes[req.GetTypeUrl()]; ok && len(req.GetResourceNamesSubscribe()) > 0 {
				return s.demand(f.ctx, key, req.GetTypeUrl(), req.GetResourceNamesSubscribe())
			}
			return nil
		},
		StreamResponseFunc: func(_ context.Context, _ int64, _ *discovery.DiscoveryRequest, resp *discovery.DiscoveryResponse) {
			size := 0
			for _, r := range resp.GetResources() {
				size += len(r.GetValue())
			}
			f.sent(resp.GetTypeUrl(), resp.GetNonce())
			s.onResponse(key, resp.GetTypeUrl(), resp.GetNonce(), resp.GetVersionInfo(), size)
		},
		StreamDeltaResponseFunc: func(_ int64, _ *discovery.DeltaDiscoveryRequest, resp *discovery.DeltaDiscoveryResponse) {
			size := 0
			for _, r := range resp.GetResources() {
				size += len(r.GetResource().GetValue())
			}
			f.sent(resp.GetTypeUrl(), resp.GetNonce())
			s.onResponse(key, resp.GetTypeUrl(), resp.GetNonce(), resp.GetSystemVersionInfo(), size)
		},
	}
}

// onRequest registers the stream's proxy on its first request and tracks ACKs and NACKs; a reply
// to the stream's outstanding response of the type releases it (flow control), before
// go-control-plane opens the type's next watch. A Delta request that changes the subscribed names
// resets the cache's memo of what the stream holds. An error ends the stream with that status.
func (s *Server) onRequest(id streamKey, f *streamFlow, n *corev3.Node, typeURL, nonce, version string, detail *rpcstatus.Status, namesChanged bool) error {
	s.connMu.Lock()
	st := s.streams[id]
	s.connMu.Unlock()
	if st == nil {
		var err error
		if st, err = s.connect(id, f, n); err != nil {
			return err
		}
	}
	if namesChanged {
		s.cache.invalidate(st.proxy.key, typeURL)
	}
	if nonce == "" {
		return nil // a new subscription, not a reply to a response
	}
	f.ack(typeURL, nonce)
	st.mu.Lock()
	ts := st.types[typeURL]
	if ts == nil || ts.sentNonce != nonce {
		st.mu.Unlock()
		return nil // reply to a superseded response
	}
	p := st.proxy
	if detail != nil {
		ts.nacked = true
		ev := nackEvent{Type: shortType(typeURL), Version: ts.sentVersion, Nonce: nonce, Message: detail.GetMessage(), Time: time.Now()}
		st.mu.Unlock()
		s.metrics.rejects.WithLabelValues(metricType(typeURL)).Inc()
		s.log.Warn("proxy rejected xds resources (NACK); it keeps its last accepted version",
			"proxy", p.key, "type", ev.Type, "version", ev.Version, "nonce", nonce,
			"code", codes.Code(detail.GetCode()).String(), "error", ev.Message)
		p.stMu.Lock()
		p.lastNack = &ev
		p.stMu.Unlock()
		return nil
	}
	if version == "" || id.delta {
		version = ts.sentVersion
	}
	ts.nacked = false
	ts.ackedVersion, ts.ackedAt = version, time.Now()
	st.mu.Unlock()
	if d, ok := p.acked(typeURL, version); ok {
		s.metrics.convergence.Observe(d.Seconds())
	}
	return nil
}

// onResponse records a response about to be sent; size is the bytes of its resources
// (pilot_xds_config_size_bytes, as istiod measures it).
func (s *Server) onResponse(id streamKey, typeURL, nonce, version string, size int) {
	s.connMu.Lock()
	st := s.streams[id]
	s.connMu.Unlock()
	s.metrics.pushes.WithLabelValues(metricType(typeURL)).Inc()
	s.metrics.configSize.WithLabelValues(metricType(typeURL)).Observe(float64(size))
	if st == nil {
		return
	}
	now := time.Now()
	st.proxy.stMu.Lock()
	start := st.proxy.pushStart
	st.proxy.stMu.Unlock()
	if !start.IsZero() {
		s.metrics.pushTime.WithLabelValues(metricType(typeURL)).Observe(now.Sub(start).Seconds())
	}
	st.mu.Lock()
	ts := st.types[typeURL]
	if ts == nil {
		ts = &typeStatus{}
		st.types[typeURL] = ts
	}
	ts.sentVersion, ts.sentNonce, ts.sentAt, ts.nacked = version, nonce, now, false
	st.mu.Unlock()
}

// connect registers a new stream, creating the proxy's state and generating its resources when it
// is the proxy's first stream.
func (s *Server) connect(id streamKey, f *streamFlow, n *corev3.Node) (*stream, error) {
	proxy, err := ParseProxy(n)
	if err != nil {
		s.log.Warn("refusing xds stream: bad node", "node", n.GetId(), "err", err)
		return nil, status.Error(codes.InvalidArgument, fmt.Sprintf("invalid node: %v", err))
	}
	s.connMu.Lock()
	peerID := s.peers[id]
	s.connMu.Unlock()
	if err := bind(proxy, peerID); err != nil {
		s.metrics.refused.Inc()
		s.log.Warn("refusing xds stream: node claims another identity", "node", n.GetId(), "err", err)
		return nil, err
	}
	s.connMu.Lock()
	p := s.proxies[n.GetId()]
	if p != nil && p.proxy.Identity != proxy.Identity {
		// A node ID is held by the identity that connected with it first: another one (or an
		// unauthenticated stream) neither joins it nor takes its status over.
		s.connMu.Unlock()
		s.metrics.refused.Inc()
		s.log.Warn("refusing xds stream: node id held by another identity", "node", n.GetId(),
			"holder", identityOrNone(p.proxy.Identity), "claimant", identityOrNone(proxy.Identity))
		return nil, status.Errorf(codes.PermissionDenied, "node id %q is in use by another connected proxy", n.GetId())
	}
	isNew := p == nil
	if isNew {
		s.scopeOnDemand(proxy, n)
		p = &proxyState{key: n.GetId(), proxy: proxy, genProxy: proxy, connectedAt: time.Now()}
		s.seedDemands(p)
		s.proxies[p.key] = p
		p.version = s.metrics.proxyConnected(proxyVersion(n))
		if s.opts.OnConnect != nil {
			s.opts.OnConnect(proxy)
		}
	}
	p.conns++
	st := &stream{id: id.id, delta: id.delta, proxy: p, openedAt: time.Now(), types: make(map[string]*typeStatus)}
	s.streams[id] = st
	p.latest = st
	s.connMu.Unlock()
	s.log.Debug("xds stream opened", "proxy", p.key, "stream", id, "delta", id.delta, "first", isNew)

	if isNew {
		s.mu.Lock()
		snap := s.current
		s.mu.Unlock()
		if snap != nil {
			s.sem <- struct{}{}
			s.pushProxy(f.ctx, p, snap, time.Time{})
			<-s.sem
		}
	}
	return st, nil
}

// openStream records what a new stream's transport proved (see streamPeer), or refuses the stream.
func (s *Server) openStream(ctx context.Context, id streamKey) error {
	pi, err := s.streamPeer(ctx)
	if err != nil {
		s.metrics.refused.Inc()
		s.log.Warn("refusing xds stream", "err", err)
		return err
	}
	s.connMu.Lock()
	s.peers[id] = pi
	s.connMu.Unlock()
	return nil
}

// identityOrNone names an identity for logs.
func identityOrNone(id string) string {
	if id == "" {
		return "(unauthenticated)"
	}
	return id
}

// closeStream forgets a stream; when it was its proxy's last, the proxy's cache entry is dropped and
// OnDisconnect is called.
func (s *Server) closeStream(id streamKey) {
	s.connMu.Lock()
	delete(s.peers, id)
	st := s.streams[id]
	s.connMu.Unlock()
	if st == nil {
		return
	}
	p := st.proxy
	// Lock order: genMu, then connMu; holding genMu keeps a concurrent push from setting a cache
	// snapshot for a proxy being cleared.
	p.genMu.Lock()
	defer p.genMu.Unlock()
	s.connMu.Lock()
	defer s.connMu.Unlock()
	delete(s.streams, id)
	p.conns--
	if p.latest == st {
		p.latest = nil
	}
	if p.conns > 0 {
		return
	}
	p.closed = true
	delete(s.proxies, p.key)
	s.metrics.proxyDisconnected(p.version)
	s.cache.Clear(p.key)
	s.log.Debug("xds proxy disconnected", "proxy", p.key)
	if s.opts.OnDisconnect != nil {
		s.opts.OnDisconnect(p.proxy)
	}
}
