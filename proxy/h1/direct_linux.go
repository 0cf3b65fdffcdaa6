package h1

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/strait-mesh/strait/proxy/stats"
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
//
// Its deadlines are applied lazily (lazyDeadline, deadline_linux.go): SetReadDeadline and
// SetWriteDeadline record the deadline, and the socket's own (a runtime poller timer) is moved
// only when the new deadline is earlier than the one armed. When the armed deadline passes
// before the recorded one, the read or write waiting on it re-arms it and goes on. Deadlines
// fire as before (the same errors, no later), but a keep-alive connection whose deadlines
// move later request after request (idle, then request head, then none) touches the poller's
// timers about once per period rather than at every call. With a write stall limit
// (SetWriteStall) a write that must wait for room fails once the peer accepts no byte for that
// long, with no deadline armed for writes the socket takes at once.
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
	d.rd.name = "read"
	d.wr.name, d.wr.whole = "write", true
	d.rd.fn, d.wr.fn = d.rd.callback(), d.wr.callback()
	d.rd.dl.set, d.wr.dl.set = tc.SetReadDeadline, tc.SetWriteDeadline
	d.rd.dl.sets, d.wr.dl.sets = &d.sets, &d.sets
	return d
}

// SetWriteStall sets how long a write on nc's socket, a connection from DirectConn, may wait
// with the peer accepting no byte before it fails with ErrWriteStall; 0: no limit. The clock
// starts only when a write finds the socket full, and restarts at each byte accepted. nc may
// also be a wrapper that writes through such a connection and exposes it with a NetConn method
// (crypto/tls's *tls.Conn, proxy/sniff's Conn, or several of them nested): the limit then
// applies to the wrapper's writes on the socket beneath (over TLS a write stalled part way
// leaves the TLS connection unusable, as any failed TLS write does), and its writes fail with
// ErrWriteStall inside their own errors (errors.Is finds it). It reports false, changing
// nothing, when no such connection is beneath nc. Call it before writes start.
func SetWriteStall(nc net.Conn, d time.Duration) bool {
	dc := direct(nc)
	if dc != nil {
		dc.wr.stall.Store(int64(d))
	}
	return dc != nil
}

// countDirect makes nc, when it is a connection from DirectConn itself (not a wrapper), count
// the bytes its reads and writes pass into rx and tx (Conn.CountBytes), and reports whether it
// is one. Call it before the connection is shared.
func countDirect(nc net.Conn, rx, tx *stats.Counter) bool {
	d, ok := nc.(*directConn)
	if ok {
		d.rd.count, d.wr.count = rx, tx
	}
	return ok
}

// DeadlineSets reports how many times the socket deadlines of nc, a connection from
// DirectConn (or a wrapper of one, as for SetWriteStall), were moved (runtime poller timer
// operations), or -1 for another connection: a measure of what the lazy deadlines save, for
// tests and benchmarks.
func DeadlineSets(nc net.Conn) int64 {
	if dc := direct(nc); dc != nil {
		return dc.sets.Load()
	}
	return -1
}

// netConner is a connection wrapper that exposes the connection it reads and writes through
// (crypto/tls's *tls.Conn, proxy/sniff's Conn).
type netConner interface{ NetConn() net.Conn }

// maxWrappers bounds how many wrappers direct looks beneath (a wrapper returning itself, or a
// cycle, must not loop).
const maxWrappers = 8

// direct returns the connection from DirectConn that nc is, or that nc's wrappers (netConner)
// expose, or nil.
func direct(nc net.Conn) *directConn {
	for i := 0; i < maxWrappers && nc != nil; i++ {
		switch c := nc.(type) {
		case *directConn:
			return c
		case netConner:
			nc = c.NetConn()
		default:
			return nil
		}
	}
	return nil
}

// directConn is a TCP connection read and written with raw system calls (DirectConn). Its
// fields are ordered for the cache lines an operation touches: rc first, then each
// direction's operation, whose common fields come first (see directOp); what only a slow
// path reads comes last.
type directConn struct {
	rc syscall.RawConn
	rd directOp
	wr directOp
	*net.TCPConn
	sets atomic.Int64 // socket deadline changes (DeadlineSets)
}

// directOp is one direction's operation: the system call, the callback given to the RawConn
// (bound once, so that a call allocates nothing), the call's buffer and results, and the
// direction's deadline. mu serializes callers. The fields a call reads and writes when the
// socket is ready come first (112 bytes: two cache lines of a directConn each), name and the
// deadline, which only the slow paths and deadline changes read, after them.
type directOp struct {
	mu    sync.Mutex
	stall atomic.Int64 // write stall limit (nanoseconds); 0: none (the write direction's)
	fn    func(fd uintptr) bool
	n     int
	err   syscall.Errno
	from  int            // n when the current RawConn call began (opProgress)
	count *stats.Counter // counts the bytes read or written (Conn.CountBytes); nil: none
	mode  uint8          // when the callback gives up at EAGAIN: opWait, opNoWait, opProgress
	whole bool           // a write (SYS_WRITE, else SYS_READ): done only once all of buf is written
	buf   []byte
	buf2  []byte // a vectored write's second buffer (WriteVector), written after buf; nil: none
	name  string
	dl    lazyDeadline
}

// Callback modes at EAGAIN.
const (
	opWait     uint8 = iota // wait for readiness (until done)
	opNoWait                // return: the caller arms the stall clock before waiting
	opProgress              // wait, but return once this call wrote something
)

// Read implements net.Conn. The common read (bytes at once, or after a wait for readiness)
// is this function; a deadline, an error or the end of the stream are readSlow's.
func (d *directConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	op := &d.rd
	op.mu.Lock()
	op.buf, op.n, op.err, op.mode = p, 0, 0, opWait
	err := d.rc.Read(op.fn)
	if n := op.n; err == nil && op.err == 0 && n > 0 {
		op.buf = nil
		if op.count != nil {
			op.count.Add(uint64(n))
		}
		op.mu.Unlock()
		return n, nil
	}
	return d.readSlow(err)
}

// readSlow ends a Read whose RawConn call returned err, no byte, or a system call error: it
// re-arms a lazy deadline that passed before the caller's and goes on, then reports. op.mu
// is held; readSlow unlocks it. Out of Read: rare.
//
//go:noinline
func (d *directConn) readSlow(err error) (int, error) {
	op := &d.rd
	for err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		if retry, _ := op.dl.rearm(); !retry {
			break
		}
		err = d.rc.Read(op.fn)
	}
	n, errno := op.n, op.err
	op.buf = nil
	if op.count != nil && n > 0 {
		op.count.Add(uint64(n))
	}
	op.mu.Unlock()
	switch {
	case err != nil:
		return n, d.opError(op.name, err)
	case errno != 0:
		return n, d.opError(op.name, os.NewSyscallError(op.name, errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write implements net.Conn: all of p is written unless an error, the deadline or the write
// stall limit stops it.
func (d *directConn) Write(p []byte) (int, error) { return d.write(p, nil) }

// WriteVector implements VectorWriter: a then b as Write would write them one after the
// other, in one writev system call when the socket takes them at once (most writes).
func (d *directConn) WriteVector(a, b []byte) (int, error) {
	switch {
	case len(a) == 0:
		return d.write(b, nil)
	case len(b) == 0:
		return d.write(a, nil)
	}
	return d.write(a, b)
}

// write writes p, then p2 if not nil (with writev). The common write (all at once; with no
// stall limit, also after waits for room) is this function; writeSlow does the rest.
func (d *directConn) write(p, p2 []byte) (int, error) {
	total := len(p) + len(p2)
	if total == 0 {
		return 0, nil
	}
	op := &d.wr
	op.mu.Lock()
	stall := time.Duration(op.stall.Load())
	op.buf, op.buf2, op.n, op.err, op.mode, op.from = p, p2, 0, 0, opWait, 0
	if stall > 0 {
		op.mode = opNoWait
	}
	err := d.rc.Write(op.fn)
	if err == nil && op.err == 0 && op.n == total {
		op.buf, op.buf2 = nil, nil
		if op.count != nil {
			op.count.Add(uint64(total))
		}
		op.mu.Unlock()
		return total, nil
	}
	return d.writeSlow(total, stall, err)
}

// writeSlow goes on with a write whose first RawConn call returned err without writing all
// total bytes: a socket full under a stall limit, a lazy deadline to re-arm, or a failure.
// op.mu is held; writeSlow unlocks it. Out of write: rare.
//
//go:noinline
func (d *directConn) writeSlow(total int, stall time.Duration, err error) (int, error) {
	op := &d.wr
	stalled, clocked := false, false
	for {
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			retry, st := op.dl.rearm()
			if !retry {
				stalled = st
				break
			}
		} else {
			if op.err != 0 || op.n == total || op.mode == opWait {
				break
			}
			// The socket is full: the stall clock runs from now (the first wait, then each
			// time the peer accepted bytes), and the write waits for room.
			op.dl.setStall(time.Now().Add(stall))
			op.mode, clocked = opProgress, true
		}
		op.from = op.n
		err = d.rc.Write(op.fn)
	}
	if clocked {
		op.dl.setStall(time.Time{})
	}
	return d.writeResult(total, err, stalled)
}

// writeResult reports a write's result (stalled: the stall limit ended it). op.mu is held;
// writeResult unlocks it.
func (d *directConn) writeResult(total int, err error, stalled bool) (int, error) {
	op := &d.wr
	n, errno := op.n, op.err
	op.buf, op.buf2 = nil, nil
	if op.count != nil && n > 0 {
		op.count.Add(uint64(n))
	}
	op.mu.Unlock()
	switch {
	case stalled:
		// The peer stopped reading: closing would leave the unsent bytes queued in the
		// kernel (up to the socket's send buffer, megabytes) for as long as the peer keeps
		// its window shut. Reset the connection when it is closed instead (SO_LINGER 0).
		_ = d.TCPConn.SetLinger(0)
		return n, d.opError(op.name, ErrWriteStall)
	case err != nil:
		return n, d.opError(op.name, err)
	case errno != 0:
		return n, d.opError(op.name, os.NewSyscallError(op.name, errno))
	case n < total:
		return n, d.opError(op.name, io.ErrShortWrite) // a write of 0 bytes: not expected
	}
	return n, nil
}

// SetDeadline implements net.Conn (lazily, see DirectConn).
func (d *directConn) SetDeadline(t time.Time) error {
	err := d.rd.dl.request(t)
	if werr := d.wr.dl.request(t); err == nil {
		err = werr
	}
	return err
}

// SetReadDeadline implements net.Conn (lazily, see DirectConn).
func (d *directConn) SetReadDeadline(t time.Time) error { return d.rd.dl.request(t) }

// SetWriteDeadline implements net.Conn (lazily, see DirectConn).
func (d *directConn) SetWriteDeadline(t time.Time) error { return d.wr.dl.request(t) }

// ReadFrom implements io.ReaderFrom through Write, so that the lazy deadlines and the write
// stall limit hold (net.TCPConn's would splice under them).
func (d *directConn) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(struct{ io.Writer }{d}, r)
}

// WriteTo implements io.WriterTo through Read (as ReadFrom).
func (d *directConn) WriteTo(w io.Writer) (int64, error) {
	return io.Copy(w, struct{ io.Reader }{d})
}

// callback returns op's callback: true once done or failed; at EAGAIN false (wait for
// readiness), or true as op.mode says. A function literal, rather than the method value of a
// method, so that the RawConn calls the callback's code directly, not through a wrapper; not
// inlined, so that reads and writes share that code.
//
//go:noinline
func (op *directOp) callback() func(fd uintptr) bool {
	return func(fd uintptr) bool {
		for {
			var r uintptr
			var e syscall.Errno
			if op.buf2 == nil {
				rest := op.buf[op.n:]
				trap := uintptr(syscall.SYS_READ)
				if op.whole {
					trap = syscall.SYS_WRITE
				}
				r, _, e = syscall.RawSyscall(trap, fd, uintptr(unsafe.Pointer(&rest[0])), uintptr(len(rest)))
			} else {
				r, e = op.writev(fd) // a vectored write (WriteVector)
			}
			switch e {
			case 0:
				op.n += int(r)
				if op.whole && op.n < len(op.buf)+len(op.buf2) && r > 0 {
					continue
				}
				return true
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return op.mode == opNoWait || op.mode == opProgress && op.n > op.from
			}
			op.err = e
			return true
		}
	}
}

// writev writes op.buf[op.n:] and then op.buf2 (not empty) with one writev system call.
func (op *directOp) writev(fd uintptr) (uintptr, syscall.Errno) {
	a, b := op.buf, op.buf2
	var iov [2]syscall.Iovec
	cnt := uintptr(1)
	if op.n < len(a) {
		iov[0].Base, iov[1].Base = &a[op.n], &b[0]
		iov[0].SetLen(len(a) - op.n)
		iov[1].SetLen(len(b))
		cnt = 2
	} else {
		off := op.n - len(a)
		iov[0].Base = &b[off]
		iov[0].SetLen(len(b) - off)
	}
	r, _, e := syscall.RawSyscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), cnt)
	return r, e
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
