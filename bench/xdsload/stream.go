package main

import (
	"context"
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"
)

// adsStream is an ADS stream of either protocol, as a simulated proxy uses it.
type adsStream interface {
	// send sends a request for type typ: a subscription to all its resources (n is sent with the
	// stream's first request), or the ACK of the response of nonce, whose version (SotW) it was.
	send(typ string, n *corev3.Node, version, nonce string) error
	// subscribe sends the first request for type typ: all its resources and the on-demand names
	// demanded (Delta only), with the versions the proxy holds (Delta's
	// initial_resource_versions; SotW sends none).
	subscribe(typ string, n *corev3.Node, initial map[string]string, demanded []string) error
	recv() (adsResponse, error)
}

// adsResponse is one response of an adsStream.
type adsResponse struct {
	typ, version, nonce string
	names               func() ([]string, error) // the resources' names (decoding them, for SotW)
	removed             []string                 // Delta's removals
	versions            []string                 // Delta: the resources' versions, in names' order
	size                int                      // the response's encoded size
	aliases             int                      // Delta: on-demand names answered with a resource
}

func openStream(ctx context.Context, ads discovery.AggregatedDiscoveryServiceClient, sotw bool) (adsStream, error) {
	if sotw {
		st, err := ads.StreamAggregatedResources(ctx)
		return sotwStream{st}, err
	}
	st, err := ads.DeltaAggregatedResources(ctx)
	return deltaStream{st}, err
}

// sotwStream is state-of-the-world ADS (-sotw).
type sotwStream struct {
	discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient
}

func (s sotwStream) send(typ string, n *corev3.Node, version, nonce string) error {
	return s.Send(&discovery.DiscoveryRequest{TypeUrl: typ, Node: n, VersionInfo: version, ResponseNonce: nonce})
}

func (s sotwStream) subscribe(typ string, n *corev3.Node, _ map[string]string, _ []string) error {
	return s.send(typ, n, "", "")
}

func (s sotwStream) recv() (adsResponse, error) {
	resp, err := s.Recv()
	names := func() (names []string, err error) {
		for _, a := range resp.GetResources() {
			m, err := a.UnmarshalNew()
			if err != nil {
				return nil, fmt.Errorf("decoding %s: %w", resp.GetTypeUrl(), err)
			}
			names = append(names, cache.GetResourceName(m))
		}
		return names, nil
	}
	return adsResponse{typ: resp.GetTypeUrl(), version: resp.GetVersionInfo(), nonce: resp.GetNonce(), names: names,
		size: proto.Size(resp)}, err
}

// deltaStream is incremental ADS, the default.
type deltaStream struct {
	discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
}

func (s deltaStream) send(typ string, n *corev3.Node, _, nonce string) error {
	return s.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: typ, Node: n, ResponseNonce: nonce})
}

func (s deltaStream) subscribe(typ string, n *corev3.Node, initial map[string]string, demanded []string) error {
	req := &discovery.DeltaDiscoveryRequest{TypeUrl: typ, Node: n, InitialResourceVersions: initial}
	if len(demanded) > 0 {
		req.ResourceNamesSubscribe = append([]string{"*"}, demanded...)
	}
	return s.Send(req)
}

func (s deltaStream) recv() (adsResponse, error) {
	resp, err := s.Recv()
	var names, versions []string
	aliases := 0
	for _, r := range resp.GetResources() {
		names = append(names, r.GetName())
		versions = append(versions, r.GetVersion())
		aliases += len(r.GetAliases())
	}
	return adsResponse{typ: resp.GetTypeUrl(), nonce: resp.GetNonce(), removed: resp.GetRemovedResources(),
		names: func() ([]string, error) { return names, nil }, versions: versions, size: proto.Size(resp), aliases: aliases}, err
}
