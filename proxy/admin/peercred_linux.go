package admin

import (
	"net"
	"syscall"
)

// peerCred returns the uid and pid of the process that connected c (SO_PEERCRED: the
// credentials at connect time, which the peer cannot forge).
func peerCred(c *net.UnixConn) (uid uint32, pid int32, err error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	var cred *syscall.Ucred
	var serr error
	if err := rc.Control(func(fd uintptr) {
		cred, serr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return 0, 0, err
	}
	if serr != nil {
		return 0, 0, serr
	}
	return cred.Uid, cred.Pid, nil
}
