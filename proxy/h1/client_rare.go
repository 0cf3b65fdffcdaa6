package h1

import (
	"context"
	"errors"
	"io"
	"os"
	"time"

	"github.com/strait-mesh/strait/proxy/http1"
	"github.com/strait-mesh/strait/proxy/httpmsg"
)

// The client's parts out of its common path (client.go): failures, interim responses,
// deadlines and watches set from a context, and the response fields it notes.

// failed ends a Conn's exchange that failed with err: the connection closes. Out of
// RoundTripWatch: rare.
//
//go:noinline
func (cc *clientConn) failed(ctx context.Context, err error) error {
	cc.close()
	cc.done(false)
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) && errors.Is(err, os.ErrDeadlineExceeded) {
		// ctx's deadline is the connection's: report it as ctx does, once it notices.
		<-ctx.Done()
		return ctx.Err()
	}
	return err
}

// setDeadline sets the connection's deadline to ctx's (d, when ok) or clears the one an
// earlier exchange left. Out of roundTrip: most exchanges have none to set or clear.
//
//go:noinline
func (cc *clientConn) setDeadline(d time.Time, ok bool) {
	if ok {
		cc.nc.SetDeadline(d)
		cc.deadline = true
		return
	}
	cc.nc.SetDeadline(time.Time{})
	cc.deadline = false
}

// Fields of a response head the client notes (clientConn.fields).
const (
	fieldClose            uint8 = 1 << iota // Connection: close
	fieldKeepAlive                          // Connection: keep-alive
	fieldTransferEncoding                   // a Transfer-Encoding field
	fieldTrailer                            // a Trailer field
)

// notedLens is the set of the lengths of the names noteField looks at (Connection,
// Transfer-Encoding, Trailer): roundTrip calls it only for a field whose name has one.
const notedLens uint64 = 1<<len("connection") | 1<<len("transfer-encoding") | 1<<len("trailer")

// newExchange gives the exchange after st a number of its own (roundTrip: the last
// exchange's watch was not stopped, or an abort of it is under way) and returns its state.
//
//go:noinline
func (cc *clientConn) newExchange(st uint64) uint64 {
	st = (st>>2+1)<<2 | xRunning
	cc.xstate.Store(st)
	cc.stop, cc.watcher = nil, nil
	return st
}

// endBodyWriter ends release's wait for the request body's writer (a duplex exchange's): it
// must have finished, and sent it all, for the connection to carry another request; a writer
// still at work ends when the connection closes.
//
//go:noinline
func (cc *clientConn) endBodyWriter() {
	select {
	case err := <-cc.bodyDone:
		if err != nil {
			cc.broken = true
		}
	default:
		cc.broken = true
	}
	cc.bodyDone = nil
}

// closeOrClearDeadline is release's work on the connection: closed when it is not reused,
// else its deadline cleared (cc.deadline).
//
//go:noinline
func (cc *clientConn) closeOrClearDeadline(reuse bool) {
	if !reuse {
		cc.nc.Close()
		return
	}
	cc.nc.SetDeadline(time.Time{})
	cc.deadline = false
}

// startTunnel makes resp's body the tunnel a CONNECT or an upgrade opened (never reused).
//
//go:noinline
func (cc *clientConn) startTunnel(resp *httpmsg.Response) {
	cc.reuse = false
	resp.Body = (*tunnelBody)(cc)
}

// framingWithoutLength is writeHead's framing for a request without a positive
// Content-Length: chunked for a body of unknown length, Content-Length: 0 for an empty POST,
// PUT or PATCH, else none (length -1).
//
//go:noinline
func framingWithoutLength(req *httpmsg.Request) (length int64, chunked bool) {
	switch {
	case hasBody(req) && req.ContentLength < 0:
		return -1, true
	case req.Method == "POST" || req.Method == "PUT" || req.Method == "PATCH":
		return 0, false
	}
	return -1, false
}

// noteField notes response field i (of cc.rp), whose name has the length of one the client
// looks at (notedLens: Connection, Transfer-Encoding, Trailer). Out of roundTrip's loop over
// the fields: most fields have other lengths.
//
//go:noinline
func (cc *clientConn) noteField(i int) {
	name, value := cc.rp.Field(i)
	switch {
	case httpmsg.EqualFold(name, "connection"):
		if httpmsg.HasToken(value, "close") {
			cc.fields |= fieldClose
		}
		if httpmsg.HasToken(value, "keep-alive") {
			cc.fields |= fieldKeepAlive
		}
	case httpmsg.EqualFold(name, "transfer-encoding"):
		cc.fields |= fieldTransferEncoding
	case httpmsg.EqualFold(name, "trailer"):
		cc.fields |= fieldTrailer
	}
}

// ResponseFields reports whether the final response head of the last exchange that
// succeeded (a RoundTrip that returned nil; until the next one starts) had a Transfer-Encoding
// field and a Trailer field, which the codec noted while it copied the fields into the
// response, so that a caller need not look them up. Interim (1xx) heads do not count.
func (c *Conn) ResponseFields() (transferEncoding, trailer bool) {
	f := c.cc.fields
	return f&fieldTransferEncoding != 0, f&fieldTrailer != 0
}

// canceled is the error of an exchange whose watch was canceled before it started.
//
//go:noinline
func canceled(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return context.Canceled
}

// watchContext makes ctx's cancellation abort exchange gen (a watch that allocates).
//
//go:noinline
func (cc *clientConn) watchContext(ctx context.Context, gen uint64) {
	cc.stop = context.AfterFunc(ctx, func() { cc.Abort(gen) })
}

// headFailed ends an exchange whose response head could not be read (err): a malformed head
// is a ResponseError; a cancellation's error is the context's; a failed write's error is
// that write's (werr). started: some of the head arrived. Out of roundTrip: rare.
//
//go:noinline
func (cc *clientConn) headFailed(ctx context.Context, started bool, err, werr error) (gotBytes bool, _ error) {
	cc.stopWatch()
	if e, ok := asError(err); ok {
		return true, &ResponseError{Err: e}
	}
	// A cancellation interrupts the write as well as the read: the exchange's error
	// is then the context's, not the interrupted write's i/o timeout.
	if ctx.Err() != nil {
		return started, ctx.Err()
	}
	if werr != nil {
		return started, werr
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return started, err
}

// framingFailed ends an exchange whose response head has an invalid framing (err, an
// *http1.Error). Out of roundTrip: rare.
//
//go:noinline
func (cc *clientConn) framingFailed(err error) error {
	cc.stopWatch()
	return &ResponseError{Err: err.(*http1.Error)}
}

// skipInterim reads past interim responses (100 Continue, 103 Early Hints: the head in cc.rp
// is one) to the final response's head. Out of roundTrip: rare.
//
//go:noinline
func (cc *clientConn) skipInterim(ctx context.Context, werr error, head, connect bool) (gotBytes bool, err error) {
	for {
		if _, _, _, err := cc.rp.Body(head, connect); err != nil {
			return true, cc.framingFailed(err)
		}
		cc.rp.Reset()
		if _, err := cc.rd.readResponseHead(&cc.rp); err != nil {
			return cc.headFailed(ctx, true, err, werr)
		}
		if s := cc.rp.Status(); s >= 200 || s == 101 {
			return true, nil
		}
	}
}

// writeLongLine writes a request line and Host field that may not fit the buffer's room.
// Out of writeHead: rare.
//
//go:noinline
func (w *writer) writeLongLine(method string, path, auth []byte) {
	w.writeString(method)
	w.writeString(" ")
	w.write(path)
	w.writeString(" HTTP/1.1\r\nhost: ")
	w.write(auth)
	w.writeString("\r\n")
}
