package h1

import (
	"io"

	"github.com/strait-mesh/strait/proxy/http1"
	"github.com/strait-mesh/strait/proxy/httpmsg"
)

// bodyOwner is told when a body is first read (100-continue) and when it ended: eof, read to
// its end, or by an error (a bool, not the error: no interface comparison on the way).
type bodyOwner interface {
	bodyStart()
	bodyEnd(eof bool)
}

// body streams one message body from a connection's reader: Content-Length, chunked (decoded,
// with its trailers copied into trailer at the end) or until the connection closes.
//
// The fields every body's reads touch come first, within a cache line; the chunked decoder's
// state, large, after them.
type body struct {
	rd      *reader
	owner   bodyOwner
	framing http1.Framing
	started bool
	eof     bool            // err is io.EOF: done's answer, without an interface comparison
	remain  int64           // FramingLength: bytes left
	err     error           // sticky: io.EOF at the end, or the error that ended the body
	trailer *httpmsg.Header // set for a chunked body
	ch      http1.Chunked
	trail   http1.Parser // the trailer section of a chunked body
}

// reset prepares b for a message body with framing f (and Content-Length n).
func (b *body) reset(f http1.Framing, n int64, trailer *httpmsg.Header) {
	b.framing, b.remain, b.started, b.eof, b.err = f, n, false, false, nil
	if f != http1.FramingLength {
		b.resetOther(f, trailer)
	}
}

// resetOther is reset's part for a body without a Content-Length (none, chunked: only a
// chunked body has trailers). Out of reset, so that reset inlines where a head ends.
//
//go:noinline
func (b *body) resetOther(f http1.Framing, trailer *httpmsg.Header) {
	b.trailer = trailer
	switch f {
	case http1.FramingChunked:
		b.ch.Reset(&b.trail)
	case http1.FramingNone:
		b.err, b.eof = io.EOF, true
	}
}

// done reports whether the body was read to its end.
func (b *body) done() bool { return b.eof }

// end ends the body with err, an error other than io.EOF (endEOF ends it at its end). Not
// inlined: the error paths of the reads, out of their common path.
//
//go:noinline
func (b *body) end(err error) error {
	if b.err == nil {
		b.err = err
		if b.owner != nil {
			b.owner.bodyEnd(err == io.EOF)
		}
	}
	return err
}

// endEOF ends the body at its end. The body has not ended yet (b.err is nil): its callers
// stop at an ended body.
func (b *body) endEOF() error {
	b.err, b.eof = io.EOF, true
	if b.owner != nil {
		b.owner.bodyEnd(true)
	}
	return io.EOF
}

// Read implements io.Reader: the body's bytes, then io.EOF (possibly with the last bytes).
// A malformed chunked body is an *http1.Error; a connection closed early io.ErrUnexpectedEOF.
func (b *body) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if !b.started {
		b.started = true
		if b.owner != nil {
			b.owner.bodyStart()
		}
	}
	rd := b.rd
	switch b.framing {
	case http1.FramingLength:
		if int64(len(p)) > b.remain {
			p = p[:b.remain]
		}
		var n int
		if rd.r < rd.w {
			n = copy(p, rd.buffered())
			rd.r += n
		} else if len(p) >= len(rd.buf) {
			var err error
			n, err = rd.src.Read(p)
			if n == 0 {
				return 0, b.fail(err)
			}
		} else {
			if err := rd.fill(); err != nil {
				return 0, b.fail(err)
			}
			n = copy(p, rd.buffered())
			rd.r += n
		}
		b.remain -= int64(n)
		if b.remain == 0 {
			return n, b.endEOF()
		}
		return n, nil
	case http1.FramingChunked:
		return b.readChunked(p)
	}
	return b.readOther(p)
}

// readChunked is Read for a chunked body.
func (b *body) readChunked(p []byte) (int, error) {
	rd := b.rd
	for {
		if rd.r == rd.w {
			if err := rd.fill(); err != nil {
				return 0, b.fail(err)
			}
		}
		in := rd.buffered()
		if len(in) > len(p) {
			in = in[:len(p)]
		}
		k, data, err := b.ch.Next(in)
		rd.r += k
		if err != nil {
			return 0, b.end(err)
		}
		if b.ch.Done() {
			b.copyTrailers()
			return copy(p, data), b.endEOF()
		}
		if len(data) > 0 {
			return copy(p, data), nil
		}
	}
}

// readOther is Read for a body delimited by the end of the connection, or none. Out of Read:
// rare.
//
//go:noinline
func (b *body) readOther(p []byte) (int, error) {
	if b.framing != http1.FramingUntilClose {
		return 0, b.endEOF()
	}
	rd := b.rd
	if rd.r < rd.w {
		n := copy(p, rd.buffered())
		rd.r += n
		return n, nil
	}
	n, err := rd.src.Read(p)
	if n == 0 && err != nil {
		if err == io.EOF {
			return 0, b.endEOF()
		}
		return 0, b.end(err)
	}
	return n, nil
}

func (b *body) copyTrailers() {
	if b.trailer == nil {
		return
	}
	for i := 0; i < b.trail.NumFields(); i++ {
		b.trailer.AddBytes(b.trail.Field(i))
	}
}

// discard reads and drops the rest of the body, at most limit bytes of the connection, without
// copying; it reports whether the body ended.
func (b *body) discard(limit int64) bool {
	rd := b.rd
	for b.err == nil {
		if rd.r == rd.w {
			if limit <= 0 {
				return false
			}
			if err := rd.fill(); err != nil {
				b.end(unexpected(err))
				return false
			}
			limit -= int64(rd.w - rd.r)
		}
		switch b.framing {
		case http1.FramingLength:
			k := int64(rd.w - rd.r)
			if k > b.remain {
				k = b.remain
			}
			rd.r += int(k)
			if b.remain -= k; b.remain == 0 {
				b.endEOF()
			}
		case http1.FramingChunked:
			k, err := b.ch.Feed(rd.buffered())
			rd.r += k
			if err != nil {
				b.end(err)
			} else if b.ch.Done() {
				b.copyTrailers()
				b.endEOF()
			}
		default:
			return false
		}
	}
	return b.eof
}

// fail ends the body with a read error of the connection (io.EOF: io.ErrUnexpectedEOF).
//
//go:noinline
func (b *body) fail(err error) error { return b.end(unexpected(err)) }

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
