package xdsfield_test

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/strait-mesh/strait/proxy/l4"
	"github.com/strait-mesh/strait/proxy/l7"
	"github.com/strait-mesh/strait/proxy/listener"
	"github.com/strait-mesh/strait/proxy/route"
	"github.com/strait-mesh/strait/proxy/tlsx"
	"github.com/strait-mesh/strait/proxy/upstream"
	"github.com/strait-mesh/strait/proxy/xdsfield"
	clusterv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/cluster/v3"
	listenerv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/listener/v3"
	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/transport_sockets/tls/v3"
)

// Environments that are never reached: every compiler checks fields first.
type (
	listenerEnv struct{ listener.Env }
	l4Env       struct{ l4.Env }
	l7Env       struct{ l7.Env }
	tlsSecrets  struct{ tlsx.Secrets }
)

// withUnknown returns m carrying field 999, which no Envoy message has: what a newer control
// plane's field looks like to this build.
func withUnknown[M proto.Message](m M) M {
	m.ProtoReflect().SetUnknown([]byte{0xb8, 0x3e, 0x01})
	return m
}

// TestEveryCompilerRefusesUnknownFields checks that every compiler of the proxy refuses a field
// it does not know with the same typed error, because each checks with xdsfield.Check.
func TestEveryCompilerRefusesUnknownFields(t *testing.T) {
	for name, compile := range map[string]func() error{
		"route": func() error {
			_, err := route.Compile(withUnknown(&routev3.RouteConfiguration{Name: "r"}))
			return err
		},
		"upstream": func() error {
			_, err := upstream.Compile(withUnknown(&clusterv3.Cluster{Name: "c"}), upstream.Deps{})
			return err
		},
		"listener": func() error {
			_, err := listener.Compile(withUnknown(&listenerv3.Listener{Name: "l"}), listenerEnv{})
			return err
		},
		"l4": func() error {
			_, err := l4.New(withUnknown(&tcpv3.TcpProxy{StatPrefix: "s"}), l4Env{})
			return err
		},
		"l7": func() error {
			_, err := l7.New(withUnknown(&hcmv3.HttpConnectionManager{StatPrefix: "s"}), l7Env{}, l7.Options{})
			return err
		},
		"tlsx": func() error {
			_, err := tlsx.Server(withUnknown(&tlsv3.DownstreamTlsContext{}), tlsSecrets{})
			return err
		},
	} {
		var ue *xdsfield.UnsupportedError
		if err := compile(); !errors.As(err, &ue) || ue.Field == "" {
			t.Errorf("%s: got %v, want an *xdsfield.UnsupportedError", name, err)
		}
	}
}
