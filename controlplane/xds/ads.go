package xds

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/log"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	deltav3 "github.com/envoyproxy/go-control-plane/pkg/server/delta/v3"
	sotwv3 "github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
)

// adsService is the gRPC AggregatedDiscoveryService. Each stream gets its own go-control-plane
// server (a small struct) whose cache view and callbacks carry the stream's flow state
// (flow.go). The stream is served on its own goroutine so that the handler can end the RPC when
// flow control says so (the ACK timeout) even while a send is blocked on a proxy that does not
// read: gRPC aborts a blocked server-side send only when the handler returns. A new stream is
// admitted first (admission.go).
type adsService struct {
	discovery.UnimplementedAggregatedDiscoveryServiceServer
	s *Server
}

// StreamAggregatedResources serves state-of-the-world ADS.
func (a *adsService) StreamAggregatedResources(st discovery.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	if err := a.s.adm.admit(st.Context()); err != nil {
		return err
	}
	f := a.s.openFlow(st.Context(), false)
	// Ordered ADS: SotW responses of all types go through one queue, in the order the cache
	// produces them (CDS, EDS, LDS, RDS; see order.go). Without it the SotW server picks among
	// per-type channels at random. The Delta server always uses one queue.
	srv := sotwv3.NewServer(a.s.ctx, streamWatcher{a.s.cache, f}, a.s.streamCallbacks(f.key, f),
		sotwv3.WithLogger(gcpLogger{a.s.log}), sotwv3.WithOrderedADS())
	return a.s.serveFlow(f, func() error {
		return srv.StreamHandler(&sotwStream{st, a.s, f}, resource.AnyType)
	})
}

// DeltaAggregatedResources serves incremental (Delta) ADS.
func (a *adsService) DeltaAggregatedResources(st discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	if err := a.s.adm.admit(st.Context()); err != nil {
		return err
	}
	f := a.s.openFlow(st.Context(), true)
	srv := deltav3.NewServer(a.s.ctx, streamWatcher{a.s.cache, f}, a.s.streamCallbacks(f.key, f),
		deltav3.WithLogger(gcpLogger{a.s.log}))
	return a.s.serveFlow(f, func() error {
		return srv.DeltaStreamHandler(&deltaStream{st, a.s, f}, resource.AnyType)
	})
}

// openFlow registers the flow state of a new RPC.
func (s *Server) openFlow(ctx context.Context, delta bool) *streamFlow {
	f := newStreamFlow(streamKey{delta: delta, id: s.streamIDs.Add(1)}, s.fc)
	f.ctx = ctx
	s.connMu.Lock()
	s.flows[f.key] = f
	s.connMu.Unlock()
	return f
}

// serveFlow runs serve (go-control-plane's stream handler) and returns its error, or the flow's
// end error as soon as flow control ends the stream. The flow's bytes are released when serve has
// returned (it sends nothing after that).
func (s *Server) serveFlow(f *streamFlow, serve func() error) error {
	done := make(chan error, 1)
	go func() {
		err := serve()
		f.close()
		s.connMu.Lock()
		delete(s.flows, f.key)
		s.connMu.Unlock()
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-f.kill:
		return f.endErr()
	}
}

// send sends one response within a push slot (flow.go): it waits for a slot, and gives it back
// when gRPC accepted the message or after the write timeout, whichever is first. A send slower
// than the write timeout is logged and counted in pilot_xds_write_timeout. gRPC offers no way to
// abort a blocked server-side Send short of ending the RPC, which the ACK timeout does; until
// then the send goes on, bounded by HTTP/2 flow control and the byte caps.
func (s *Server) send(f *streamFlow, typeURL string, send func() error) error {
	release, err := s.acquirePush(f.ctx)
	if err != nil {
		return fmt.Errorf("sending %s: %w", shortType(typeURL), err)
	}
	defer release()
	t := time.AfterFunc(s.opts.WriteTimeout, func() {
		release()
		s.metrics.writeTimeouts.Inc()
		s.log.Warn("xds send exceeds the write timeout", "proxy", s.streamProxy(f.key), "type", shortType(typeURL),
			"timeout", s.opts.WriteTimeout)
	})
	defer t.Stop()
	if err := send(); err != nil {
		return fmt.Errorf("sending %s: %w", shortType(typeURL), err)
	}
	return nil
}

type sotwStream struct {
	discovery.AggregatedDiscoveryService_StreamAggregatedResourcesServer
	s *Server
	f *streamFlow
}

func (w *sotwStream) Send(r *discovery.DiscoveryResponse) error {
	return w.s.send(w.f, r.GetTypeUrl(), func() error {
		return w.AggregatedDiscoveryService_StreamAggregatedResourcesServer.Send(r)
	})
}

type deltaStream struct {
	discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesServer
	s *Server
	f *streamFlow
}

func (w *deltaStream) Send(r *discovery.DeltaDiscoveryResponse) error {
	return w.s.send(w.f, r.GetTypeUrl(), func() error {
		return w.AggregatedDiscoveryService_DeltaAggregatedResourcesServer.Send(r)
	})
}

// gcpLogger adapts slog to go-control-plane's logger. Its Info messages are per-watch chatter and
// go to Debug.
type gcpLogger struct{ l *slog.Logger }

var _ log.Logger = gcpLogger{}

func (g gcpLogger) Debugf(format string, args ...any) { g.logf(slog.LevelDebug, format, args) }
func (g gcpLogger) Infof(format string, args ...any)  { g.logf(slog.LevelDebug, format, args) }
func (g gcpLogger) Warnf(format string, args ...any)  { g.logf(slog.LevelWarn, format, args) }
func (g gcpLogger) Errorf(format string, args ...any) { g.logf(slog.LevelError, format, args) }

// logf formats only when the level is enabled: the cache logs whole resource name lists.
func (g gcpLogger) logf(level slog.Level, format string, args []any) {
	if g.l.Enabled(context.Background(), level) {
		g.l.Log(context.Background(), level, fmt.Sprintf(format, args...))
	}
}
