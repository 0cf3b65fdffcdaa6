package h1

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// DirectConn returns nc with its reads and writes made as raw system calls on its
// non-blocking socket (through syscall.RawConn) when nc is a *net.TCPConn, else nc itself.
//
// The runtime's poller still waits for readiness and enforces the connection's deadlines; the
// difference is that the read or write is not a potentially blocking system call to the
// scheduler (entersyscall and exitsyscall). A socket that is not ready answers EAGAIN at once,
// so the system call cannot block. Each entersyscall wakes the runtime's sysmon thread when it
// sleeps: on a proxy that goes idle between requests that was a wake-up (futex) and then
// sysmon's 20 µs polling (nanosleep) for every request, on the proxy's own CPU when it is
// pinned to one, and a loopback write taking longer than a sysmon tick had its P retaken.
func DirectConn(nc net.Conn) net.Conn {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nc
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nc
	}
	d := &directConn{TCPConn: tc, rc: rc}
	d.rd.trap, d.rd.name = syscall.SYS_READ, "read"
	d.wr.trap, d.wr.name, d.wr.whole = syscall.SYS_WRITE, "write", true
	d.rd.fn, d.wr.fn = d.rd.call, d.wr.call
	return d
}

// directConn is a TCP connection read and written with raw system calls (DirectConn).
type directConn struct {
	*net.TCPConn
	rc syscall.RawConn
	rd directOp
	wr directOp
}

// directOp is one direction's operation: the system call, the callback given to the RawConn
// (bound once, so that a call allocates nothing), and the call's buffer and results. mu
// serializes callers.
type directOp struct {
	mu    sync.Mutex
	trap  uintptr // SYS_READ or SYS_WRITE
	name  string
	whole bool // a write: done only once all of buf is written
	fn    func(fd uintptr) bool
	buf   []byte
	n     int
	err   syscall.Errno
}

// Read implements net.Conn.
func (d *directConn) Read(p []byte) (int, error) {
	n, err := d.do(&d.rd, d.rc.Read, p)
	if err == nil && n == 0 && len(p) > 0 {
		return 0, io.EOF
	}
	return n, err
}

// Write implements net.Conn: all of p is written unless an error (or deadline) stops it.
func (d *directConn) Write(p []byte) (int, error) { return d.do(&d.wr, d.rc.Write, p) }

// do runs op on p through the RawConn's Read or Write (wait), which waits for readiness
// (and enforces the deadline) whenever the callback reports EAGAIN.
func (d *directConn) do(op *directOp, wait func(func(uintptr) bool) error, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	op.mu.Lock()
	op.buf, op.n, op.err = p, 0, 0
	err := wait(op.fn)
	n, errno := op.n, op.err
	op.buf = nil
	op.mu.Unlock()
	switch {
	case err != nil:
		return n, d.opError(op.name, err)
	case errno != 0:
		return n, d.opError(op.name, os.NewSyscallError(op.name, errno))
	case op.whole && n < len(p):
		return n, d.opError(op.name, io.ErrShortWrite) // a write of 0 bytes: not expected
	}
	return n, nil
}

// call is op's callback: false (wait for readiness) on EAGAIN, true once done or failed.
func (op *directOp) call(fd uintptr) bool {
	for {
		rest := op.buf[op.n:]
		r, _, e := syscall.RawSyscall(op.trap, fd, uintptr(unsafe.Pointer(&rest[0])), uintptr(len(rest)))
		switch e {
		case 0:
			op.n += int(r)
			if op.whole && op.n < len(op.buf) && r > 0 {
				continue
			}
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		op.err = e
		return true
	}
}

// opError wraps err as net's own connections do, so that callers see the same errors
// (net.ErrClosed, os.ErrDeadlineExceeded, syscall errors) through errors.Is and net.Error.
func (d *directConn) opError(op string, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		// The RawConn's own ("raw-read", "raw-write"), fresh for this call.
		oe.Op = op
		return oe
	}
	return &net.OpError{Op: op, Net: "tcp", Source: d.LocalAddr(), Addr: d.RemoteAddr(), Err: err}
}
