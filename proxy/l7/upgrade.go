package l7

import (
	"bytes"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strait-mesh/strait/proxy/httpmsg"
	"github.com/strait-mesh/strait/proxy/upstream"
)

// tunnel completes an HTTP/1.1 upgrade (e.g. WebSocket): it forwards the upstream's 101
// response, takes over the downstream connection and splices bytes both ways until either side
// closes. The upstream response body must be the upgraded connection (io.ReadWriteCloser).
func (h *Handler) tunnel(s *Stream, resp *upstream.Response) {
	upConn, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		resp.Body.Close()
		s.localReply(http.StatusBadGateway, FlagUpstreamProtocolError, "upgrade_failed", "upstream upgrade failed", -1)
		return
	}
	defer upConn.Close()
	conn, rest, err := s.w.Hijack()
	if err != nil {
		s.localReply(http.StatusInternalServerError, FlagDownstreamProtocolError, "upgrade_failed", "", -1)
		return
	}
	defer h.hijackDone(s)
	defer conn.Close()
	s.Info.Details = "via_upstream"
	var hdr httpmsg.Header
	hdr.CopyFrom(resp.Header)
	s.Route.ApplyResponseHeaders(&hdr, s, &s.rinfo, s.Target)
	if err := writeSwitching(conn, &hdr); err != nil {
		s.Info.Flags |= FlagDownstreamConnTerminated
		return
	}
	s.Info.Status = http.StatusSwitchingProtocols
	s.wroteHeader = true
	// Bytes the server already buffered from the client belong to the tunnel.
	var down io.Reader = conn
	if len(rest) > 0 {
		down = io.MultiReader(bytes.NewReader(rest), conn)
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

// writeSwitching writes the 101 response head with hdr's fields to w; a field whose name or
// value would break the head's framing is left out.
func writeSwitching(w io.Writer, hdr *httpmsg.Header) error {
	b := append(make([]byte, 0, 256), "HTTP/1.1 101 Switching Protocols\r\n"...)
	for i := 0; i < hdr.Len(); i++ {
		k, v := hdr.Field(i)
		if len(k) == 0 || bytes.ContainsAny(k, "\r\n:\x00 ") || bytes.ContainsAny(v, "\r\n\x00") {
			continue
		}
		b = append(append(append(append(b, k...), ": "...), v...), "\r\n"...)
	}
	b = append(b, "\r\n"...)
	_, err := w.Write(b)
	return err
}
