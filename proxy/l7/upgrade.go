package l7

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// tunnel completes an HTTP/1.1 upgrade (e.g. WebSocket): it forwards the upstream's 101
// response, takes over the downstream connection and splices bytes both ways until either side
// closes. The upstream response body must be the upgraded connection (io.ReadWriteCloser).
func (h *Handler) tunnel(s *Stream, resp *http.Response) {
	upConn, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		resp.Body.Close()
		s.localReply(http.StatusBadGateway, FlagUpstreamProtocolError, "upgrade_failed", "upstream upgrade failed", -1)
		return
	}
	defer upConn.Close()
	conn, brw, err := http.NewResponseController(s.w).Hijack()
	if err != nil {
		s.localReply(http.StatusInternalServerError, FlagDownstreamProtocolError, "upgrade_failed", "", -1)
		return
	}
	defer h.hijackDone(s.r)
	defer conn.Close()
	s.Info.Details = "via_upstream"
	hdr := resp.Header.Clone()
	s.Route.ApplyResponseHeaders(hdr, s, &s.rinfo, s.Target)
	if err := writeSwitching(brw.Writer, hdr); err != nil {
		s.Info.Flags |= FlagDownstreamConnTerminated
		return
	}
	s.Info.Status = http.StatusSwitchingProtocols
	s.wroteHeader = true
	// Bytes the server already buffered from the client belong to the tunnel.
	var down io.Reader = conn
	if n := brw.Reader.Buffered(); n > 0 {
		pre, _ := brw.Reader.Peek(n)
		down = io.MultiReader(bytes.NewReader(bytes.Clone(pre)), conn)
	}
	// The stream idle timeout also bounds a quiet tunnel, as in Envoy.
	var timedOut atomic.Bool
	idle := newIdleTimer(h.tunnelIdle(s), func() {
		timedOut.Store(true)
		upConn.Close()
		conn.Close()
	})
	defer idle.stop()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		n := splice(upConn, down, idle)
		s.Info.BytesReceived += n
		upConn.Close()
		conn.Close()
	}()
	go func() {
		defer wg.Done()
		n := splice(conn, upConn, idle)
		s.Info.BytesSent += n
		upConn.Close()
		conn.Close()
	}()
	wg.Wait()
	if timedOut.Load() {
		s.Info.Flags |= FlagStreamIdleTimeout
	}
}

func (h *Handler) tunnelIdle(s *Stream) time.Duration {
	if s.Route != nil && s.Route.IdleTimeout > 0 {
		return s.Route.IdleTimeout
	}
	return h.streamIdle
}

// splice copies src to dst with a pooled buffer, touching the idle timer on every chunk, and
// returns the bytes copied.
func splice(dst io.Writer, src io.Reader, idle *idleTimer) int64 {
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	buf := *bp
	var total int64
	for {
		n, err := src.Read(buf)
		if n > 0 {
			idle.touch()
			w, werr := dst.Write(buf[:n])
			total += int64(w)
			if werr != nil {
				return total
			}
		}
		if err != nil {
			return total
		}
	}
}

func writeSwitching(w *bufio.Writer, hdr http.Header) error {
	w.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	if err := hdr.Write(w); err != nil {
		return err
	}
	w.WriteString("\r\n")
	return w.Flush()
}
