// Package proxycheck says whether strait-proxy accepts a listener, route configuration or
// cluster, by compiling it with strait-proxy's own compilers (proxy/listener, proxy/route,
// proxy/upstream, which read strait-proxy's trimmed xDS types: the messages are converted with
// xdspb.From, as strait-proxy decodes them from the wire) in an environment that binds nothing, dials nothing and resolves no name. The
// control plane uses it to refuse EnvoyFilter patches whose result every proxy would NACK.
package proxycheck

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/strait-mesh/strait/controlplane/translate/envoyfilter"
	"github.com/strait-mesh/strait/proxy/l4"
	"github.com/strait-mesh/strait/proxy/l7"
	"github.com/strait-mesh/strait/proxy/listener"
	proute "github.com/strait-mesh/strait/proxy/route"
	"github.com/strait-mesh/strait/proxy/stats"
	"github.com/strait-mesh/strait/proxy/upstream"
	"github.com/strait-mesh/strait/proxy/xdspb"
	pclusterv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/cluster/v3"
	plistenerv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/listener/v3"
	proutev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
	tlsv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/transport_sockets/tls/v3"
)

// Checker is an envoyfilter.Checker backed by strait-proxy's compilers. The zero value is ready
// to use and safe for concurrent use.
type Checker struct{}

var _ envoyfilter.Checker = Checker{}

// Listener compiles l as strait-proxy would (without binding it).
func (Checker) Listener(l *listenerv3.Listener) error {
	pl, err := xdspb.From[*plistenerv3.Listener](l)
	if err != nil {
		return err
	}
	_, err = listener.Compile(pl, env{st: stats.NewStore()})
	return err
}

// RouteConfiguration compiles rc as strait-proxy would.
func (Checker) RouteConfiguration(rc *routev3.RouteConfiguration) error {
	prc, err := xdspb.From[*proutev3.RouteConfiguration](rc)
	if err != nil {
		return err
	}
	_, err = proute.Compile(prc)
	return err
}

// Cluster compiles c as strait-proxy would and closes it at once. DNS clusters get a resolver
// that fails every lookup, so checking one sends no query.
func (Checker) Cluster(c *clusterv3.Cluster) error {
	pc, err := xdspb.From[*pclusterv3.Cluster](c)
	if err != nil {
		return err
	}
	cc, err := upstream.Compile(pc, upstream.Deps{
		Stats:     stats.NewStore(),
		ClientTLS: func(*tlsv3.UpstreamTlsContext) (*tls.Config, error) { return &tls.Config{}, nil },
		Resolver:  noResolver,
	})
	if err != nil {
		return err
	}
	cc.Close()
	return nil
}

// noResolver fails every lookup without sending anything.
var noResolver = &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
	return nil, errors.New("proxycheck: no name resolution while checking a cluster")
}}

// env is the smallest environment strait-proxy's listener compiler needs: no secrets, routes,
// clusters or hand-offs.
type env struct{ st *stats.Store }

func (e env) Secret(string) *tlsv3.Secret                                           { return nil }
func (e env) HTTP() l7.Env                                                          { return e }
func (e env) HTTPOptions() l7.Options                                               { return l7.Options{} }
func (e env) TCP() l4.Env                                                           { return tcpEnv{e} }
func (e env) Stats() *stats.Store                                                   { return e.st }
func (e env) Handoff(netip.AddrPort) *listener.Listener                             { return nil }
func (e env) Route(string) *proute.Table                                            { return nil }
func (e env) Cluster(string) l7.Upstream                                            { return nil }
func (e env) WithOriginalDst(ctx context.Context, _ netip.AddrPort) context.Context { return ctx }

type tcpEnv struct{ env }

func (tcpEnv) Cluster(string) l4.Upstream { return nil }
