// Package h2guard checks the frames an HTTP/2 client sends before the HTTP/2 library that serves
// the connection reads them, and closes the connection (GOAWAY, then close) when the client
// breaks the protocol in a way the library tolerates or floods it in one of the ways Envoy
// defends against. It exists because strait-proxy serves HTTP/2 through Go's net/http, which
// leaves some RFC 9113 checks and most of Envoy's flood mitigations to the application.
//
// A Conn wraps the downstream connection (cleartext with prior knowledge, or TLS after ALPN
// "h2") and is handed to the library in its place. Reads deliver only bytes of frames that have
// passed the checks: a non-DATA frame is held until it is complete (at most the advertised
// SETTINGS_MAX_FRAME_SIZE plus its 9-byte header); DATA payloads stream through. Writes from
// the library pass through unchanged while the Conn follows their frame boundaries, so that a
// GOAWAY of its own is only ever written between two of the library's frames, and so that it
// can count the frames it sent (DATA frames, PING and SETTINGS acknowledgements, stream ends).
//
// Checks (each with Envoy's name where Envoy has one):
//   - the client connection preface;
//   - frame size above the advertised SETTINGS_MAX_FRAME_SIZE: FRAME_SIZE_ERROR;
//   - header blocks: HPACK-decoded by the guard's own decoder, kept in step with the library's;
//     a block larger than MaxHeaderBlockBytes (CONTINUATION floods), connection-specific
//     fields (RFC 9113 section 8.2.2: connection, keep-alive, proxy-connection,
//     transfer-encoding, upgrade, te other than "trailers"), upper-case field names,
//     pseudo-header fields after regular ones or unknown ones: PROTOCOL_ERROR for the whole
//     connection, as Envoy does with stream_error_on_invalid_http_messaging false (its default);
//   - a CONTINUATION that does not continue the open header block: PROTOCOL_ERROR;
//   - SETTINGS with the same identifier more than once: rewritten to carry each identifier once,
//     with its last value (RFC 9113 section 6.5.3: values apply in order, so the last wins;
//     Go's server would refuse the frame);
//   - max_consecutive_inbound_frames_with_empty_payload (default 1): DATA, HEADERS or
//     CONTINUATION frames without payload and without END_STREAM;
//   - max_inbound_priority_frames_per_stream (default 100): PRIORITY frames beyond
//     100 × (1 + streams opened);
//   - max_inbound_window_update_frames_per_data_frame_sent (default 10): WINDOW_UPDATE frames
//     beyond 5 + 10 × (1 + DATA frames sent);
//   - max_outbound_control_frames (default 1000): PING and SETTINGS frames the library still
//     owes an acknowledgement for (a client that sends them faster than it reads);
//   - premature resets (Envoy's overload.premature_reset_total_stream_count, default 500, and
//     premature_reset_min_stream_lifetime_seconds, default 1): once the client has opened that
//     many streams, more than half of them reset by the client within the minimum lifetime
//     (rapid reset, CVE-2023-44487).
//
// The floods end with ENHANCE_YOUR_CALM, the protocol errors with their error code. Every
// violation is reported to Limits.OnViolation before the connection closes.
package h2guard

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"golang.org/x/net/http2/hpack"
)

// Preface is the client connection preface (RFC 9113 section 3.4).
const Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// HTTP/2 frame types and flags used here.
const (
	frameData         = 0x0
	frameHeaders      = 0x1
	framePriority     = 0x2
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePushPromise  = 0x5
	framePing         = 0x6
	frameGoAway       = 0x7
	frameWindowUpdate = 0x8
	frameContinuation = 0x9

	flagEndStream  = 0x1
	flagAck        = 0x1
	flagEndHeaders = 0x4
	flagPadded     = 0x8
	flagPriority   = 0x20

	headerLen = 9
)

// ErrCode is an HTTP/2 error code (RFC 9113 section 7).
type ErrCode uint32

// The error codes the guard sends.
const (
	ErrProtocol        ErrCode = 0x1
	ErrFrameSize       ErrCode = 0x6
	ErrCompression     ErrCode = 0x9
	ErrEnhanceYourCalm ErrCode = 0xb
)

// Violation names what made the guard close a connection; the names are the suffixes of
// Envoy's http2.* statistics where Envoy has one.
type Violation string

// The violations.
const (
	BadPreface          Violation = "bad_preface"
	FrameTooLarge       Violation = "frame_too_large"
	HeaderBlockTooLarge Violation = "header_overflow"
	MessagingError      Violation = "rx_messaging_error"
	CompressionError    Violation = "hpack_error"
	ProtocolError       Violation = "rx_protocol_error"
	EmptyFramesFlood    Violation = "inbound_empty_frames_flood"
	PriorityFlood       Violation = "inbound_priority_frames_flood"
	WindowUpdateFlood   Violation = "inbound_window_update_frames_flood"
	ControlFlood        Violation = "outbound_control_flood"
	PrematureResets     Violation = "too_many_premature_resets"
)

// Limits configures a Conn. Zero values take the defaults named on each field.
type Limits struct {
	// MaxFrameSize is the SETTINGS_MAX_FRAME_SIZE the server advertises (default 16384).
	MaxFrameSize uint32
	// HeaderTableSize is the SETTINGS_HEADER_TABLE_SIZE the server advertises (default 4096).
	HeaderTableSize uint32
	// MaxHeaderBlockBytes bounds one header block, HEADERS plus CONTINUATION payloads, before
	// decoding, and the decoded size of its fields (default 128 KiB).
	MaxHeaderBlockBytes int
	// MaxConsecutiveEmptyFrames is Envoy's max_consecutive_inbound_frames_with_empty_payload
	// (default 1).
	MaxConsecutiveEmptyFrames int
	// MaxPriorityFramesPerStream is Envoy's max_inbound_priority_frames_per_stream (default 100).
	MaxPriorityFramesPerStream int
	// MaxWindowUpdatesPerDataFrameSent is Envoy's
	// max_inbound_window_update_frames_per_data_frame_sent (default 10).
	MaxWindowUpdatesPerDataFrameSent int
	// MaxOutboundControlFrames is Envoy's max_outbound_control_frames (default 1000).
	MaxOutboundControlFrames int
	// PrematureResetStreamCount is Envoy's premature_reset_total_stream_count (default 500).
	PrematureResetStreamCount int
	// PrematureResetMinLifetime is Envoy's premature_reset_min_stream_lifetime_seconds
	// (default 1s).
	PrematureResetMinLifetime time.Duration
	// OnViolation, if set, is called once when the guard closes the connection.
	OnViolation func(Violation)
}

func (l *Limits) defaults() {
	if l.MaxFrameSize == 0 {
		l.MaxFrameSize = 16384
	}
	if l.HeaderTableSize == 0 {
		l.HeaderTableSize = 4096
	}
	if l.MaxHeaderBlockBytes == 0 {
		l.MaxHeaderBlockBytes = 128 << 10
	}
	if l.MaxConsecutiveEmptyFrames == 0 {
		l.MaxConsecutiveEmptyFrames = 1
	}
	if l.MaxPriorityFramesPerStream == 0 {
		l.MaxPriorityFramesPerStream = 100
	}
	if l.MaxWindowUpdatesPerDataFrameSent == 0 {
		l.MaxWindowUpdatesPerDataFrameSent = 10
	}
	if l.MaxOutboundControlFrames == 0 {
		l.MaxOutboundControlFrames = 1000
	}
	if l.PrematureResetStreamCount == 0 {
		l.PrematureResetStreamCount = 500
	}
	if l.PrematureResetMinLifetime == 0 {
		l.PrematureResetMinLifetime = time.Second
	}
}

// Error is returned by Read once the guard has closed the connection.
type Error struct {
	Violation Violation
	Code      ErrCode
	Detail    string
}

func (e *Error) Error() string {
	return fmt.Sprintf("http2 guard: %s (error code %d): %s", e.Violation, e.Code, e.Detail)
}

// maxSettings bounds the entries of one SETTINGS frame (Go's server refuses more, too).
const maxSettings = 100

// maxTrackedStreams bounds the map of open streams kept for the premature-reset check.
const maxTrackedStreams = 1024

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 16384+headerLen); return &b }}

// Conn is a guarded HTTP/2 server connection. Read and Write may be called concurrently with
// each other (one reader, one writer at a time), as the HTTP/2 library does.
type Conn struct {
	net.Conn
	lim Limits

	// Read side, used only by the reading goroutine.
	buf        *[]byte // pooled; raw bytes read but not yet delivered, nil when empty
	ready      int     // bytes at the head of buf checked and deliverable
	prefaceOK  bool
	dataLeft   uint32 // DATA payload bytes still to stream through
	dec        *hpack.Decoder
	block      headerBlock
	empties    int
	priorities int
	windowUps  int
	opened     int // client-initiated streams opened
	premature  int
	lastStream uint32
	err        *Error

	// Shared between the two sides. wmu serializes writes to the connection (the library's and
	// the GOAWAY) and is held during them; mu guards the fields below and is never held during
	// I/O, so that a write blocked on a client that does not read stops neither the reading
	// side nor Close.
	wmu      sync.Mutex
	mu       sync.Mutex
	out      outState
	streams  map[uint32]int64 // open stream -> unix nanos it was opened
	ctrlOwed int              // PING and SETTINGS frames received and not yet acknowledged
	dataSent int
	closed   bool
	broken   bool // a library write failed: where the outbound frame ends is unknown
}

// headerBlock is the header block being received (HEADERS then CONTINUATION frames).
type headerBlock struct {
	open     bool
	stream   uint32
	size     int
	decoded  int
	regular  bool // a regular field was seen (pseudo-header fields must come first)
	trailers bool // the block is a trailer section (stream already open)
	err      string
}

// outState follows the library's outbound frames.
type outState struct {
	hdr  [headerLen]byte
	have int    // header bytes seen of the current frame
	left uint32 // payload bytes left of the current frame
}

// New wraps c, an accepted connection whose next bytes are the client connection preface.
func New(c net.Conn, lim Limits) *Conn {
	lim.defaults()
	g := &Conn{Conn: c, lim: lim, streams: make(map[uint32]int64)}
	g.dec = hpack.NewDecoder(lim.HeaderTableSize, g.onField)
	g.dec.SetMaxStringLength(lim.MaxHeaderBlockBytes)
	return g
}

// Read implements net.Conn: it returns checked bytes only.
func (g *Conn) Read(p []byte) (int, error) {
	for {
		if g.err != nil {
			return 0, g.err
		}
		if g.ready > 0 {
			b := *g.buf
			n := copy(p, b[:g.ready])
			g.consume(n)
			return n, nil
		}
		if g.buf != nil && len(*g.buf) > 0 {
			progressed, err := g.check()
			if err != nil {
				g.fail(err)
				return 0, err
			}
			if progressed {
				continue
			}
		}
		if err := g.fill(); err != nil {
			return 0, err
		}
	}
}

// consume drops n delivered bytes from the head of the buffer.
func (g *Conn) consume(n int) {
	b := *g.buf
	g.ready -= n
	rest := copy(b, b[n:])
	b = b[:rest]
	if rest == 0 {
		*g.buf = b[:0]
		bufPool.Put(g.buf)
		g.buf = nil
		return
	}
	*g.buf = b
}

// fill reads more bytes from the connection.
func (g *Conn) fill() error {
	if g.buf == nil {
		g.buf = bufPool.Get().(*[]byte)
		*g.buf = (*g.buf)[:0]
	}
	b := *g.buf
	if len(b) == cap(b) {
		// Cannot happen: a frame is at most MaxFrameSize+9 and the buffer is that large.
		nb := make([]byte, len(b), 2*cap(b))
		copy(nb, b)
		b = nb
	}
	n, err := g.Conn.Read(b[len(b):cap(b)])
	*g.buf = b[:len(b)+n]
	if n > 0 {
		return nil
	}
	if err == nil {
		return nil
	}
	if len(*g.buf) == 0 {
		bufPool.Put(g.buf)
		g.buf = nil
	}
	return err
}

// check examines the bytes after the deliverable ones and marks as many as it can as
// deliverable. It reports whether it made progress; false means more bytes are needed.
func (g *Conn) check() (bool, error) {
	b := (*g.buf)[g.ready:]
	if !g.prefaceOK {
		n := min(len(b), len(Preface))
		if string(b[:n]) != Preface[:n] {
			return false, &Error{BadPreface, ErrProtocol, "invalid connection preface"}
		}
		if n < len(Preface) {
			return false, nil
		}
		g.prefaceOK = true
		g.ready += len(Preface)
		return true, nil
	}
	if g.dataLeft > 0 {
		n := uint32(min(len(b), int(g.dataLeft)))
		g.dataLeft -= n
		g.ready += int(n)
		return true, nil
	}
	if len(b) < headerLen {
		return false, nil
	}
	length := uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2])
	typ, flags := b[3], b[4]
	stream := binary.BigEndian.Uint32(b[5:9]) & 0x7fffffff
	if length > g.lim.MaxFrameSize {
		return false, &Error{FrameTooLarge, ErrFrameSize, fmt.Sprintf("frame of %d bytes above SETTINGS_MAX_FRAME_SIZE %d", length, g.lim.MaxFrameSize)}
	}
	if g.block.open && (typ != frameContinuation || stream != g.block.stream) {
		return false, &Error{ProtocolError, ErrProtocol, "header block interrupted by another frame"}
	}
	if typ == frameData {
		if err := g.onData(stream, flags, length); err != nil {
			return false, err
		}
		g.ready += headerLen
		g.dataLeft = length
		return true, nil
	}
	if len(b) < headerLen+int(length) {
		return false, nil
	}
	if err := g.onFrame(typ, flags, stream, b[headerLen:headerLen+int(length)]); err != nil {
		return false, err
	}
	if typ == frameSettings && flags&flagAck == 0 {
		if n := dedupeSettings(b[headerLen : headerLen+int(length)]); n < int(length) {
			// Drop the repeated settings: shift the rest of the buffer over them.
			b[0], b[1], b[2] = byte(n>>16), byte(n>>8), byte(n)
			rest := copy(b[headerLen+n:], b[headerLen+int(length):])
			*g.buf = (*g.buf)[:g.ready+headerLen+n+rest]
			length = uint32(n)
		}
	}
	g.ready += headerLen + int(length)
	return true, nil
}

func (g *Conn) onData(stream uint32, flags byte, length uint32) error {
	if err := g.emptyCheck(length == 0 && flags&flagEndStream == 0); err != nil {
		return err
	}
	if flags&flagEndStream != 0 {
		// The client is done sending; the stream stays open until the server ends it.
		_ = stream
	}
	return nil
}

// emptyCheck counts consecutive frames with an empty payload.
func (g *Conn) emptyCheck(empty bool) error {
	if !empty {
		g.empties = 0
		return nil
	}
	g.empties++
	if g.empties > g.lim.MaxConsecutiveEmptyFrames {
		return &Error{EmptyFramesFlood, ErrEnhanceYourCalm, fmt.Sprintf("%d consecutive frames with an empty payload", g.empties)}
	}
	return nil
}

// onFrame checks one complete non-DATA frame; payload may be rewritten in place.
func (g *Conn) onFrame(typ, flags byte, stream uint32, payload []byte) error {
	switch typ {
	case frameHeaders:
		if err := g.emptyCheck(len(payload) == 0 && flags&flagEndStream == 0); err != nil {
			return err
		}
		frag, err := headersFragment(flags, payload)
		if err != nil {
			return err
		}
		g.block = headerBlock{open: true, stream: stream}
		if stream > g.lastStream && stream%2 == 1 {
			g.lastStream = stream
			g.opened++
			g.mu.Lock()
			if len(g.streams) < maxTrackedStreams {
				g.streams[stream] = time.Now().UnixNano()
			}
			g.mu.Unlock()
		} else {
			g.block.trailers = true
		}
		return g.blockFragment(frag, flags&flagEndHeaders != 0)
	case frameContinuation:
		if !g.block.open || stream != g.block.stream {
			return &Error{ProtocolError, ErrProtocol, "CONTINUATION without an open header block"}
		}
		if err := g.emptyCheck(len(payload) == 0 && flags&flagEndHeaders == 0); err != nil {
			return err
		}
		return g.blockFragment(payload, flags&flagEndHeaders != 0)
	case framePriority:
		g.priorities++
		if g.priorities > g.lim.MaxPriorityFramesPerStream*(1+g.opened) {
			return &Error{PriorityFlood, ErrEnhanceYourCalm, fmt.Sprintf("%d PRIORITY frames for %d streams", g.priorities, g.opened)}
		}
	case frameRSTStream:
		g.mu.Lock()
		opened, ok := g.streams[stream]
		delete(g.streams, stream)
		g.mu.Unlock()
		if ok && time.Duration(time.Now().UnixNano()-opened) < g.lim.PrematureResetMinLifetime {
			g.premature++
		}
		if g.opened >= g.lim.PrematureResetStreamCount && g.premature*2 > g.opened {
			return &Error{PrematureResets, ErrEnhanceYourCalm, fmt.Sprintf("%d of %d streams reset by the client within %s", g.premature, g.opened, g.lim.PrematureResetMinLifetime)}
		}
	case frameSettings:
		if len(payload)%6 != 0 {
			return &Error{FrameTooLarge, ErrFrameSize, "SETTINGS length not a multiple of 6"}
		}
		if len(payload) > 6*maxSettings {
			return &Error{ProtocolError, ErrProtocol, fmt.Sprintf("SETTINGS with %d entries", len(payload)/6)}
		}
		if flags&flagAck == 0 {
			if err := g.owe(); err != nil {
				return err
			}
		}
	case framePing:
		if flags&flagAck == 0 {
			if err := g.owe(); err != nil {
				return err
			}
		}
	case frameWindowUpdate:
		g.windowUps++
		g.mu.Lock()
		sent := g.dataSent
		g.mu.Unlock()
		if g.windowUps > 5+g.lim.MaxWindowUpdatesPerDataFrameSent*(1+sent) {
			return &Error{WindowUpdateFlood, ErrEnhanceYourCalm, fmt.Sprintf("%d WINDOW_UPDATE frames for %d DATA frames sent", g.windowUps, sent)}
		}
	case framePushPromise:
		return &Error{ProtocolError, ErrProtocol, "PUSH_PROMISE from a client"}
	}
	return nil
}

// owe counts a frame the library must acknowledge.
func (g *Conn) owe() error {
	g.mu.Lock()
	g.ctrlOwed++
	n := g.ctrlOwed
	g.mu.Unlock()
	if n > g.lim.MaxOutboundControlFrames {
		return &Error{ControlFlood, ErrEnhanceYourCalm, fmt.Sprintf("%d PING/SETTINGS frames not yet acknowledged", n)}
	}
	return nil
}

// headersFragment strips padding and priority fields from a HEADERS payload.
func headersFragment(flags byte, p []byte) ([]byte, error) {
	pad := 0
	if flags&flagPadded != 0 {
		if len(p) < 1 {
			return nil, &Error{ProtocolError, ErrProtocol, "HEADERS padding length missing"}
		}
		pad = int(p[0])
		p = p[1:]
	}
	if flags&flagPriority != 0 {
		if len(p) < 5 {
			return nil, &Error{ProtocolError, ErrProtocol, "HEADERS priority fields missing"}
		}
		p = p[5:]
	}
	if pad > len(p) {
		return nil, &Error{ProtocolError, ErrProtocol, "HEADERS padding exceeds the payload"}
	}
	return p[:len(p)-pad], nil
}

// blockFragment decodes one fragment of the open header block.
func (g *Conn) blockFragment(frag []byte, end bool) error {
	g.block.size += len(frag)
	if g.block.size > g.lim.MaxHeaderBlockBytes {
		return &Error{HeaderBlockTooLarge, ErrEnhanceYourCalm, fmt.Sprintf("header block above %d bytes", g.lim.MaxHeaderBlockBytes)}
	}
	if _, err := g.dec.Write(frag); err != nil {
		return &Error{CompressionError, ErrCompression, err.Error()}
	}
	if g.block.err != "" {
		return &Error{MessagingError, ErrProtocol, g.block.err}
	}
	if !end {
		return nil
	}
	if err := g.dec.Close(); err != nil {
		return &Error{CompressionError, ErrCompression, err.Error()}
	}
	g.block.open = false
	if g.block.err != "" {
		return &Error{MessagingError, ErrProtocol, g.block.err}
	}
	return nil
}

// onField checks one decoded field of the open header block.
func (g *Conn) onField(f hpack.HeaderField) {
	bl := &g.block
	if bl.err != "" {
		return
	}
	bl.decoded += len(f.Name) + len(f.Value) + 32
	if bl.decoded > 2*g.lim.MaxHeaderBlockBytes {
		bl.err = "decoded header list too large"
		return
	}
	name := f.Name
	if len(name) == 0 {
		bl.err = "empty field name"
		return
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c >= 'A' && c <= 'Z' {
			bl.err = fmt.Sprintf("upper-case field name %q", name)
			return
		}
	}
	if name[0] == ':' {
		if bl.regular || bl.trailers {
			bl.err = fmt.Sprintf("pseudo-header field %q after regular fields or in trailers", name)
			return
		}
		switch name {
		case ":method", ":scheme", ":authority", ":path", ":protocol":
		default:
			bl.err = fmt.Sprintf("unknown pseudo-header field %q", name)
		}
		return
	}
	bl.regular = true
	switch name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		bl.err = fmt.Sprintf("connection-specific field %q", name)
	case "te":
		if f.Value != "trailers" {
			bl.err = fmt.Sprintf("te: %q (only \"trailers\" is allowed)", f.Value)
		}
	}
}

// dedupeSettings keeps only the last occurrence of each setting in a SETTINGS payload,
// compacting it in place, and returns the new length. RFC 9113 section 6.5.3 applies the
// values in order, so the last one wins; Go's HTTP/2 server instead refuses a frame with a
// repeated setting as a PROTOCOL_ERROR.
func dedupeSettings(p []byte) int {
	n := len(p) / 6
	w := 0
	for i := 0; i < n; i++ {
		e := p[6*i : 6*i+6]
		later := false
		for j := i + 1; j < n; j++ {
			if p[6*j] == e[0] && p[6*j+1] == e[1] {
				later = true
				break
			}
		}
		if !later {
			copy(p[w:w+6], e)
			w += 6
		}
	}
	return w
}

// fail reports the violation, sends GOAWAY when the outbound stream is between frames, and
// closes the connection for writing.
func (g *Conn) fail(err error) {
	var ge *Error
	if !errors.As(err, &ge) {
		return
	}
	g.err = ge
	if g.lim.OnViolation != nil {
		g.lim.OnViolation(ge.Violation)
	}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	g.closed = true // the library's later writes fail
	g.mu.Unlock()
	// A library write in progress may be blocked on a client that does not read (a control
	// flood): the deadline bounds the wait for it.
	g.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	g.wmu.Lock()
	g.mu.Lock()
	boundary := g.out.have == 0 && g.out.left == 0 && !g.broken
	g.mu.Unlock()
	if g.prefaceOK && boundary {
		var f [headerLen + 8]byte
		f[2] = 8
		f[3] = frameGoAway
		binary.BigEndian.PutUint32(f[9:13], g.lastStream)
		binary.BigEndian.PutUint32(f[13:17], uint32(ge.Code))
		g.Conn.SetWriteDeadline(time.Now().Add(time.Second))
		g.Conn.Write(f[:])
	}
	g.wmu.Unlock()
	if cw, ok := g.Conn.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	} else {
		g.Conn.Close()
	}
}

// Write implements net.Conn: the library's bytes pass through unchanged.
func (g *Conn) Write(p []byte) (int, error) {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return 0, net.ErrClosed
	}
	g.follow(p)
	g.mu.Unlock()
	n, err := g.Conn.Write(p)
	if err != nil {
		g.mu.Lock()
		g.broken = true
		g.mu.Unlock()
	}
	return n, err
}

// follow tracks frame boundaries and counts in the library's outbound bytes; g.mu is held.
func (g *Conn) follow(p []byte) {
	o := &g.out
	for len(p) > 0 {
		if o.left > 0 {
			n := min(uint32(len(p)), o.left)
			o.left -= n
			p = p[n:]
			continue
		}
		n := copy(o.hdr[o.have:], p)
		o.have += n
		p = p[n:]
		if o.have < headerLen {
			return
		}
		o.have = 0
		h := o.hdr
		o.left = uint32(h[0])<<16 | uint32(h[1])<<8 | uint32(h[2])
		typ, flags := h[3], h[4]
		stream := binary.BigEndian.Uint32(h[5:9]) & 0x7fffffff
		switch {
		case typ == frameData:
			g.dataSent++
			if flags&flagEndStream != 0 {
				delete(g.streams, stream)
			}
		case typ == frameHeaders && flags&flagEndStream != 0, typ == frameRSTStream:
			delete(g.streams, stream)
		case (typ == frameSettings || typ == framePing) && flags&flagAck != 0:
			if g.ctrlOwed > 0 {
				g.ctrlOwed--
			}
		}
	}
}

// Close implements net.Conn.
func (g *Conn) Close() error {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	return g.Conn.Close()
}
