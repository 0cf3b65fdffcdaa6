// Package grpclite is a small gRPC client over golang.org/x/net/http2's Transport, so that
// strait-proxy can call gRPC services (ADS, the CA, health probes) without linking grpc-go.
//
// It implements the client side of gRPC over HTTP/2 (PROTOCOL-HTTP2.md): length-prefixed
// uncompressed messages, content-type application/grpc, te: trailers, grpc-timeout from the
// context's deadline, grpc-status, grpc-message (percent-decoded) and grpc-status-details-bin
// from trailers or a trailers-only reply, custom metadata (-bin keys base64-encoded), and a
// bound on received messages that is checked before a message is allocated. It never asks for
// compression and refuses a compressed message. Unary calls (Conn.Invoke) and streams
// (Conn.NewStream: Send, Recv, CloseSend) share one connection per Conn, opened on first use and
// re-opened after it breaks; cancelling a call's context resets its stream (RST_STREAM CANCEL).
//
// It speaks h2c (HTTP/2 with prior knowledge) when Options.TLS is nil and TLS with ALPN h2
// otherwise (the caller's tls.Config: mTLS for xDS). Keepalive pings are x/net's
// ReadIdleTimeout and PingTimeout. Every failure is a *Status (see FromError, CodeOf).
//
// Not implemented: compression, name resolution beyond one host:port, load balancing between
// addresses, retries and service config: callers that need them reconnect themselves.
package grpclite

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// DefaultMaxHeaderListSize bounds the headers (and trailers) of one reply unless
// Options.MaxHeaderListSize is set.
const DefaultMaxHeaderListSize = 64 << 10

// Options configure a Conn. The zero value is h2c with gRPC's default limits.
type Options struct {
	// TLS, when set, makes the connection TLS with ALPN h2; its ServerName defaults to the
	// target's host. Nil: h2c (prior knowledge).
	TLS *tls.Config
	// Authority is the calls' :authority; "" means the target.
	Authority string
	// UserAgent is sent as user-agent; "" means "strait-grpclite".
	UserAgent string
	// MaxReceive bounds one received message; 0 means DefaultMaxReceive.
	MaxReceive int
	// MaxHeaderListSize bounds one reply's headers and trailers; 0 means
	// DefaultMaxHeaderListSize.
	MaxHeaderListSize uint32
	// ReadIdleTimeout, when set, sends a ping after that long without a frame from the server;
	// PingTimeout (x/net's default 15s when 0) closes the connection when the ping goes
	// unanswered. gRPC's keepalive time and timeout. x/net pings whenever the connection is
	// idle, streams or not, and a grpc-go server by default closes a connection that pings
	// more often than every 5 minutes (its keepalive enforcement policy): stay above it.
	ReadIdleTimeout, PingTimeout time.Duration
	// Dial opens the TCP connection; nil means a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// ConnectTimeout bounds opening one connection, TCP and TLS handshake together, so that a
	// peer that drops SYNs or never finishes the handshake fails the call instead of holding
	// it for the kernel's retries; 0 means DefaultConnectTimeout. The call's own deadline
	// applies too.
	ConnectTimeout time.Duration
}

// DefaultConnectTimeout bounds opening a connection unless Options.ConnectTimeout is set:
// gRPC's minimum connect timeout.
const DefaultConnectTimeout = 20 * time.Second

// Conn calls one gRPC server (host:port). It is safe for concurrent use; its calls share its
// HTTP/2 connection.
type Conn struct {
	target, authority, scheme, userAgent string
	maxReceive                           int
	opts                                 Options
	t                                    *http2.Transport

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
}

// errClosed fails calls on a closed Conn.
var errClosed = errors.New("the connection is closed")

// ParseTarget returns the host:port of a gRPC target: host:port itself, or one of gRPC's
// URIs that name it, "dns:///host:port" and "passthrough:///host:port". grpclite resolves the
// host with the Go resolver when it connects and tries its addresses in order. Other schemes,
// and a dns authority ("dns://8.8.8.8/host:port"), are refused.
func ParseTarget(target string) (string, error) {
	addr := target
	for _, scheme := range []string{"dns:///", "passthrough:///"} {
		if rest, ok := strings.CutPrefix(target, scheme); ok {
			addr = rest
			break
		}
	}
	if strings.Contains(addr, "/") {
		return "", fmt.Errorf("grpc target %q: only host:port, dns:///host:port and passthrough:///host:port are supported", target)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return "", fmt.Errorf("grpc target %q: %w", target, err)
	}
	return addr, nil
}

// Dial returns a Conn to target (see ParseTarget). It opens no connection: the first call
// does.
func Dial(target string, opts Options) (*Conn, error) {
	target, err := ParseTarget(target)
	if err != nil {
		return nil, err
	}
	if opts.MaxReceive < 0 || opts.ConnectTimeout < 0 {
		return nil, fmt.Errorf("grpc target %q: negative MaxReceive or ConnectTimeout", target)
	}
	if opts.ConnectTimeout == 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	c := &Conn{
		target:     target,
		authority:  target,
		scheme:     "http",
		userAgent:  "strait-grpclite",
		maxReceive: DefaultMaxReceive,
		opts:       opts,
		conns:      map[net.Conn]struct{}{},
	}
	if opts.Authority != "" {
		c.authority = opts.Authority
	}
	if opts.UserAgent != "" {
		c.userAgent = opts.UserAgent
	}
	if opts.MaxReceive > 0 {
		c.maxReceive = opts.MaxReceive
	}
	if opts.TLS != nil {
		c.scheme = "https"
	}
	hl := opts.MaxHeaderListSize
	if hl == 0 {
		hl = DefaultMaxHeaderListSize
	}
	c.t = &http2.Transport{
		DialTLSContext:     c.dial,
		AllowHTTP:          true,
		DisableCompression: true, // no HTTP-level gzip: gRPC has its own (unused) compression
		MaxHeaderListSize:  hl,
		ReadIdleTimeout:    opts.ReadIdleTimeout,
		PingTimeout:        opts.PingTimeout,
	}
	return c, nil
}

// Target is the host:port the Conn calls.
func (c *Conn) Target() string { return c.target }

// dial opens one connection for the transport: TCP, then TLS with ALPN h2 when configured.
func (c *Conn) dial(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return nil, errClosed
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.ConnectTimeout)
	defer cancel()
	dial := c.opts.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	raw, err := dial(ctx, network, c.target)
	if err != nil {
		return nil, fmt.Errorf("dialing %s: %w", c.target, err)
	}
	conn := raw
	if c.opts.TLS != nil {
		cfg := c.opts.TLS.Clone()
		cfg.NextProtos = []string{"h2"}
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(c.target)
		}
		tc := tls.Client(raw, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, fmt.Errorf("TLS handshake with %s: %w", c.target, err)
		}
		if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
			tc.Close()
			return nil, fmt.Errorf("TLS handshake with %s: the server negotiated ALPN %q, not h2", c.target, p)
		}
		conn = tc
	}
	tracked := &trackedConn{Conn: conn, c: c}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		conn.Close()
		return nil, errClosed
	}
	c.conns[tracked] = struct{}{}
	return tracked, nil
}

// Close closes the Conn's connections, failing the calls in flight; later calls fail too.
func (c *Conn) Close() error {
	c.mu.Lock()
	c.closed = true
	conns := make([]net.Conn, 0, len(c.conns))
	for nc := range c.conns {
		conns = append(conns, nc)
	}
	c.mu.Unlock()
	c.t.CloseIdleConnections()
	var errs []error
	for _, nc := range conns {
		if err := nc.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// trackedConn forgets itself in its Conn when closed.
type trackedConn struct {
	net.Conn
	c    *Conn
	once sync.Once
}

func (t *trackedConn) Close() error {
	t.once.Do(func() {
		t.c.mu.Lock()
		delete(t.c.conns, t)
		t.c.mu.Unlock()
	})
	return t.Conn.Close()
}
