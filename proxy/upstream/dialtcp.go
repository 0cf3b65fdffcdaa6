package upstream

import (
	"context"
	"errors"
	"net"
	"sync/atomic"

	"github.com/strait-mesh/strait/proxy/h1"
	"github.com/strait-mesh/strait/proxy/stats"
)

// dialTCP opens a TCP connection to ep within the max_connections circuit breaker and the
// connect timeout, counting Envoy's upstream_cx_* statistics over its lifetime.
func (c *Cluster) dialTCP(ctx context.Context, ep *endpoint) (net.Conn, error) {
	if !c.breaker.cx.acquire() {
		c.st.cxOverflow.Inc()
		return nil, errCxOverflow
	}
	d := net.Dialer{Timeout: c.connectTimeout, KeepAliveConfig: c.keepAlive}
	if c.bindAddr != nil && ep.network == "tcp" {
		d.LocalAddr = c.bindAddr
	}
	if !c.keepAlive.Enable {
		d.KeepAlive = -1
	}
	conn, err := d.DialContext(ctx, ep.network, ep.dialAddr())
	if err != nil {
		c.breaker.cx.release()
		c.st.cxConnectFail.Inc()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.st.cxConnectTimeout.Inc()
		}
		return nil, err
	}
	c.st.cxTotal.Inc()
	c.st.cxActive.Inc()
	// Read and written without the scheduler's blocking system call path (h1.DirectConn).
	tc := &trackedConn{Conn: h1.DirectConn(conn), c: c, rx: c.st.cxRxBytes, tx: c.st.cxTxBytes}
	tc.vec, _ = tc.Conn.(h1.VectorWriter)
	if v := ep.ts.proxyVersion(); v != 0 {
		d, ok := downstreamFrom(ctx)
		if err := writeProxyHeader(tc, v, d, ok); err != nil {
			_ = tc.Close()
			return nil, err
		}
	}
	return tc, nil
}

// trackedConn releases the connection's circuit-breaker slot and statistics when closed.
type trackedConn struct {
	net.Conn
	c      *Cluster
	rx, tx *stats.Counter  // c's upstream_cx_rx_bytes_total and upstream_cx_tx_bytes_total
	vec    h1.VectorWriter // Conn's vectored write, nil if it has none
	closed atomic.Bool
}

// Read counts received bytes (upstream_cx_rx_bytes_total).
func (t *trackedConn) Read(b []byte) (int, error) {
	n, err := t.Conn.Read(b)
	if n > 0 { // no atomic add for a read that got nothing (EOF, error, would block)
		t.rx.Add(uint64(n))
	}
	return n, err
}

// Write counts sent bytes (upstream_cx_tx_bytes_total).
func (t *trackedConn) Write(b []byte) (int, error) {
	n, err := t.Conn.Write(b)
	if n > 0 {
		t.tx.Add(uint64(n))
	}
	return n, err
}

// Vector returns t's vectored write (h1.VectorWriter) when the connection beneath has one,
// else nil.
func (t *trackedConn) Vector() h1.VectorWriter {
	if t.vec != nil {
		return t
	}
	return nil
}

// WriteVector implements h1.VectorWriter (see Vector), counting sent bytes as Write does.
func (t *trackedConn) WriteVector(a, b []byte) (int, error) {
	n, err := t.vec.WriteVector(a, b)
	if n > 0 {
		t.tx.Add(uint64(n))
	}
	return n, err
}

// Close closes the connection and, once, releases its breaker slot and statistics.
func (t *trackedConn) Close() error {
	err := t.Conn.Close()
	if !t.closed.Swap(true) {
		t.c.breaker.cx.release()
		t.c.st.cxActive.Dec()
		t.c.st.cxDestroy.Inc()
		t.c.notifyFreed()
	}
	return err
}

// CloseWrite half-closes the connection when the underlying one supports it (TCP proxy).
func (t *trackedConn) CloseWrite() error {
	if cw, ok := t.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return t.Conn.Close()
}
