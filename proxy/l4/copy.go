package l4

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strait-mesh/strait/proxy/stats"
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, copyBufferSize); return &b }}

// conns is the state one proxied connection pair shares between its two copy directions.
type conns struct {
	down, up  net.Conn
	last      atomic.Int64 // unix nanos of the last byte moved in either direction
	closeOnce sync.Once
	reason    atomic.Pointer[stats.Counter] // stat to count when a timer closed the pair
	live      *Counters                     // bytes so far, for an Observer; nil: not counted live
}

func (cs *conns) closeBoth() {
	cs.closeOnce.Do(func() {
		cs.down.Close()
		cs.up.Close()
	})
}

// splice copies both ways until both directions end. A clean EOF in one direction half-closes
// the other side's write end; an error closes both. It returns the bytes received from and sent
// to the downstream. When live is set, it counts the same bytes as they are copied.
func (p *TCPProxy) splice(ctx context.Context, down, up net.Conn, live *Counters) (rx, tx uint64) {
	cs := &conns{down: down, up: up, live: live}
	cs.last.Store(time.Now().UnixNano())
	stop := context.AfterFunc(ctx, cs.closeBoth)
	defer stop()
	if p.idle > 0 {
		var tp atomic.Pointer[time.Timer]
		tp.Store(time.AfterFunc(p.idle, func() {
			idleFor := time.Duration(time.Now().UnixNano() - cs.last.Load())
			if idleFor >= p.idle {
				cs.reason.Store(p.st.idleTimeout)
				cs.closeBoth()
				return
			}
			for tp.Load() == nil { // the timer fired before AfterFunc returned
				time.Sleep(time.Millisecond)
			}
			tp.Load().Reset(p.idle - idleFor)
		}))
		defer func() { tp.Load().Stop() }()
	}
	if p.maxDuration > 0 {
		t := time.AfterFunc(p.maxDuration, func() {
			cs.reason.Store(p.st.maxDuration)
			cs.closeBoth()
		})
		defer t.Stop()
	}
	done := make(chan struct{})
	go func() {
		rx = p.copyHalf(cs, up, down, p.st.rxBytes, cs.liveCounter(true))
		close(done)
	}()
	tx = p.copyHalf(cs, down, up, p.st.txBytes, cs.liveCounter(false))
	<-done
	if c := cs.reason.Load(); c != nil {
		c.Inc()
	}
	cs.closeBoth()
	return rx, tx
}

// liveCounter returns the live counter of one direction (received: from the downstream), nil
// when bytes are not counted live.
func (cs *conns) liveCounter(received bool) *atomic.Uint64 {
	switch {
	case cs.live == nil:
		return nil
	case received:
		return &cs.live.Received
	}
	return &cs.live.Sent
}

// copyHalf copies src to dst, then half-closes dst on a clean end or closes both on error. It
// returns the bytes copied; live, when set, counts them as they are copied.
func (p *TCPProxy) copyHalf(cs *conns, dst, src net.Conn, counter *stats.Counter, live *atomic.Uint64) (copied uint64) {
	var err error
	if p.idle > 0 || live != nil {
		copied, err = copyTracked(dst, src, &cs.last, counter, live)
	} else {
		// No activity to track and no live count: let io.Copy use ReadFrom/WriteTo, i.e.
		// splice(2) between TCP sockets (sniff.Conn replays its peeked bytes first, then hands
		// over its socket).
		bp := bufPool.Get().(*[]byte)
		var n int64
		n, err = io.CopyBuffer(dst, src, *bp)
		bufPool.Put(bp)
		copied = uint64(n)
		counter.Add(copied)
	}
	if err != nil {
		cs.closeBoth()
		return copied
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		if cw.CloseWrite() == nil {
			return copied
		}
	}
	cs.closeBoth()
	return copied
}

// copyTracked copies with a pooled buffer, recording activity for the idle timer and counting
// the bytes in live (when set). It returns the bytes copied and a nil error at EOF.
func copyTracked(dst, src net.Conn, last *atomic.Int64, counter *stats.Counter, live *atomic.Uint64) (uint64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var total uint64
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			last.Store(time.Now().UnixNano())
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return total, werr
			}
			total += uint64(n)
			counter.Add(uint64(n))
			if live != nil {
				live.Add(uint64(n))
			}
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}
