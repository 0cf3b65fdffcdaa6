package h1

import (
	"errors"
	"io"
	"strconv"

	"github.com/strait-mesh/strait/proxy/http1"
	"github.com/strait-mesh/strait/proxy/httpmsg"
)

// bufSize is the size of a connection's read buffer and of its write buffer. A head may be
// larger than the read buffer: the parsers keep what they need in their own storage.
const bufSize = 4096

// Errors of the codec's own (not the peer's).
var (
	// ErrInvalidField is a header or trailer field the codec refuses to write: a name that is
	// not a token, or a value with CR, LF, NUL or another control character but HTAB.
	ErrInvalidField = errors.New("h1: invalid header field name or value")
	// ErrInvalidTarget is a request method, authority or path that cannot be written in a
	// request line or Host field.
	ErrInvalidTarget = errors.New("h1: invalid request method, authority or path")
	// ErrBodyNotAllowed is a write of body bytes to a response that has none (1xx, 204, 304).
	ErrBodyNotAllowed = errors.New("h1: response status does not allow a body")
	// ErrContentLength is a body longer or shorter than its Content-Length.
	ErrContentLength = errors.New("h1: body length does not match Content-Length")
	// ErrHijacked is a use of a response writer after Hijack.
	ErrHijacked = errors.New("h1: connection was hijacked")
)

// reader buffers one connection's reads.
type reader struct {
	src  io.Reader
	buf  []byte
	r, w int
}

func (rd *reader) buffered() []byte { return rd.buf[rd.r:rd.w] }

// fill reads once into the free end of the buffer (compacting it first when empty).
func (rd *reader) fill() error {
	if rd.r == rd.w {
		rd.r, rd.w = 0, 0
	}
	if rd.w == len(rd.buf) {
		return nil
	}
	n, err := rd.src.Read(rd.buf[rd.w:])
	rd.w += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// readHead feeds buffered and then received bytes to p until the head is complete. started
// reports whether any byte of the head was received (an error before that is a clean end of
// the connection for a server). onWait, if not nil, runs once, before the first read the head
// needs after its first bytes were fed (not at all for a head that came whole).
func (rd *reader) readHead(p *http1.Parser, onWait func()) (started bool, err error) {
	// readResponseHead is this loop for a response head: concrete parsers, not an interface,
	// so that Done inlines and Feed is a direct call.
	for !p.Done() {
		if rd.r == rd.w {
			if started && onWait != nil {
				onWait()
				onWait = nil
			}
			if err := rd.fill(); err != nil {
				return started, err
			}
		}
		started = true
		n, err := p.Feed(rd.buffered())
		rd.r += n
		if err != nil {
			return true, err
		}
	}
	return true, nil
}

// readResponseHead is readHead for a response head, without onWait.
func (rd *reader) readResponseHead(p *http1.ResponseParser) (started bool, err error) {
	for !p.Done() {
		if rd.r == rd.w {
			if err := rd.fill(); err != nil {
				return started, err
			}
		}
		started = true
		n, err := p.Feed(rd.buffered())
		rd.r += n
		if err != nil {
			return true, err
		}
	}
	return true, nil
}

// VectorWriter is a connection that writes two byte slices as one write (writev): a DirectConn
// connection, or a wrapper that writes through one. The codec writes a message's head and a
// body it holds in memory so, without copying the body into its write buffer first.
type VectorWriter interface {
	// WriteVector writes a, then b, and reports the bytes written and the error that
	// stopped it, as Write does.
	WriteVector(a, b []byte) (int, error)
}

// vectorMin is the least body a writer sends with WriteVector rather than copy into its
// buffer: below it, the copy costs less than the second buffer of the system call.
const vectorMin = 512

// writer buffers one connection's writes; the first error sticks.
type writer struct {
	dst io.Writer
	vec VectorWriter // dst's vectored write, nil if it has none
	buf []byte       // len: bytes pending; cap: bufSize
	err error
}

// writeVector writes what is pending and then p, in one vectored write (w.vec is set).
func (w *writer) writeVector(p []byte) {
	if w.err == nil {
		_, w.err = w.vec.WriteVector(w.buf, p)
	}
	w.buf = w.buf[:0]
}

// vectorOf returns nc's vectored write: nc's own (VectorWriter), or the one a wrapper offers
// (a Vector method, nil when its writes do not go straight to such a connection), or nil.
func vectorOf(nc io.Writer) VectorWriter {
	switch c := nc.(type) {
	case interface{ Vector() VectorWriter }:
		return c.Vector()
	case VectorWriter:
		return c
	}
	return nil
}

func (w *writer) flush() error {
	if w.err == nil && len(w.buf) > 0 {
		_, w.err = w.dst.Write(w.buf)
	}
	w.buf = w.buf[:0]
	return w.err
}

// write appends p to the buffer, flushing first when it does not fit (writeLarge).
func (w *writer) write(p []byte) {
	if n := len(w.buf); n+len(p) <= cap(w.buf) {
		w.buf = w.buf[:n+len(p)]
		copy(w.buf[n:], p)
		return
	}
	w.writeLarge(p)
}

// writeLarge is write for bytes that do not fit the buffer's room: flushed first, and
// written directly when larger than the buffer. Out of write, inlined at many call sites.
//
//go:noinline
func (w *writer) writeLarge(p []byte) {
	w.flush()
	if len(p) >= cap(w.buf) {
		if w.err == nil {
			_, w.err = w.dst.Write(p)
		}
		return
	}
	w.buf = append(w.buf, p...)
}

func (w *writer) writeString(s string) {
	if len(w.buf)+len(s) > cap(w.buf) {
		w.flush()
		for len(s) > cap(w.buf) {
			w.buf = append(w.buf, s[:cap(w.buf)]...)
			w.flush()
			s = s[cap(w.buf):]
		}
	}
	w.buf = append(w.buf, s...)
}

// room makes sure n more bytes fit in the buffer (n <= bufSize).
func (w *writer) room(n int) {
	if len(w.buf)+n > cap(w.buf) {
		w.flush()
	}
}

func (w *writer) writeInt(n int64) {
	w.room(20)
	w.buf = strconv.AppendInt(w.buf, n, 10)
}

// endHead writes the fields the codec writes itself and ends a head: Content-Length when
// length >= 0, Transfer-Encoding: chunked when chunked, and conn (a whole field line, or "").
// One copy for the request and response heads. It writes into the room made first, of a
// size the compiler knows, rather than appending: no check of the capacity (and no code to
// grow it) per piece, and the constant pieces are stored, not copied by a call.
//
//go:noinline
func (w *writer) endHead(length int64, chunked bool, conn string) {
	w.room(endHeadRoom)
	n := len(w.buf)
	p := (*[endHeadRoom]byte)(w.buf[n : n+endHeadRoom])
	i := 0
	if length >= 0 {
		copy(p[:16], "content-length: ")
		i = 16 + len(strconv.AppendInt(p[16:16], length, 10)) // at most 20 digits: in p
		p[i], p[i+1] = '\r', '\n'
		i += 2
	}
	if chunked {
		i += copy(p[i:], "transfer-encoding: chunked\r\n")
	}
	if conn != "" { // most heads: none
		i += copy(p[i:], conn)
	}
	p[i], p[i+1] = '\r', '\n'
	w.buf = w.buf[:n+i+2]
}

// endHeadRoom is the room endHead makes: its fields take at most 16+20+2 (Content-Length),
// 28 (Transfer-Encoding), 24 (the longest conn, "connection: keep-alive\r\n") and 2 bytes.
const endHeadRoom = 96

// writeChunk writes p as one chunk of a chunked body.
func (w *writer) writeChunk(p []byte) {
	if len(p) == 0 {
		return
	}
	w.room(18)
	w.buf = strconv.AppendUint(w.buf, uint64(len(p)), 16)
	w.buf = append(w.buf, '\r', '\n')
	w.write(p)
	w.writeString("\r\n")
}

// writeLastChunk ends a chunked body with the trailer fields of t.
func (w *writer) writeLastChunk(t *httpmsg.Header) error {
	w.writeString("0\r\n")
	if err := w.writeFields(t, skipNone); err != nil {
		return err
	}
	w.writeString("\r\n")
	return nil
}

// skipSet is the fields writeFields leaves out (those the codec writes itself), as the set of
// their names' lengths: a field whose name has another length (most) is written without a
// look at its name.
type skipSet uint64

// Fields the codec writes itself.
const (
	skipNone    skipSet = 0
	skipFraming skipSet = 1<<len("content-length") | 1<<len("transfer-encoding")
	skipHost    skipSet = 1 << len("host")
)

// has reports whether a name of n bytes may be one that s leaves out.
func (s skipSet) has(n int) bool { return s>>(uint(n)&63)&1 != 0 }

// writeFields writes h's fields as field lines, validated, except those skip names. Fields
// marked valid (checked by a parser, httpmsg.Header.AddValid, or when added) are copied as
// they are stored, a run of consecutive ones at a time; any other (one a filter changed with
// Set) is checked here (writeField, out of the loop).
func (w *writer) writeFields(h *httpmsg.Header, skip skipSet) error {
	for i, n := 0, h.Len(); i < n; {
		off, nameEnd, end, ok := h.Line(i)
		i++
		if !ok {
			if err := w.writeField(h, i-1, skip); err != nil {
				return err
			}
			continue
		}
		if skip.has(nameEnd-off) && skipped(h.Raw(off, nameEnd), skip) {
			continue
		}
		// Extend the run over the next marked fields stored right after it.
		for ; i < n; i++ {
			o, ne, e, ok := h.Line(i)
			if o != end || !ok || skip.has(ne-o) {
				break // the outer loop looks at it
			}
			end = e
		}
		w.write(h.Raw(off, end))
	}
	return nil
}

// writeField writes field i of h, not marked valid: checked here.
func (w *writer) writeField(h *httpmsg.Header, i int, skip skipSet) error {
	name, value := h.Field(i)
	if skip.has(len(name)) && skipped(name, skip) {
		return nil
	}
	if !httpmsg.ValidName(name) || !httpmsg.ValidValue(value) {
		return ErrInvalidField
	}
	if len(w.buf)+len(name)+len(value)+4 <= cap(w.buf) {
		w.buf = append(w.buf, name...)
		w.buf = append(w.buf, ':', ' ')
		w.buf = append(w.buf, value...)
		w.buf = append(w.buf, '\r', '\n')
		return nil
	}
	w.room(len(name) + 2)
	w.buf = append(w.buf, name...)
	w.buf = append(w.buf, ':', ' ')
	w.write(value)
	w.writeString("\r\n")
	return nil
}

// skipped reports whether writeFields leaves out the field name: the framing fields with
// skipFraming, Host with skipHost. Not inlined: writeFields calls it only for names with
// those lengths.
//
//go:noinline
func skipped(name []byte, skip skipSet) bool {
	if !skip.has(len(name)) {
		return false
	}
	switch len(name) {
	case len("content-length"):
		return httpmsg.EqualFold(name, "content-length")
	case len("transfer-encoding"):
		return httpmsg.EqualFold(name, "transfer-encoding")
	case len("host"):
		return httpmsg.EqualFold(name, "host")
	}
	return false
}

// tchar marks token characters (RFC 9110 section 5.6.2).
var tchar = alnumAnd("!#$%&'*+-.^_`|~")

// alnumAnd returns a table marking ASCII letters, digits and the bytes of extra.
func alnumAnd(extra string) (t [256]uint8) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		if 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' {
			t[c] = 1
		}
	}
	for i := 0; i < len(extra); i++ {
		t[extra[i]] = 1
	}
	return t
}

// asError returns err as a protocol error of the peer, if it is one.
func asError(err error) (*http1.Error, bool) {
	e, ok := err.(*http1.Error)
	return e, ok
}
