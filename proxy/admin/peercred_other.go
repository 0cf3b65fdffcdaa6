//go:build !linux

package admin

import (
	"errors"
	"net"
)

// peerCred is not implemented outside Linux: the admin socket then refuses every peer (fail
// closed); stop the proxy with SIGTERM.
func peerCred(*net.UnixConn) (uint32, int32, error) {
	return 0, 0, errors.New("peer credentials are only read on Linux")
}
