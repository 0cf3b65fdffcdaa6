package grpclite

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
)

// Invoke calls the unary method ("/package.Service/Method") with req and decodes the one reply
// message into resp. md is the call's metadata (nil for none). The error is a *Status.
func (c *Conn) Invoke(ctx context.Context, method string, md Metadata, req, resp proto.Message) error {
	b, err := frame(req)
	if err != nil {
		return err
	}
	msg, err := c.invoke(ctx, method, md, b, messageName(resp))
	if err != nil {
		return err
	}
	if err := proto.Unmarshal(msg, resp); err != nil {
		return statusf(Internal, "decoding the %s: %v", messageName(resp), err)
	}
	return nil
}

// InvokeRaw is Invoke for a caller that encodes its own messages (for instance with
// protowire, to avoid linking a generated package): req is the encoded request message and the
// reply's encoded message is returned, bounded by Options.MaxReceive. Decoding it is the
// caller's task; the bytes come from the server and are untrusted. The error is a *Status.
func (c *Conn) InvokeRaw(ctx context.Context, method string, md Metadata, req []byte) ([]byte, error) {
	b, err := frameBytes(req)
	if err != nil {
		return nil, err
	}
	return c.invoke(ctx, method, md, b, "reply")
}

// invoke sends the framed request b on a unary call and returns the one reply message; name
// names the reply in errors.
func (c *Conn) invoke(ctx context.Context, method string, md Metadata, b []byte, name string) ([]byte, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // resets the stream if the reply was not read to its end
	hr, err := c.request(ctx, method, md, io.NopCloser(bytes.NewReader(b)))
	if err != nil {
		return nil, err
	}
	hr.ContentLength = int64(len(b))
	hr.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	r, err := c.roundTrip(ctx, hr)
	if err != nil {
		return nil, err
	}
	defer r.body.Close()
	msg, err := r.recvRaw()
	if err != nil {
		if err == io.EOF {
			return nil, statusf(Internal, "%s: the server sent no %s", method, name)
		}
		return nil, err
	}
	switch _, err := r.recvRaw(); err {
	case io.EOF:
		return msg, nil
	case nil:
		return nil, statusf(Internal, "%s: the server sent more than one message to a unary call", method)
	default:
		return nil, err
	}
}

// request builds the HTTP/2 request of a call to method with md, sending body. The transport
// closes body when the stream ends, which unblocks a stream's pending Send.
func (c *Conn) request(ctx context.Context, method string, md Metadata, body io.ReadCloser) (*http.Request, error) {
	if !strings.HasPrefix(method, "/") || strings.ContainsAny(method, " ?#") {
		return nil, statusf(Internal, "method %q: not a gRPC path /package.Service/Method", method)
	}
	h := http.Header{
		"Content-Type": {"application/grpc"},
		"Te":           {"trailers"},
		"User-Agent":   {c.userAgent},
	}
	if dl, ok := ctx.Deadline(); ok {
		h["Grpc-Timeout"] = []string{timeoutHeader(time.Until(dl))}
	}
	if err := md.addTo(h); err != nil {
		return nil, statusf(Internal, "%s: %v", method, err)
	}
	return (&http.Request{
		Method:     http.MethodPost,
		URL:        &url.URL{Scheme: c.scheme, Host: c.target, Path: method},
		Proto:      "HTTP/2.0",
		ProtoMajor: 2,
		Header:     h,
		Host:       c.authority,
		Body:       body,
	}).WithContext(ctx), nil
}

// roundTrip sends hr and checks the reply's headers. A trailers-only reply's status is the
// returned reader's final status.
func (c *Conn) roundTrip(ctx context.Context, hr *http.Request) (*reader, error) {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return nil, statusf(Unavailable, "%v", errClosed)
	}
	resp, err := c.t.RoundTrip(hr)
	if err != nil {
		return nil, transportStatus(ctx, err)
	}
	r := &reader{ctx: ctx, resp: resp, body: resp.Body, fr: frameReader{r: resp.Body, max: c.maxReceive}}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, statusf(httpStatusCode(resp.StatusCode), "the server answered HTTP %d to a gRPC call", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/grpc" && !strings.HasPrefix(ct, "application/grpc+") && !strings.HasPrefix(ct, "application/grpc;") {
		resp.Body.Close()
		return nil, statusf(Unknown, "the server answered content-type %q to a gRPC call", ct)
	}
	if s, ok := headerStatus(resp.Header); ok { // trailers-only
		r.final = s
		r.trailer = metadataOf(resp.Header)
	}
	return r, nil
}

// reader reads one call's reply.
type reader struct {
	ctx     context.Context
	resp    *http.Response
	body    io.ReadCloser
	fr      frameReader
	final   *Status  // set once the call ended
	trailer Metadata // the trailers' metadata, once ended
}

// recv decodes the next message into m (nil: skips it); io.EOF when the call ended with OK,
// else the *Status.
func (r *reader) recv(m proto.Message) error {
	msg, err := r.recvRaw()
	if err != nil || m == nil {
		return err
	}
	if err := proto.Unmarshal(msg, m); err != nil {
		return r.end(statusf(Internal, "decoding the %s: %v", messageName(m), err))
	}
	return nil
}

// recvRaw returns the next message as received; io.EOF when the call ended with OK, else the
// *Status.
func (r *reader) recvRaw() ([]byte, error) {
	if r.final == nil {
		msg, err := r.fr.next()
		switch {
		case err == nil:
			return msg, nil
		case err == io.EOF:
			r.end(r.trailerStatus())
		default:
			r.end(transportStatus(r.ctx, err))
		}
	}
	if r.final.Code == OK {
		return nil, io.EOF
	}
	return nil, r.final
}

// end records the call's final status s and releases the stream; it returns s.
func (r *reader) end(s *Status) *Status {
	if r.final == nil {
		r.final = s
	}
	r.body.Close()
	return r.final
}

// trailerStatus is the status in the trailers of a reply read to its end.
func (r *reader) trailerStatus() *Status {
	r.trailer = metadataOf(r.resp.Trailer)
	if s, ok := headerStatus(r.resp.Trailer); ok {
		return s
	}
	if err := r.ctx.Err(); err != nil {
		return transportStatus(r.ctx, err)
	}
	return statusf(Internal, "the server closed the stream without sending trailers")
}

// Stream is a streaming call (client, server or bidirectional). One goroutine may Send (and
// CloseSend) while another Recvs. Abandon a stream by cancelling its context: a stream that is
// neither read to its end nor cancelled holds its HTTP/2 stream open.
type Stream struct {
	ctx    context.Context
	cancel context.CancelFunc
	pw     *io.PipeWriter

	done chan struct{} // closed once the reply's headers (or a failure) arrived
	r    *reader
	err  error

	sendMu sync.Mutex
}

// NewStream starts a streaming call to method with md. It returns at once: the server's reply
// headers are awaited by Header and Recv, so a server that answers only after the client's
// first message works.
func (c *Conn) NewStream(ctx context.Context, method string, md Metadata) (*Stream, error) {
	ctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	hr, err := c.request(ctx, method, md, pr)
	if err != nil {
		cancel()
		return nil, err
	}
	hr.ContentLength = -1
	s := &Stream{ctx: ctx, cancel: cancel, pw: pw, done: make(chan struct{})}
	// x/net's transport notices a cancelled context only between reads of the request body:
	// ending the body on cancellation resets the stream even while the client sends nothing.
	context.AfterFunc(ctx, func() { pr.CloseWithError(ctx.Err()) })
	go func() {
		s.r, s.err = c.roundTrip(ctx, hr)
		if s.err != nil {
			pr.CloseWithError(s.err)
			cancel()
		}
		close(s.done)
	}()
	return s, nil
}

// Send sends m. It returns io.EOF when the stream has ended (Recv returns its status), and
// another error when m cannot be encoded.
func (s *Stream) Send(m proto.Message) error {
	b, err := frame(m)
	if err != nil {
		return err
	}
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if _, err := s.pw.Write(b); err != nil {
		return io.EOF
	}
	return nil
}

// CloseSend ends the client's side of the stream (END_STREAM); Recv still reads replies.
func (s *Stream) CloseSend() error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	return s.pw.Close()
}

// Header waits for the server's reply headers and returns their metadata.
func (s *Stream) Header() (Metadata, error) {
	select {
	case <-s.done:
	case <-s.ctx.Done():
		<-s.done // roundTrip returns once ctx is done
	}
	if s.err != nil {
		return nil, s.err
	}
	return metadataOf(s.r.resp.Header), nil
}

// Recv decodes the next message from the server into m. It returns io.EOF when the server ended
// the stream with OK, and the *Status of any other end; the stream is released then.
func (s *Stream) Recv(m proto.Message) error {
	<-s.done
	if s.err != nil {
		return s.err
	}
	err := s.r.recv(m)
	if err != nil {
		s.cancel()
	}
	return err
}

// Trailer is the metadata of the server's trailers; valid once Recv returned an error.
func (s *Stream) Trailer() Metadata {
	select {
	case <-s.done:
		if s.r != nil {
			return s.r.trailer
		}
	default:
	}
	return nil
}

// Context is the stream's context, done when the stream is.
func (s *Stream) Context() context.Context { return s.ctx }
