package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"
)

// Options configures a Server.
type Options struct {
	// Address is the UDP and TCP listen address, e.g. 127.0.0.1:15053. With port 0 the TCP
	// listener takes the port the UDP socket got.
	Address string
	// Table returns the current name table; it is called once per query and may return nil
	// (no mesh names yet: everything is forwarded).
	Table func() *Table
	// Search lists the resolver's search suffixes (see ReadResolvConf): a query for a mesh name
	// with one of them appended is answered with a CNAME to the mesh name.
	Search []string
	// Upstream forwards the other queries; nil answers them SERVFAIL.
	Upstream *Forwarder
	// Logger receives errors of the listeners (default slog.Default()).
	Logger *slog.Logger
	// MaxInFlight bounds the queries handled at once over UDP and the TCP connections served at
	// once (default 256 each); more UDP queries wait, more TCP connections are closed.
	MaxInFlight int
	// TCPIdleTimeout closes a TCP connection without a query for this long (default 10s).
	TCPIdleTimeout time.Duration
	// Metrics count queries; nil counters are skipped.
	Metrics Metrics
}

// Counter is a monotonic counter (the proxy's stats.Counter).
type Counter interface{ Inc() }

// Metrics are the DNS proxy's counters, as istio-agent's: every query answered, queries
// forwarded upstream, and forwarded queries that failed (answered SERVFAIL).
type Metrics struct {
	Requests, UpstreamRequests, UpstreamFailures Counter
}

func inc(c Counter) {
	if c != nil {
		c.Inc()
	}
}

// Server is the DNS proxy: a UDP socket and a TCP listener on one address. Create it with
// Listen, run it with Serve, stop it with Close.
type Server struct {
	opts Options
	h    handler
	udp  net.PacketConn
	tcp  net.Listener
	log  *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	udpSem chan struct{}
	tcpSem chan struct{}
}

// maxTCPQueries bounds the queries served on one TCP connection.
const maxTCPQueries = 1000

// Listen binds the server's sockets. It does not serve until Serve.
func Listen(opts Options) (*Server, error) {
	if opts.Table == nil {
		opts.Table = func() *Table { return nil }
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = 256
	}
	if opts.TCPIdleTimeout <= 0 {
		opts.TCPIdleTimeout = 10 * time.Second
	}
	udp, tcp, err := listenPair(opts.Address)
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, udp: udp, tcp: tcp, log: opts.Logger.With("component", "dns"),
		udpSem: make(chan struct{}, opts.MaxInFlight), tcpSem: make(chan struct{}, opts.MaxInFlight)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.h = handler{table: opts.Table, search: opts.Search, metrics: opts.Metrics}
	if opts.Upstream != nil {
		s.h.forward = opts.Upstream.Forward
	}
	return s, nil
}

// listenPair binds UDP and TCP on one address. With port 0 the UDP socket picks the port; when
// that port is taken for TCP, it tries again with a new one (a bounded number of times).
func listenPair(addr string) (net.PacketConn, net.Listener, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dns address %q: %w", addr, err)
	}
	attempts := 1
	if port == "0" {
		attempts = 20
	}
	for i := 0; ; i++ {
		udp, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("listening for dns on udp %s: %w", addr, err)
		}
		tcp, err := net.Listen("tcp", udp.LocalAddr().String())
		if err == nil {
			return udp, tcp, nil
		}
		udp.Close()
		if i+1 >= attempts || !errors.Is(err, syscall.EADDRINUSE) {
			return nil, nil, fmt.Errorf("listening for dns on tcp %s: %w", udp.LocalAddr(), err)
		}
	}
}

// Addr returns the bound address (the same port for UDP and TCP).
func (s *Server) Addr() net.Addr { return s.udp.LocalAddr() }

// Serve answers queries until Close. It returns nil after Close, or the error that stopped a
// listener.
func (s *Server) Serve() error {
	errc := make(chan error, 2)
	go func() { errc <- s.serveUDP() }()
	go func() { errc <- s.serveTCP() }()
	var first error
	for range 2 {
		if err := <-errc; err != nil && first == nil && s.ctx.Err() == nil {
			first = err
			s.Close()
		}
	}
	s.wg.Wait()
	return first
}

// Close stops the listeners and in-flight forwards. It may be called more than once.
func (s *Server) Close() error {
	s.cancel()
	err := errors.Join(s.udp.Close(), s.tcp.Close())
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// readFailed handles an error of reading or accepting (doing): it reports whether to try again
// (a timeout), and otherwise the error to return, nil when the server is stopping.
func (s *Server) readFailed(err error, doing string) (again bool, _ error) {
	if s.ctx.Err() != nil {
		return false, nil
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true, nil
	}
	return false, fmt.Errorf("%s: %w", doing, err)
}

func (s *Server) serveUDP() error {
	for {
		buf := make([]byte, maxUDPSize)
		n, addr, err := s.udp.ReadFrom(buf)
		if err != nil {
			if again, err := s.readFailed(err, "reading dns over udp"); !again {
				return err
			}
			continue
		}
		select {
		case s.udpSem <- struct{}{}:
		case <-s.ctx.Done():
			return nil
		}
		s.wg.Add(1)
		go func() {
			defer func() { <-s.udpSem; s.wg.Done() }()
			if resp := s.h.respond(s.ctx, buf[:n], false); resp != nil {
				if _, err := s.udp.WriteTo(resp, addr); err != nil && s.ctx.Err() == nil {
					s.log.Debug("writing dns response", "client", addr.String(), "error", err)
				}
			}
		}()
	}
}

func (s *Server) serveTCP() error {
	for {
		c, err := s.tcp.Accept()
		if err != nil {
			if again, err := s.readFailed(err, "accepting dns over tcp"); !again {
				return err
			}
			continue
		}
		select {
		case s.tcpSem <- struct{}{}:
		default:
			c.Close() // too many connections: the client retries
			continue
		}
		s.wg.Add(1)
		go func() {
			defer func() { <-s.tcpSem; s.wg.Done() }()
			s.serveConn(c)
		}()
	}
}

// serveConn answers the queries of one TCP connection, in order, until it is idle, closed or has
// sent maxTCPQueries.
func (s *Server) serveConn(c net.Conn) {
	defer c.Close()
	stop := context.AfterFunc(s.ctx, func() { c.Close() })
	defer stop()
	for range maxTCPQueries {
		_ = c.SetDeadline(time.Now().Add(s.opts.TCPIdleTimeout))
		msg, err := readTCP(c)
		if err != nil {
			return
		}
		resp := s.h.respond(s.ctx, msg, true)
		if resp == nil {
			return
		}
		_ = c.SetDeadline(time.Now().Add(s.opts.TCPIdleTimeout))
		if writeTCP(c, resp) != nil {
			return
		}
	}
}
