package upstream

import (
	"crypto/tls"
	"io"
	"net/http"
	"strings"

	"github.com/strait-mesh/strait/proxy/httpmsg"
)

// Response is an upstream response as the router reads it (RoundTripMessage): its head in
// httpmsg's form whichever pool carried it. The HTTP/1.1 pools fill it from their codec's
// message without net/http's types; a response net/http's client read (HTTP/2, ALPN pools) or
// that an Upstream of net/http's shape returned is converted once (FromHTTP).
//
// A Response from an HTTP/1.1 pool is the connection's storage: it, its Header, Trailer and
// TrailerNames are valid until Body is closed (the connection may then carry another request).
type Response struct {
	// Status is the status code.
	Status int
	// Proto is the protocol the response came with.
	Proto httpmsg.Proto
	// Header holds the header fields as received (names in their case), without
	// Transfer-Encoding: framing is the codec's, as net/http's client keeps it out too.
	Header *httpmsg.Header
	// ContentLength is the body's length: -1 unknown, 0 none.
	ContentLength int64
	// TrailerNames are the trailer fields the head announced (the Trailer field's names in
	// canonical form, each once), empty when it announced none.
	TrailerNames []string
	// Trailer holds the trailer fields once Body returned io.EOF (empty before, and when there
	// are none).
	Trailer *httpmsg.Header
	// Body streams the body and must be closed: that ends the request's accounting (circuit
	// breakers, least request). For a 101 response Body also implements io.Writer: it is the
	// upgraded connection.
	Body io.ReadCloser
	// TLS is the connection's TLS state, nil for plaintext.
	TLS *tls.ConnectionState
}

// FromHTTP converts a response net/http's client read (or that an Upstream of its shape
// returned) for the router: its header map's fields in httpmsg's form, its announced trailers
// as TrailerNames, and a Body that fills Trailer from resp.Trailer at EOF. resp's Body is
// resp's own (an upgraded connection stays writable); resp must not be used afterwards.
func FromHTTP(resp *http.Response) *Response {
	c := &convertedResponse{src: resp}
	r := &c.out
	*r = Response{Status: resp.StatusCode, ContentLength: resp.ContentLength, TLS: resp.TLS,
		Header: &c.hdr, Trailer: &c.trl}
	switch {
	case resp.ProtoMajor == 2:
		r.Proto = httpmsg.HTTP2
	case resp.ProtoMajor == 1 && resp.ProtoMinor == 0:
		r.Proto = httpmsg.HTTP10
	}
	for k, vs := range resp.Header {
		for _, v := range vs {
			c.hdr.Add(k, v)
		}
	}
	for k := range resp.Trailer {
		r.TrailerNames = append(r.TrailerNames, k)
	}
	if rw, ok := resp.Body.(io.ReadWriteCloser); ok {
		r.Body = rw // the tunnel
	} else if resp.Body != nil {
		r.Body = (*convertedBody)(c)
	} else {
		r.Body = httpmsg.NoBody
	}
	return r
}

// convertedResponse is FromHTTP's result and the storage it needs, in one allocation.
type convertedResponse struct {
	out      Response
	hdr, trl httpmsg.Header
	src      *http.Response
	ended    bool // the trailers were copied
}

// convertedBody is a converted response's body: at EOF net/http's trailers go into Trailer.
type convertedBody convertedResponse

// Read implements io.Reader.
func (b *convertedBody) Read(p []byte) (int, error) {
	n, err := b.src.Body.Read(p)
	if err == io.EOF && !b.ended {
		b.ended = true
		for k, vs := range b.src.Trailer {
			for _, v := range vs {
				b.trl.Add(k, v)
			}
		}
	}
	return n, err
}

// Close implements io.Closer.
func (b *convertedBody) Close() error { return b.src.Body.Close() }

// appendTrailerNames appends the names h's Trailer fields announce, in canonical form and each
// once, to names.
func appendTrailerNames(names []string, h *httpmsg.Header) []string {
	for i := h.Index("Trailer", 0); i >= 0; i = h.Index("Trailer", i+1) {
		_, v := h.Field(i)
		for _, f := range strings.Split(string(v), ",") {
			if f = strings.TrimSpace(f); f == "" {
				continue
			}
			f = http.CanonicalHeaderKey(f)
			dup := false
			for _, n := range names {
				dup = dup || n == f
			}
			if !dup {
				names = append(names, f)
			}
		}
	}
	return names
}
