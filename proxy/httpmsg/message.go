package httpmsg

import (
	"bytes"
	"io"
)

// Proto is the protocol a message was received with (or is to be sent with).
type Proto uint8

// Protocols.
const (
	HTTP11 Proto = iota
	HTTP10
	HTTP2
)

// String returns the protocol as Envoy's %PROTOCOL% prints it.
func (p Proto) String() string {
	switch p {
	case HTTP10:
		return "HTTP/1.0"
	case HTTP2:
		return "HTTP/2"
	}
	return "HTTP/1.1"
}

// Request is a request head and its body, as HTTP/2's pseudo-header fields name its parts:
// Method, Scheme, Authority and Path. An HTTP/1.1 codec fills Authority from the Host field
// (which is then not in Header) or from an absolute-form target, as Envoy does.
//
// The zero Request is empty and ready; Reset reuses its storage for the next request.
type Request struct {
	// Method is the request method. Codecs intern the standard methods, so it does not
	// allocate for them.
	Method string
	// Scheme is "http" or "https" when the request said (an absolute-form HTTP/1.1 target, or
	// HTTP/2's :scheme); "" otherwise.
	Scheme string
	// Proto is the protocol the request came with.
	Proto Proto
	// Header holds the header fields other than Host (HTTP/1.1) and pseudo-header fields.
	Header Header
	// Trailer holds the trailer fields; a codec fills it when the body has been read to EOF.
	Trailer Header
	// ContentLength is the body's length: -1 unknown (chunked or HTTP/2 without
	// content-length), 0 none.
	ContentLength int64
	// Body streams the body; io.EOF after the last byte (and after Trailer was filled). A
	// codec sets NoBody when there is none; a client codec sends none for nil too. A server
	// codec's Body is valid until the handler returns.
	Body io.Reader

	pseudo    []byte // Authority and Path
	authority span
	path      span
}

// Reset empties r, keeping its storage.
func (r *Request) Reset() {
	// The pointer fields first, together: their stores share one write barrier check.
	r.Method, r.Scheme, r.Body = "", "", nil
	r.Proto, r.ContentLength = HTTP11, 0
	r.Header.Reset()
	r.Trailer.Reset()
	r.pseudo = r.pseudo[:0]
	r.authority, r.path = span{}, span{}
}

// Authority returns the authority (Host), aliasing r's storage.
func (r *Request) Authority() []byte {
	return r.pseudo[r.authority.off:r.authority.end:r.authority.end]
}

// Path returns the path and query (origin form; "*" for a server-wide OPTIONS; empty for
// CONNECT), aliasing r's storage.
func (r *Request) Path() []byte { return r.pseudo[r.path.off:r.path.end:r.path.end] }

// AuthorityString returns a copy of the authority.
func (r *Request) AuthorityString() string { return string(r.Authority()) }

// PathString returns a copy of the path.
func (r *Request) PathString() string { return string(r.Path()) }

// SetAuthority sets the authority (copied).
func (r *Request) SetAuthority(a []byte) { r.authority = r.appendPseudo(a) }

// SetPath sets the path (copied).
func (r *Request) SetPath(p []byte) { r.path = r.appendPseudo(p) }

// SetAuthorityString sets the authority.
func (r *Request) SetAuthorityString(a string) { r.authority = r.appendPseudoString(a) }

// SetPathString sets the path.
func (r *Request) SetPathString(p string) { r.path = r.appendPseudoString(p) }

// SetTarget sets the authority and the path (copied), as SetAuthority then SetPath do, with
// one store of the storage (a codec's request, built per request).
func (r *Request) SetTarget(authority, path []byte) { setTarget(r, authority, path) }

// SetTargetString is SetTarget for strings.
func (r *Request) SetTargetString(authority, path string) { setTarget(r, authority, path) }

func setTarget[T string | []byte](r *Request, authority, path T) {
	off := len(r.pseudo)
	b := append(r.pseudo, authority...) // in a local: r.pseudo (in the heap) stored once
	mid := len(b)
	b = append(b, path...)
	r.pseudo = b
	r.authority = span{int32(off), int32(mid)}
	r.path = span{int32(mid), int32(len(b))}
}

func (r *Request) appendPseudo(b []byte) span {
	off := len(r.pseudo)
	r.pseudo = append(r.pseudo, b...)
	return span{int32(off), int32(len(r.pseudo))}
}

func (r *Request) appendPseudoString(s string) span {
	off := len(r.pseudo)
	r.pseudo = append(r.pseudo, s...)
	return span{int32(off), int32(len(r.pseudo))}
}

// Response is a response head and its body.
type Response struct {
	// Status is the status code.
	Status int
	// Proto is the protocol the response came with.
	Proto Proto
	// Header holds the header fields.
	Header Header
	// Trailer holds the trailer fields; a codec fills it when the body has been read to EOF.
	Trailer Header
	// ContentLength is the body's length: -1 unknown, 0 none.
	ContentLength int64
	// Body streams the body; the receiver must Close it. A client codec returns the upstream
	// connection to its pool once the body was read to EOF (or closed after that). For a
	// response that switched protocols (101, or 2xx to CONNECT), Body is the tunnel and also
	// implements io.Writer.
	Body io.ReadCloser
}

// Reset empties r, keeping its storage.
func (r *Response) Reset() {
	r.Status, r.Proto, r.ContentLength, r.Body = 0, HTTP11, 0, nil
	r.Header.Reset()
	r.Trailer.Reset()
}

// NoBody is an empty body.
var NoBody noBody

type noBody struct{}

// IsNoBody reports whether body is NoBody. (body == NoBody also compares the values, which
// takes a call: this is the compare of the type alone.)
func IsNoBody(body io.Reader) bool {
	_, ok := body.(noBody)
	return ok
}

func (noBody) Read([]byte) (int, error) { return 0, io.EOF }

// Close does nothing.
func (noBody) Close() error { return nil }

// BytesBody is a body held whole in memory: reading it never blocks, so a client codec may
// write it right after the head, from the caller's goroutine and in the same write, where a
// body that streams from elsewhere needs a writer of its own. It reads as a bytes.Reader does.
type BytesBody struct {
	r    bytes.Reader // reads b; reachable only through b's methods, so that Take knows its bytes
	view bytes.Reader // BytesReader's
	b    []byte
	done bool // see MarkDone
}

// Read implements io.Reader.
func (b *BytesBody) Read(p []byte) (int, error) { return b.r.Read(p) }

// ReadAt implements io.ReaderAt (it does not move the body on).
func (b *BytesBody) ReadAt(p []byte, off int64) (int, error) { return b.r.ReadAt(p, off) }

// ReadByte implements io.ByteReader.
func (b *BytesBody) ReadByte() (byte, error) { return b.r.ReadByte() }

// UnreadByte implements io.ByteScanner.
func (b *BytesBody) UnreadByte() error { return b.r.UnreadByte() }

// Seek implements io.Seeker.
func (b *BytesBody) Seek(offset int64, whence int) (int64, error) { return b.r.Seek(offset, whence) }

// WriteTo implements io.WriterTo.
func (b *BytesBody) WriteTo(w io.Writer) (int64, error) { return b.r.WriteTo(w) }

// Len returns the number of bytes not read yet.
func (b *BytesBody) Len() int { return b.r.Len() }

// Size returns the body's length.
func (b *BytesBody) Size() int64 { return b.r.Size() }

// Reset makes b read p from the start (not changing Done).
func (b *BytesBody) Reset(p []byte) {
	b.r.Reset(p)
	b.b = p
}

// BytesReader returns a *bytes.Reader over the bytes b has not read yet, for a codec that
// treats that type as a body in memory (net/http's client): reading it does not move b on.
func (b *BytesBody) BytesReader() *bytes.Reader {
	b.view.Reset(b.b[len(b.b)-b.r.Len():])
	return &b.view
}

// Take returns the next n bytes of the body, not copied, and reads past them; nil, reading
// nothing, when fewer than n are left.
func (b *BytesBody) Take(n int64) []byte {
	if n < 0 || int64(b.r.Len()) < n {
		return nil
	}
	from := int64(len(b.b) - b.r.Len())
	if _, err := b.r.Seek(n, io.SeekCurrent); err != nil {
		return nil
	}
	return b.b[from : from+n : from+n]
}

// MarkDone records that a client codec read the body on the goroutine that called it and will
// not read it again: once that call returned, the body's owner may reuse its bytes. A codec
// that reads the body on a goroutine of its own, or may read it after the call returned, does
// not call it. Call it, and Done, only on the goroutine that made the call.
func (b *BytesBody) MarkDone() { b.done = true }

// Done reports whether MarkDone was called since the body was made or Reset with ResetBody.
func (b *BytesBody) Done() bool { return b.done }

// ResetBody makes b read p from the start, not marked done.
func (b *BytesBody) ResetBody(p []byte) {
	b.Reset(p)
	b.done = false
}

// NewBytesBody returns a body reading b (not copied).
func NewBytesBody(b []byte) *BytesBody {
	bb := &BytesBody{}
	bb.ResetBody(b)
	return bb
}

// Close does nothing.
func (*BytesBody) Close() error { return nil }

// Standard methods, interned.
var methods = [...]string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}

// Method returns m as a string, without allocating for the standard methods.
func Method(m []byte) string {
	for _, s := range methods {
		if string(m) == s {
			return s
		}
	}
	return string(m)
}
