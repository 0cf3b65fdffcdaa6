//go:build !linux

package listener

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
)

// originalDst is only available on Linux (netfilter); elsewhere the local address is used.
func originalDst(net.Conn, netip.AddrPort) (netip.AddrPort, bool) { return netip.AddrPort{}, false }

// socketControl refuses socket options that only Linux implements.
func socketControl(transparent, freebind, reusePort, _ bool) func(string, string, syscall.RawConn) error {
	if !transparent && !freebind && !reusePort {
		return nil
	}
	return func(string, string, syscall.RawConn) error {
		return errors.New("transparent, freebind and enable_reuse_port are only supported on Linux")
	}
}
