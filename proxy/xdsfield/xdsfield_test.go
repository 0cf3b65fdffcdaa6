package xdsfield

import (
	"errors"
	"strings"
	"testing"

	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
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
