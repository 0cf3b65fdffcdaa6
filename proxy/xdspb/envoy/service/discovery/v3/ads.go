package discoveryv3

// Hand-written (tools/xdstrim generates only messages): the client side of Envoy's
// AggregatedDiscoveryService, with the same names as go-control-plane's generated client so that
// strait-proxy's xdsclient switches by import path alone.

import (
	"context"

	"google.golang.org/grpc"
)

// Full gRPC method names of the aggregated discovery service.
const (
	AggregatedDiscoveryService_StreamAggregatedResources_FullMethodName = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
	AggregatedDiscoveryService_DeltaAggregatedResources_FullMethodName  = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
)

// AggregatedDiscoveryService_StreamAggregatedResourcesClient is a state-of-the-world ADS stream.
type AggregatedDiscoveryService_StreamAggregatedResourcesClient = grpc.BidiStreamingClient[DiscoveryRequest, DiscoveryResponse]

// AggregatedDiscoveryService_DeltaAggregatedResourcesClient is an incremental ADS stream.
type AggregatedDiscoveryService_DeltaAggregatedResourcesClient = grpc.BidiStreamingClient[DeltaDiscoveryRequest, DeltaDiscoveryResponse]

// AggregatedDiscoveryServiceClient opens ADS streams.
type AggregatedDiscoveryServiceClient interface {
	StreamAggregatedResources(ctx context.Context, opts ...grpc.CallOption) (AggregatedDiscoveryService_StreamAggregatedResourcesClient, error)
	DeltaAggregatedResources(ctx context.Context, opts ...grpc.CallOption) (AggregatedDiscoveryService_DeltaAggregatedResourcesClient, error)
}

// NewAggregatedDiscoveryServiceClient returns an ADS client over cc.
func NewAggregatedDiscoveryServiceClient(cc grpc.ClientConnInterface) AggregatedDiscoveryServiceClient {
	return adsClient{cc}
}

type adsClient struct{ cc grpc.ClientConnInterface }

var bidi = grpc.StreamDesc{ClientStreams: true, ServerStreams: true}

func (c adsClient) StreamAggregatedResources(ctx context.Context, opts ...grpc.CallOption) (AggregatedDiscoveryService_StreamAggregatedResourcesClient, error) {
	d := bidi
	d.StreamName = "StreamAggregatedResources"
	s, err := c.cc.NewStream(ctx, &d, AggregatedDiscoveryService_StreamAggregatedResources_FullMethodName, opts...)
	if err != nil {
		return nil, err
	}
	return &grpc.GenericClientStream[DiscoveryRequest, DiscoveryResponse]{ClientStream: s}, nil
}

func (c adsClient) DeltaAggregatedResources(ctx context.Context, opts ...grpc.CallOption) (AggregatedDiscoveryService_DeltaAggregatedResourcesClient, error) {
	d := bidi
	d.StreamName = "DeltaAggregatedResources"
	s, err := c.cc.NewStream(ctx, &d, AggregatedDiscoveryService_DeltaAggregatedResources_FullMethodName, opts...)
	if err != nil {
		return nil, err
	}
	return &grpc.GenericClientStream[DeltaDiscoveryRequest, DeltaDiscoveryResponse]{ClientStream: s}, nil
}
