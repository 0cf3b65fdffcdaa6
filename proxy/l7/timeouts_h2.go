package l7

import (
	"net"
	"time"

	"github.com/strait-mesh/strait/proxy/h2guard"
)

// HTTP/2 frame types and flags h2Heads looks at.
const (
	h2FrameHeaders      = 0x1
	h2FrameContinuation = 0x9
	h2FlagEndHeaders    = 0x4
	h2FrameHeaderLen    = 9
)

// h2Heads sits under the protocol guards and follows the frame headers an HTTP/2 client sends
// to apply request_headers_timeout (headLimit) to header blocks: a block (a HEADERS frame up to
// the frame carrying END_HEADERS) must arrive within the timeout of its first byte, as Envoy
// requires of request heads. Without it a client could trickle a header block for as long as idle_timeout,
// since net/http's frame reader waits for the whole block with no clock of its own. Trailers
// are header blocks too and get the same bound.
//
// It only reads frame headers (the guard checks the frames): while a block is open across reads
// it asks clk for a read deadline; when the block ends the deadline goes. A connection that
// does not start with the client preface is HTTP/1.x and passes through untouched.
type h2Heads struct {
	net.Conn
	clk *clockConn

	mode    uint8 // h2hPreface, h2hFrames or h2hOff
	matched int   // preface bytes matched so far
	hdr     [h2FrameHeaderLen]byte
	nhdr    int
	left    uint32    // payload bytes of the current frame still to come
	ends    bool      // the current frame carries END_HEADERS
	open    bool      // a header block is open
	start   time.Time // when the open block's first byte arrived (zero: in the current read)
	frameAt time.Time // when the first byte of a frame header split over reads arrived
	armed   bool      // a deadline is set for the open block
}

const (
	h2hPreface uint8 = iota
	h2hFrames
	h2hOff
)

func newH2Heads(c net.Conn, clk *clockConn) *h2Heads {
	return &h2Heads{Conn: c, clk: clk}
}

// Read implements net.Conn.
func (t *h2Heads) Read(b []byte) (int, error) {
	n, err := t.Conn.Read(b)
	if t.mode != h2hOff && n > 0 {
		t.scan(b[:n])
	}
	if err != nil && t.armed && isTimeout(err) && !t.clk.counted.Swap(true) {
		t.clk.h.tst.headerTimeout.Inc()
	}
	return n, err
}

// CloseWrite half-closes the connection (the guards use it).
func (t *h2Heads) CloseWrite() error {
	if cw, ok := t.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// scan follows the frames in b, the next bytes of the connection.
func (t *h2Heads) scan(b []byte) {
	if t.mode == h2hPreface {
		m := min(len(b), len(h2guard.Preface)-t.matched)
		if string(b[:m]) != h2guard.Preface[t.matched:t.matched+m] {
			t.mode = h2hOff
			return
		}
		t.matched += m
		b = b[m:]
		if t.matched < len(h2guard.Preface) {
			return
		}
		t.mode = h2hFrames
	}
	for len(b) > 0 {
		if t.left > 0 {
			k := min(uint32(len(b)), t.left)
			t.left -= k
			b = b[k:]
			if t.left == 0 && t.ends {
				t.open, t.ends = false, false
			}
			continue
		}
		k := copy(t.hdr[t.nhdr:], b)
		t.nhdr += k
		b = b[k:]
		if t.nhdr < h2FrameHeaderLen {
			break
		}
		t.nhdr = 0
		length := uint32(t.hdr[0])<<16 | uint32(t.hdr[1])<<8 | uint32(t.hdr[2])
		typ, flags := t.hdr[3], t.hdr[4]
		t.ends = false
		switch typ {
		case h2FrameHeaders:
			if !t.open {
				t.open, t.start = true, t.frameAt
			}
			t.ends = flags&h2FlagEndHeaders != 0
		case h2FrameContinuation:
			t.ends = flags&h2FlagEndHeaders != 0
		}
		t.frameAt = time.Time{}
		t.left = length
		if length == 0 && t.ends {
			t.open, t.ends = false, false
		}
	}
	// Time is read only when something stays incomplete across reads.
	if t.nhdr > 0 && t.frameAt.IsZero() {
		t.frameAt = time.Now()
	}
	switch {
	case t.open && !t.armed:
		if t.start.IsZero() {
			t.start = time.Now()
		}
		t.armed = true
		t.clk.setHeadDeadline(t.start.Add(t.clk.h.headLimit()))
	case !t.open && t.armed:
		t.armed = false
		t.start = time.Time{}
		t.clk.clearHeadDeadline()
	case !t.open:
		t.start = time.Time{}
	}
}
