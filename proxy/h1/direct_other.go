//go:build !linux

package h1

import "net"

// DirectConn returns nc: raw system calls are used on Linux only (see direct_linux.go).
func DirectConn(nc net.Conn) net.Conn { return nc }
