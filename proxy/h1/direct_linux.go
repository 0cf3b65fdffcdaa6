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
	d.rd.fn, d.wr.fn = d.read, d.write
	return d
}

// directConn is a TCP connection read and written with raw system calls (DirectConn).
type directConn struct {
	*net.TCPConn
	rc syscall.RawConn
	rd directOp
	wr directOp
}

// directOp is one direction's operation state: the callback given to the RawConn (bound once,
// so a call allocates nothing) and its buffer and results. mu serializes callers.
type directOp struct {
	mu  sync.Mutex
	fn  func(fd uintptr) bool
	buf []byte
	n   int
	err syscall.Errno
}

// Read implements net.Conn.
func (d *directConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	op := &d.rd
	op.mu.Lock()
	op.buf, op.n, op.err = p, 0, 0
	err := d.rc.Read(op.fn)
	n, errno := op.n, op.err
	op.buf = nil
	op.mu.Unlock()
	switch {
	case err != nil:
		return n, d.opError("read", err)
	case errno != 0:
		return n, d.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// read is the read callback: false (wait for readiness) on EAGAIN.
func (d *directConn) read(fd uintptr) bool {
	op := &d.rd
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&op.buf[0])), uintptr(len(op.buf)))
		switch e {
		case 0:
			op.n = int(r)
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

// Write implements net.Conn: all of p is written unless an error (or deadline) stops it.
func (d *directConn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	op := &d.wr
	op.mu.Lock()
	op.buf, op.n, op.err = p, 0, 0
	err := d.rc.Write(op.fn)
	n, errno := op.n, op.err
	op.buf = nil
	op.mu.Unlock()
	switch {
	case err != nil:
		return n, d.opError("write", err)
	case errno != 0:
		return n, d.opError("write", os.NewSyscallError("write", errno))
	}
	return n, nil
}

// write is the write callback: it writes until all is written, and waits for room (false)
// on EAGAIN.
func (d *directConn) write(fd uintptr) bool {
	op := &d.wr
	for op.n < len(op.buf) {
		rest := op.buf[op.n:]
		r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&rest[0])), uintptr(len(rest)))
		switch e {
		case 0:
			op.n += int(r)
			continue
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		op.err = e
		return true
	}
	return true
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
