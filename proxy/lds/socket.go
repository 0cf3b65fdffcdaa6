package lds

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// socket is one bound listening socket. Its accept loop hands every connection to the current
// feed, the accept queue of the listener generation serving the address. A changed listener thus
// takes over the socket without closing it: no connection is refused or reset during the
// switch, and the previous generation drains the connections it already has.
type socket struct {
	ln   net.Listener
	addr netip.AddrPort
	log  *slog.Logger
	cur  atomic.Pointer[feed]

	closeOnce sync.Once
	closed    chan struct{}
	startOnce sync.Once // the accept loop starts when the first listener serves
}

func newSocket(ln net.Listener, addr netip.AddrPort, log *slog.Logger) *socket {
	return &socket{ln: ln, addr: addr, log: log, closed: make(chan struct{})}
}

// newFeed returns an accept queue for a listener generation on this socket.
func (s *socket) newFeed() *feed {
	return &feed{sock: s, ch: make(chan net.Conn), closed: make(chan struct{})}
}

// switchTo makes f receive the socket's next connections.
func (s *socket) switchTo(f *feed) { s.cur.Store(f) }

// close stops accepting; connections already handed over are unaffected.
func (s *socket) close() {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.ln.Close()
	})
}

// acceptLoop accepts until the socket is closed.
func (s *socket) acceptLoop() {
	var backoff time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.closed:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and friends: back off instead of spinning.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed", "address", s.addr.String(), "error", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		s.deliver(c)
	}
}

// deliver hands c to the current feed, following a switch that happens meanwhile.
func (s *socket) deliver(c net.Conn) {
	for {
		f := s.cur.Load()
		if f == nil {
			c.Close()
			return
		}
		select {
		case f.ch <- c:
			return
		case <-f.closed:
			if s.cur.Load() == f {
				c.Close() // no successor
				return
			}
		case <-s.closed:
			c.Close()
			return
		}
	}
}

// feed is a net.Listener whose connections come from a socket's accept loop. Closing it ends
// the Serve of its listener generation without touching the socket.
type feed struct {
	sock      *socket
	ch        chan net.Conn
	closeOnce sync.Once
	closed    chan struct{}
}

// Accept returns the next connection or net.ErrClosed after Close.
func (f *feed) Accept() (net.Conn, error) {
	select {
	case c := <-f.ch:
		return c, nil
	case <-f.closed:
		return nil, net.ErrClosed
	}
}

// Close stops this feed.
func (f *feed) Close() error {
	f.closeOnce.Do(func() { close(f.closed) })
	return nil
}

// Addr returns the socket's address.
func (f *feed) Addr() net.Addr { return f.sock.ln.Addr() }
