package l7

import (
	"bytes"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/strait-mesh/strait/proxy/httpmsg"
)

// The net/http codec adapter: requests that net/http's server serves (HTTP/2, and HTTP/1.1
// until proxy/h1 serves it) reach the connection manager as an httpmsg.Request and answer
// through httpDown, the downstream over net/http's http.ResponseWriter. The adapter copies the
// request's header map into httpmsg fields and the response's fields back into a header map
// as the head is written: allocations the HTTP/1.1 codec does without.

// httpDown is a downstream over net/http's ResponseWriter. It is pooled.
type httpDown struct {
	rw       http.ResponseWriter
	rc       *http.ResponseController
	req      httpmsg.Request
	hdr, trl httpmsg.Header
	headSent bool
	hijacked bool
}

var httpDownPool = sync.Pool{New: func() any { return new(httpDown) }}

// serveHTTP is net/http's handler: it serves r through the connection manager.
func (h *Handler) serveHTTP(w http.ResponseWriter, r *http.Request) {
	d := httpDownPool.Get().(*httpDown)
	d.rw, d.rc = w, http.NewResponseController(w)
	defer d.release()
	req := &d.req
	req.Method = r.Method
	switch {
	case r.ProtoMajor == 2:
		req.Proto = httpmsg.HTTP2
	case r.ProtoMinor == 0:
		req.Proto = httpmsg.HTTP10
	default:
		req.Proto = httpmsg.HTTP11
	}
	for k, vs := range r.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.ContentLength = r.ContentLength
	body := r.Body
	if body == nil {
		body = http.NoBody
	}
	path := r.RequestURI
	if path == "" || path[0] != '/' && path != "*" {
		path = r.URL.RequestURI() // absolute-form: keep only the origin-form part
	}
	cs, _ := r.Context().Value(connInfoKey{}).(*connState)
	peer, _ := netip.ParseAddrPort(r.RemoteAddr)
	h.serve(getStream(), &streamStart{
		d: d, req: req, body: body, ctx: r.Context(), cs: cs, peer: peer,
		method: r.Method, authority: r.Host, path: path, tls: r.TLS != nil, reqTrailer: r.Trailer,
	})
}

// release sends the trailers (net/http sends the TrailerPrefix keys set before the handler
// returns) and returns d to its pool.
func (d *httpDown) release() {
	if !d.hijacked && d.headSent {
		h := d.rw.Header()
		for i := 0; i < d.trl.Len(); i++ {
			k, v := d.trl.Field(i)
			key := http.TrailerPrefix + http.CanonicalHeaderKey(string(k))
			h[key] = append(h[key], string(v))
		}
	}
	d.rw, d.rc = nil, nil
	d.req.Reset()
	d.hdr.Reset()
	d.trl.Reset()
	d.headSent, d.hijacked = false, false
	httpDownPool.Put(d)
}

// Header implements downstream.
func (d *httpDown) Header() *httpmsg.Header { return &d.hdr }

// Trailer implements downstream.
func (d *httpDown) Trailer() *httpmsg.Header { return &d.trl }

// WriteHeader implements downstream: the fields replace net/http's header map.
func (d *httpDown) WriteHeader(status int) {
	if d.headSent || d.hijacked {
		return
	}
	h := d.rw.Header()
	clear(h)
	for i := 0; i < d.hdr.Len(); i++ {
		k, v := d.hdr.Field(i)
		h.Add(string(k), string(v))
	}
	if status >= 200 {
		d.headSent = true
	}
	d.rw.WriteHeader(status)
}

// Write implements downstream.
func (d *httpDown) Write(p []byte) (int, error) {
	if !d.headSent {
		d.WriteHeader(http.StatusOK)
	}
	return d.rw.Write(p)
}

// Flush implements downstream.
func (d *httpDown) Flush() error {
	if !d.headSent {
		d.WriteHeader(http.StatusOK)
	}
	return d.rc.Flush()
}

// Hijack implements downstream.
func (d *httpDown) Hijack() (net.Conn, []byte, error) {
	conn, brw, err := d.rc.Hijack()
	if err != nil {
		return nil, nil, err
	}
	d.hijacked = true
	var rest []byte
	if n := brw.Reader.Buffered(); n > 0 {
		pre, _ := brw.Reader.Peek(n)
		rest = bytes.Clone(pre)
	}
	return conn, rest, nil
}

// EnableFullDuplex implements downstream.
func (d *httpDown) EnableFullDuplex() error { return d.rc.EnableFullDuplex() }

// SetReadDeadline implements downstream.
func (d *httpDown) SetReadDeadline(t time.Time) error { return d.rc.SetReadDeadline(t) }

// SetWriteDeadline implements downstream.
func (d *httpDown) SetWriteDeadline(t time.Time) error { return d.rc.SetWriteDeadline(t) }

// httpHeader returns h as a net/http header map (canonical keys), for the upstream request
// and the ext_authz check until they take httpmsg's fields.
func httpHeader(h *httpmsg.Header) http.Header { return httpmsg.HTTPHeader(h) }
