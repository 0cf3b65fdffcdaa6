//go:build !linux

package h1

import (
	"net"
	"time"

	"github.com/strait-mesh/strait/proxy/stats"
)

// DirectConn returns nc: raw system calls are used on Linux only (see direct_linux.go).
func DirectConn(nc net.Conn) net.Conn { return nc }

// SetWriteStall reports false: only DirectConn's connections (Linux), and wrappers over them,
// keep a write stall limit.
func SetWriteStall(nc net.Conn, d time.Duration) bool { return false }

// DeadlineSets reports -1: only DirectConn's connections (Linux) count their deadline changes.
func DeadlineSets(nc net.Conn) int64 { return -1 }

// countDirect reports false: only DirectConn's connections (Linux) count their bytes.
func countDirect(nc net.Conn, rx, tx *stats.Counter) bool { return false }
