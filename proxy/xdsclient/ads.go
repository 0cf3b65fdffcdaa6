package xdsclient

import (
	"context"

	"github.com/strait-mesh/strait/internal/grpclite"
	discoveryv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/service/discovery/v3"
)

// The client side of Envoy's AggregatedDiscoveryService over internal/grpclite, so that
// strait-proxy does not link grpc-go. It lives here rather than beside the trimmed messages in
// proxy/xdspb because tools/xdstrim type-checks this package against go-control-plane's
// packages, whose service stubs are grpc-go's: only the message types may come from xdspb.

// The ADS methods (envoy/service/discovery/v3/ads.proto).
const (
	sotwMethod  = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
	deltaMethod = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
)

// sotwADS is a state-of-the-world ADS stream. One goroutine may Send while another Recvs;
// cancelling the context it was opened with ends it.
type sotwADS struct{ s *grpclite.Stream }

// openSotW opens a state-of-the-world stream on conn. It returns at once: a server that
// refuses the stream (Unimplemented, Unavailable, ...) is seen by Recv.
func openSotW(ctx context.Context, conn *grpclite.Conn) (*sotwADS, error) {
	s, err := conn.NewStream(ctx, sotwMethod, nil)
	if err != nil {
		return nil, err
	}
	return &sotwADS{s}, nil
}

// Send sends a request; io.EOF when the stream has ended (Recv returns its status).
func (a *sotwADS) Send(req *discoveryv3.DiscoveryRequest) error { return a.s.Send(req) }

// Recv receives the next response: io.EOF when the server ended the stream with OK, else a
// *grpclite.Status.
func (a *sotwADS) Recv() (*discoveryv3.DiscoveryResponse, error) {
	resp := new(discoveryv3.DiscoveryResponse)
	if err := a.s.Recv(resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// deltaADS is an incremental ADS stream, used as sotwADS.
type deltaADS struct{ s *grpclite.Stream }

// openDelta opens an incremental stream on conn, as openSotW.
func openDelta(ctx context.Context, conn *grpclite.Conn) (*deltaADS, error) {
	s, err := conn.NewStream(ctx, deltaMethod, nil)
	if err != nil {
		return nil, err
	}
	return &deltaADS{s}, nil
}

// Send sends a request; io.EOF when the stream has ended (Recv returns its status).
func (a *deltaADS) Send(req *discoveryv3.DeltaDiscoveryRequest) error { return a.s.Send(req) }

// Recv receives the next response: io.EOF when the server ended the stream with OK, else a
// *grpclite.Status.
func (a *deltaADS) Recv() (*discoveryv3.DeltaDiscoveryResponse, error) {
	resp := new(discoveryv3.DeltaDiscoveryResponse)
	if err := a.s.Recv(resp); err != nil {
		return nil, err
	}
	return resp, nil
}
