package xds

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/log"
	"github.com/envoyproxy/go-control-plane/pkg/server/config"
	sotwv3 "github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
)

// adsService is the gRPC AggregatedDiscoveryService: it hands streams to go-control-plane's server,
// wrapped so that slow sends are detected.
type adsService struct {
	discovery.UnimplementedAggregatedDiscoveryServiceServer
	s *Server
}

// StreamAggregatedResources serves state-of-the-world ADS.
func (a *adsService) StreamAggregatedResources(st discovery.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	return a.s.ads.StreamAggregatedResources(&sotwStream{st, a.s})
}

// DeltaAggregatedResources serves incremental (Delta) ADS.
func (a *adsService) DeltaAggregatedResources(st discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	return a.s.ads.DeltaAggregatedResources(&deltaStream{st, a.s})
}

// timedSend runs send and, if it takes longer than the write timeout, logs it and counts it in
// pilot_xds_write_timeout. gRPC offers no way to abort a blocked server-side Send short of ending
// the RPC, which is the handler's to do; the send goes on, bounded by flow control and keepalive.
func (s *Server) timedSend(typeURL string, send func() error) error {
	t := time.AfterFunc(s.opts.WriteTimeout, func() {
		s.metrics.writeTimeouts.Inc()
		s.log.Warn("xds send exceeds the write timeout", "type", shortType(typeURL), "timeout", s.opts.WriteTimeout)
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
}

func (w *sotwStream) Send(r *discovery.DiscoveryResponse) error {
	return w.s.timedSend(r.GetTypeUrl(), func() error {
		return w.AggregatedDiscoveryService_StreamAggregatedResourcesServer.Send(r)
	})
}

type deltaStream struct {
	discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesServer
	s *Server
}

func (w *deltaStream) Send(r *discovery.DeltaDiscoveryResponse) error {
	return w.s.timedSend(r.GetTypeUrl(), func() error {
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

// serverLogger sets the logger of the SotW and Delta servers (both read the same option).
func serverLogger(l log.Logger) config.XDSOption {
	return sotwv3.WithLogger(l)
}
