package xdsfield

import (
	"errors"
	"strings"
	"testing"

	gcorev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	glistenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/proto"

	"github.com/strait-mesh/strait/proxy/xdspb"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	listenerv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/listener/v3"
)

func TestCheckNamesTheUnsupportedField(t *testing.T) {
	m := &corev3.SocketAddress{Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 80}, Ipv4Compat: true}
	if err := Check(m, "address", "address", "port_value", "ipv4_compat"); err != nil {
		t.Fatalf("allowed fields rejected: %v", err)
	}
	err := Check(m, "address", "address", "port_value")
	if err == nil || !strings.Contains(err.Error(), "address.ipv4_compat") {
		t.Fatalf("want an error naming address.ipv4_compat, got %v", err)
	}
}

func TestCheckRejectsUnknownFields(t *testing.T) {
	m := &corev3.SocketAddress{Address: "127.0.0.1"}
	// Field 99 of SocketAddress does not exist: what a newer control plane could send.
	m.ProtoReflect().SetUnknown([]byte{0x98, 0x06, 0x01})
	err := Check(m, "address", "address")
	var ue *UnsupportedError
	if !errors.As(err, &ue) || ue.Field != "address.<unknown field>" {
		t.Fatalf("want an UnsupportedError for address.<unknown field>, got %v", err)
	}
	if err := Check(nil, "x"); err != nil {
		t.Fatalf("nil message: %v", err)
	}
	if err := Check((*corev3.SocketAddress)(nil), "x"); err != nil {
		t.Fatalf("typed nil message: %v", err)
	}
}

// TestCheckNamesPrunedFields: a field strait-proxy does not read is left out of its trimmed types
// (proxy/xdspb) and decodes as an unknown field; set in go-control-plane's message, marshalled and
// decoded into the trimmed type, it is still refused by name, as the proxy NACKs it on the wire.
func TestCheckNamesPrunedFields(t *testing.T) {
	g := &gcorev3.SocketAddress{Address: "127.0.0.1", ResolverName: "custom"}
	b, err := proto.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	m := new(corev3.SocketAddress)
	if err := (proto.UnmarshalOptions{Resolver: xdspb.Resolver}).Unmarshal(b, m); err != nil {
		t.Fatal(err)
	}
	if m.GetAddress() != "127.0.0.1" || len(m.ProtoReflect().GetUnknown()) == 0 {
		t.Fatalf("resolver_name is not an unknown field of the trimmed type: %v", m)
	}
	err = Check(m, "address", "address", "port_value")
	var ue *UnsupportedError
	if !errors.As(err, &ue) || ue.Field != "address.resolver_name" {
		t.Fatalf("want an UnsupportedError for address.resolver_name, got %v", err)
	}
	// The same through xdspb.From, in a nested message.
	l := xdspb.MustFrom[*listenerv3.Listener](&glistenerv3.Listener{Name: "l", Address: &gcorev3.Address{
		Address: &gcorev3.Address_SocketAddress{SocketAddress: g}}})
	if err := Check(l.GetAddress().GetSocketAddress(), "listener.address.socket_address", "address"); err == nil ||
		err.Error() != "listener.address.socket_address.resolver_name: not supported by strait-proxy" {
		t.Fatalf("nested: %v", err)
	}
}
