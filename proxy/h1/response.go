package h1

import (
	"net"

	"github.com/strait-mesh/strait/proxy/http1"
	"github.com/strait-mesh/strait/proxy/httpmsg"
)

// ResponseWriter writes the response to one request of a served connection. It is valid
// until the handler returns and is not safe for concurrent use.
//
// Framing is the codec's: a Content-Length the handler sets in Header is honoured (and the
// body must have exactly that length, or the connection closes after it); without one, body
// bytes written before the handler returns or calls Flush are held (up to 4 KiB) so that a
// short response gets a Content-Length, and a longer or flushed one is sent chunked (to an
// HTTP/1.0 client: delimited by closing the connection). Transfer-Encoding in Header is
// ignored. Trailer fields are sent after a chunked body; a handler that has trailers to send
// sets them (or a Trailer header field) before the head is written, so that the body is sent
// chunked, and a response with a Content-Length or to HTTP/1.0 drops them, as Envoy does.
type ResponseWriter struct {
	c          *conn
	header     httpmsg.Header
	trailer    httpmsg.Header
	status     int
	declared   int64 // Content-Length set by the handler, -1 none
	written    int64 // body bytes written (or, for HEAD, that would have been)
	headSent   bool
	chunked    bool
	noBody     bool
	headReq    bool
	hijacked   bool
	writeError error
}

func (w *ResponseWriter) reset() {
	w.header.Reset()
	w.trailer.Reset()
	w.status, w.declared, w.written = 0, -1, 0
	w.headSent, w.chunked, w.noBody, w.hijacked = false, false, false, false
	if w.writeError != nil {
		w.fail(nil)
	}
	if w.c != nil {
		w.headReq = w.c.req.Method == "HEAD"
		w.c.pend = w.c.pend[:0]
	}
}

// fail sets the error the response's writes return (nil: none) and returns it. Not inlined:
// the store's write barrier stays out of the common paths, where the response has none.
//
//go:noinline
func (w *ResponseWriter) fail(err error) error {
	w.writeError = err
	return err
}

// Header returns the response header fields, to set before WriteHeader.
func (w *ResponseWriter) Header() *httpmsg.Header { return &w.header }

// Trailer returns the trailer fields, sent after a chunked body (see ResponseWriter).
func (w *ResponseWriter) Trailer() *httpmsg.Header { return &w.trailer }

// Status returns the status written, 0 if none yet.
func (w *ResponseWriter) Status() int { return w.status }

// Written returns the body bytes written so far.
func (w *ResponseWriter) Written() int64 { return w.written }

// WriteHeader sets the status. A 1xx status other than 101 is sent at once as an interim
// response with the current header fields; 101 sends the head at once (then Hijack). Later
// calls are ignored.
func (w *ResponseWriter) WriteHeader(status int) {
	if w.status != 0 || w.hijacked || status < 100 || status > 999 {
		return
	}
	if status < 200 {
		w.writeInformational(status)
		return
	}
	w.status = status
	w.noBody = w.headReq || status == 204 || status == 304
	if v, ok := w.header.Value("content-length"); ok {
		n, err := parseDigits(v)
		if err != nil {
			w.fail(ErrInvalidField)
		} else {
			w.declared = n
		}
	}
}

// writeInformational writes a 1xx status's head at once (see WriteHeader). Out of
// WriteHeader: rare.
//
//go:noinline
func (w *ResponseWriter) writeInformational(status int) {
	c := w.c
	if status == 101 {
		w.status, w.noBody = status, true
		w.writeStatusLine(status)
		w.writeError = c.wr.writeFields(&w.header, skipFraming)
		c.wr.writeString("\r\n")
		w.headSent = true
		c.wr.flush()
		return
	}
	if status == 100 {
		c.expect100 = false
	}
	w.writeStatusLine(status)
	c.wr.writeFields(&w.header, skipFraming)
	c.wr.writeString("\r\n")
	c.wr.flush()
}

func (w *ResponseWriter) writeStatusLine(status int) {
	wr := &w.c.wr
	if status == 200 {
		wr.writeString("HTTP/1.1 200 OK\r\n") // most responses: one copy
		return
	}
	wr.writeString("HTTP/1.1 ")
	wr.writeInt(int64(status))
	wr.writeString(" ")
	wr.writeString(statusText(status))
	wr.writeString("\r\n")
}

// Write writes body bytes (see ResponseWriter for framing), after WriteHeader(200) if no
// status was written.
func (w *ResponseWriter) Write(p []byte) (int, error) {
	if w.status == 0 || w.hijacked || w.writeError != nil || w.noBody {
		if n, done, err := w.writeFirst(p); done {
			return n, err
		}
	}
	if w.declared >= 0 && w.written+int64(len(p)) > w.declared {
		return 0, ErrContentLength
	}
	c := w.c
	if !w.headSent {
		if w.declared < 0 && w.hold(p) {
			return len(p), nil
		}
		if err := w.sendHead(false); err != nil {
			return 0, err
		}
	}
	w.writeBody(p)
	w.written += int64(len(p))
	return len(p), c.wr.err
}

// hold keeps p, a write of a response without a declared length, with the body bytes held
// until the head is sent, when they fit (sendHead then sends their length when the handler
// has returned), and reports whether they did. Out of Write: most responses declare a length.
//
//go:noinline
func (w *ResponseWriter) hold(p []byte) bool {
	c := w.c
	if len(c.pend)+len(p) > cap(c.pend) {
		return false
	}
	c.pend = append(c.pend, p...)
	w.written += int64(len(p))
	return true
}

// writeFirst is Write's part for a response without a status yet (WriteHeader(200)), a
// hijacked connection, a failed write, or a response without a body (done: Write returns
// n and err). Out of Write: the handler's first write, or rare.
//
//go:noinline
func (w *ResponseWriter) writeFirst(p []byte) (n int, done bool, err error) {
	if w.hijacked {
		return 0, true, ErrHijacked
	}
	if w.status == 0 {
		w.WriteHeader(200)
	}
	if w.writeError != nil {
		return 0, true, w.writeError
	}
	if w.noBody {
		if w.headReq && w.status != 204 && w.status != 304 && w.status >= 200 {
			w.written += int64(len(p))
			return len(p), true, nil
		}
		return 0, true, ErrBodyNotAllowed
	}
	return 0, false, nil
}

// WriteString is Write with a string.
func (w *ResponseWriter) WriteString(s string) (int, error) {
	// A conversion the compiler does not copy when Write does not keep p.
	return w.Write([]byte(s))
}

// writeBody writes body bytes after the head: chunked, or as they are; a large enough write
// goes out at once with what is buffered (the head), in one vectored write, rather than be
// copied into the buffer.
func (w *ResponseWriter) writeBody(p []byte) {
	wr := &w.c.wr
	switch {
	case w.chunked:
		wr.writeChunk(p)
	case len(p) >= vectorMin && wr.vec != nil:
		wr.writeVector(p)
	default:
		wr.write(p)
	}
}

// Flush writes the head (choosing chunked framing if no Content-Length was set) and what is
// buffered to the connection.
func (w *ResponseWriter) Flush() error {
	if w.hijacked {
		return ErrHijacked
	}
	if w.status == 0 {
		w.WriteHeader(200)
	}
	if !w.headSent {
		if err := w.sendHead(false); err != nil {
			return err
		}
	}
	return w.c.wr.flush()
}

// sendHead writes the head and the held body bytes. final says the handler returned: the
// held bytes are then the whole body.
func (w *ResponseWriter) sendHead(final bool) error {
	if w.writeError != nil {
		return w.writeError
	}
	c := w.c
	wr := &c.wr
	w.headSent = true
	connValue, hasConn := w.header.Value("connection")
	if hasConn && httpmsg.HasToken(connValue, "close") {
		c.closeConn = true
	}
	length := w.declared
	if length < 0 {
		length = w.undeclaredLength(final)
	}
	if w.status == 200 {
		wr.writeString("HTTP/1.1 200 OK\r\n") // most responses: one copy, no call
	} else {
		w.writeStatusLine(w.status)
	}
	if err := wr.writeFields(&w.header, skipFraming); err != nil {
		return w.fail(err)
	}
	if w.status == 204 || w.status/100 == 1 {
		length = -1
	}
	conn := ""
	if (c.closeConn || c.req.Proto == httpmsg.HTTP10) && !hasConn {
		conn = c.connectionField()
	}
	wr.endHead(length, w.chunked, conn)
	if len(c.pend) > 0 && !w.noBody {
		w.writeBody(c.pend)
	}
	c.pend = c.pend[:0]
	return wr.err
}

// undeclaredLength is sendHead's framing for a response without a declared Content-Length:
// the length of a body held whole (final), else chunked for an HTTP/1.1 client, else the end
// of the connection. It returns the Content-Length to write, -1 for none.
//
//go:noinline
func (w *ResponseWriter) undeclaredLength(final bool) int64 {
	c := w.c
	switch {
	case w.noBody:
		if w.headReq && final && w.written > 0 {
			return w.written
		}
	case final && w.trailer.Len() == 0 && !w.header.Has("trailer"):
		return int64(len(c.pend))
	case c.req.Proto == httpmsg.HTTP11:
		w.chunked = true
	default:
		c.closeConn = true // an HTTP/1.0 client: the body ends when the connection does
	}
	return -1
}

// connectionField is the Connection field sendHead adds to a head that has none, when the
// connection closes or is an HTTP/1.0 one kept alive.
//
//go:noinline
func (c *conn) connectionField() string {
	if c.closeConn {
		return "connection: close\r\n"
	}
	return "connection: keep-alive\r\n"
}

// finish completes the response after the handler returned.
func (w *ResponseWriter) finish() error {
	if w.status == 0 {
		w.WriteHeader(200)
	}
	c := w.c
	if !w.headSent {
		if err := w.sendHead(true); err != nil {
			c.closeConn = true
			return err
		}
	}
	if w.chunked {
		if err := c.wr.writeLastChunk(&w.trailer); err != nil {
			c.closeConn = true // the body is complete but cannot be ended validly
			c.wr.flush()
			return err
		}
	}
	if w.declared >= 0 && w.written != w.declared && !w.noBody {
		c.closeConn = true
	}
	return c.wr.flush()
}

// Hijack takes the connection over, for a protocol switch (after WriteHeader(101)) or a
// CONNECT tunnel: what was written is flushed, and the bytes the codec read past the request
// head (and the part of its body read so far) are returned, copied. ServeConn returns once the
// handler does, without closing the connection.
func (w *ResponseWriter) Hijack() (net.Conn, []byte, error) {
	if w.hijacked {
		return nil, nil, ErrHijacked
	}
	c := w.c
	c.stopWatch()
	if err := c.wr.flush(); err != nil {
		return nil, nil, err
	}
	w.hijacked = true
	var rest []byte
	if b := c.rd.buffered(); len(b) > 0 {
		rest = append(rest, b...)
		c.rd.r = c.rd.w
	}
	return c.c, rest, nil
}

func parseDigits(v []byte) (int64, error) {
	if len(v) == 0 || len(v) > 18 {
		return 0, http1.ErrInvalidLength
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, http1.ErrInvalidLength
		}
		n = n*10 + int64(c-'0')
	}
	return n, nil
}

// statusText returns the reason phrase of the common status codes, "" for others (the
// reason phrase is optional, RFC 9112 section 4).
func statusText(code int) string {
	switch code {
	case 100:
		return "Continue"
	case 101:
		return "Switching Protocols"
	case 200:
		return "OK"
	case 201:
		return "Created"
	case 202:
		return "Accepted"
	case 204:
		return "No Content"
	case 206:
		return "Partial Content"
	case 301:
		return "Moved Permanently"
	case 302:
		return "Found"
	case 303:
		return "See Other"
	case 304:
		return "Not Modified"
	case 307:
		return "Temporary Redirect"
	case 308:
		return "Permanent Redirect"
	case 400:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 405:
		return "Method Not Allowed"
	case 408:
		return "Request Timeout"
	case 413:
		return "Payload Too Large"
	case 417:
		return "Expectation Failed"
	case 426:
		return "Upgrade Required"
	case 429:
		return "Too Many Requests"
	case 431:
		return "Request Header Fields Too Large"
	case 500:
		return "Internal Server Error"
	case 501:
		return "Not Implemented"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	case 504:
		return "Gateway Timeout"
	}
	return ""
}
