package xdsfield

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
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
