package sniff

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// Conn wraps an accepted connection whose first bytes were peeked: reads return the peeked bytes
// first, then continue on the underlying connection. A Conn is used by one reader goroutine at a
// time (like any net.Conn); writes go straight to the underlying connection.
type Conn struct {
	net.Conn
	buf  *[]byte // pooled peek buffer backing data, if data came from the pool
	data []byte  // unread peeked bytes
	eof  bool    // the peer closed its write side during peeking
}

// NewConn returns c wrapped so that it can be peeked. If c is already a *Conn it is returned as is.
func NewConn(c net.Conn) *Conn {
	if sc, ok := c.(*Conn); ok {
		return sc
	}
	return &Conn{Conn: c}
}

// NetConn returns the underlying connection. Writes go straight to it, so a limit it keeps on
// its writes holds for the Conn's too (h1.SetWriteStall finds it through this method).
func (c *Conn) NetConn() net.Conn { return c.Conn }

// Peeked returns the bytes read so far but not yet consumed. The slice is valid until the next
// Read or Peek.
func (c *Conn) Peeked() []byte { return c.data }

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// Fill reads once more from the underlying connection, appending to the peeked bytes, unless limit
// bytes are already buffered (then it returns ErrTooLarge). It returns io.EOF when the peer closed
// its side, and the read error otherwise (including a deadline expiry).
func (c *Conn) Fill(limit int) error {
	if c.eof {
		return io.EOF
	}
	if len(c.data) >= limit {
		return ErrTooLarge
	}
	if c.data == nil {
		c.buf = bufPool.Get().(*[]byte)
		c.data = (*c.buf)[:0]
	}
	if cap(c.data)-len(c.data) < 512 && cap(c.data) < limit {
		nb := make([]byte, len(c.data), min(limit, max(2*cap(c.data), len(c.data)+4096)))
		copy(nb, c.data)
		c.release()
		c.data = nb
	}
	room := c.data[len(c.data):min(cap(c.data), len(c.data)+(limit-len(c.data)))]
	n, err := c.Conn.Read(room)
	c.data = c.data[:len(c.data)+n]
	if errors.Is(err, io.EOF) {
		c.eof = true
		if n > 0 {
			return nil
		}
	}
	return err
}

// Read returns peeked bytes first, then reads from the underlying connection.
func (c *Conn) Read(p []byte) (int, error) {
	if len(c.data) > 0 {
		n := copy(p, c.data)
		c.data = c.data[n:]
		if len(c.data) == 0 {
			c.release()
		}
		return n, nil
	}
	if c.eof {
		return 0, io.EOF
	}
	return c.Conn.Read(p)
}

func (c *Conn) release() {
	if c.buf != nil {
		bufPool.Put(c.buf)
	}
	c.buf, c.data = nil, nil
}

// WriteTo writes the peeked bytes to w, then copies the rest of the connection with w's ReadFrom
// when it has one, so that a TCP-to-TCP copy can use splice(2).
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	var total int64
	if len(c.data) > 0 {
		n, err := w.Write(c.data)
		total += int64(n)
		c.data = c.data[n:]
		if err != nil {
			return total, err
		}
		c.release()
	}
	if c.eof {
		return total, nil
	}
	var n int64
	var err error
	if rf, ok := w.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(c.Conn)
	} else {
		n, err = io.Copy(w, struct{ io.Reader }{c.Conn})
	}
	return total + n, err
}

// CloseWrite half-closes the underlying connection when it supports it.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// Close closes the underlying connection. It may be called concurrently with Read (as net.Conn
// allows), so it leaves the peek buffer alone; an undrained buffer is left to the garbage
// collector rather than returned to the pool.
func (c *Conn) Close() error {
	return c.Conn.Close()
}

// Options selects the inspectors to run and their limits.
type Options struct {
	// TLS runs the tls_inspector: detects a ClientHello and extracts SNI and ALPN.
	TLS bool
	// HTTP runs the http_inspector on plaintext connections: detects HTTP/1.x or h2c.
	HTTP bool
	// MaxClientHelloSize bounds the ClientHello (0: DefaultMaxClientHelloSize).
	MaxClientHelloSize int
	// CloseOnClientHelloError makes a malformed ClientHello an error instead of "not TLS".
	CloseOnClientHelloError bool
	// Timeout bounds the whole inspection (listener_filters_timeout; 0 means no timeout).
	Timeout time.Duration
	// ContinueOnTimeout proceeds with what is known when the timeout expires instead of failing
	// (continue_on_listener_filters_timeout).
	ContinueOnTimeout bool
}

// Result is what the inspectors learned.
type Result struct {
	// TransportProtocol is "tls" when a ClientHello was seen, else "raw_buffer".
	TransportProtocol string
	// ServerName is the SNI (lower-cased), empty if none.
	ServerName string
	// ALPN holds the ClientHello's ALPN list for TLS, or the single protocol the http_inspector
	// detected ("http/1.0", "http/1.1", "h2c") for plaintext; nil when unknown.
	ALPN []string
	// TimedOut reports that inspection stopped at the timeout (with ContinueOnTimeout).
	TimedOut bool
}

// ErrTimeout is returned by Inspect when the timeout expires and ContinueOnTimeout is false.
var ErrTimeout = errors.New("sniff: listener filter timeout")

var (
	alpnHTTP10 = []string{ProtoHTTP10}
	alpnHTTP11 = []string{ProtoHTTP11}
	alpnH2C    = []string{ProtoH2C}
)

// Inspect peeks at c until the enabled inspectors have decided, the timeout expires, or the peer
// stops sending. It returns the wrapped connection (which replays the peeked bytes) and the
// result. The read deadline on c is cleared before returning. Result slices must not be modified.
func Inspect(c net.Conn, o Options) (*Conn, Result, error) {
	sc := NewConn(c)
	res := Result{TransportProtocol: "raw_buffer"}
	if !o.TLS && !o.HTTP {
		return sc, res, nil
	}
	helloMax := o.MaxClientHelloSize
	if helloMax <= 0 {
		helloMax = DefaultMaxClientHelloSize
	}
	maxPeek := MaxRequestLine + len("HTTP/1.1\r\n") + maxMethodLen + 2
	if o.TLS {
		maxPeek = max(maxPeek, helloMax+64*recordHeaderLen+64)
	}
	if o.Timeout > 0 {
		if err := sc.Conn.SetReadDeadline(time.Now().Add(o.Timeout)); err != nil {
			return sc, res, fmt.Errorf("setting inspection deadline: %w", err)
		}
		defer sc.Conn.SetReadDeadline(time.Time{})
	}
	tlsDone, httpDone := !o.TLS, !o.HTTP
	for {
		b := sc.data
		if !tlsDone && len(b) > 0 {
			ch, err := ParseClientHello(b, helloMax)
			switch {
			case err == nil:
				res.TransportProtocol, res.ServerName, res.ALPN = "tls", ch.ServerName, ch.ALPN
				return sc, res, nil
			case errors.Is(err, ErrShort):
			case errors.Is(err, ErrTooLarge):
				return sc, res, fmt.Errorf("inspecting TLS: %w", err)
			case errors.Is(err, errMalformed) && o.CloseOnClientHelloError:
				return sc, res, fmt.Errorf("inspecting TLS: %w", err)
			default:
				tlsDone = true
			}
		}
		if tlsDone && !httpDone && len(b) > 0 {
			p, err := DetectHTTP(b)
			switch {
			case err == nil:
				switch p {
				case ProtoHTTP10:
					res.ALPN = alpnHTTP10
				case ProtoHTTP11:
					res.ALPN = alpnHTTP11
				default:
					res.ALPN = alpnH2C
				}
				return sc, res, nil
			case errors.Is(err, ErrShort):
			default:
				httpDone = true
			}
		}
		if tlsDone && httpDone {
			return sc, res, nil
		}
		err := sc.Fill(maxPeek)
		switch {
		case err == nil:
		case errors.Is(err, io.EOF), errors.Is(err, ErrTooLarge):
			// The peer stopped sending or sent more than any inspector needs: go with what is known.
			return sc, res, nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			if o.ContinueOnTimeout {
				res.TimedOut = true
				return sc, res, nil
			}
			return sc, res, ErrTimeout
		default:
			return sc, res, fmt.Errorf("reading for inspection: %w", err)
		}
	}
}
