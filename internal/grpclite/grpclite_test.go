package grpclite

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/internal/testenv"
)

const (
	unary = "/test.Echo/Unary"
	bidi  = "/test.Echo/Bidi"
)

// server is a real grpc-go server whose methods are served by handle.
type server struct {
	addr    string
	accepts atomic.Int32
	// ended receives the error of every Hang call's context once it is done.
	ended chan error
}

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	n *atomic.Int32
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

func startServer(t *testing.T, opts ...grpc.ServerOption) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{addr: ln.Addr().String(), ended: make(chan error, 16)}
	gs := grpc.NewServer(append(opts, grpc.UnknownServiceHandler(s.handle))...)
	go gs.Serve(countingListener{ln, &s.accepts})
	t.Cleanup(gs.Stop)
	return s
}

func (s *server) handle(_ any, stream grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(stream)
	ctx := stream.Context()
	switch method {
	case unary:
		var in wrapperspb.StringValue
		if err := stream.RecvMsg(&in); err != nil {
			return err
		}
		reply, err := s.unary(ctx, stream, in.GetValue())
		if err != nil || reply == nil {
			return err
		}
		return stream.SendMsg(reply)
	case bidi:
		for {
			var in wrapperspb.StringValue
			err := stream.RecvMsg(&in)
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			switch v := in.GetValue(); v {
			case "abort":
				return status.Error(codes.Aborted, "the server aborts")
			case "end":
				return nil
			case "hang":
				<-ctx.Done()
				s.ended <- ctx.Err()
				return ctx.Err()
			default:
				if err := stream.SendMsg(wrapperspb.String("echo:" + v)); err != nil {
					return err
				}
			}
		}
	}
	return status.Errorf(codes.Unimplemented, "no method %s", method)
}

func (s *server) unary(ctx context.Context, stream grpc.ServerStream, v string) (proto.Message, error) {
	switch {
	case v == "error":
		st, err := status.New(codes.NotFound, "no such thing: 100% \"ünïcode\"\n").WithDetails(wrapperspb.String("detail"))
		if err != nil {
			return nil, err
		}
		return nil, st.Err()
	case v == "denied":
		stream.SetTrailer(metadata.Pairs("why", "policy"))
		return nil, status.Error(codes.PermissionDenied, "denied")
	case v == "late":
		return nil, status.Error(codes.DeadlineExceeded, "the server gave up")
	case v == "nothing":
		return nil, nil // OK without a message: a trailers-only OK
	case v == "block":
		<-ctx.Done()
		s.ended <- ctx.Err()
		return nil, status.FromContextError(ctx.Err()).Err()
	case v == "deadline":
		dl, ok := ctx.Deadline()
		if !ok {
			return wrapperspb.String("none"), nil
		}
		return wrapperspb.String(time.Until(dl).String()), nil
	case v == "metadata":
		md, _ := metadata.FromIncomingContext(ctx)
		if err := stream.SendHeader(metadata.Pairs("echo-hdr", "h", "blob-bin", "\x00\xffbin")); err != nil {
			return nil, err
		}
		stream.SetTrailer(metadata.Pairs("t-key", "t"))
		return wrapperspb.String(strings.Join(md.Get("x-key"), ",") + "|" + fmt.Sprintf("%x", md.Get("x-blob-bin")) + "|" + strings.Join(md.Get("user-agent"), ",")), nil
	case v == "peer":
		p, _ := peer.FromContext(ctx)
		ti, ok := p.AuthInfo.(credentials.TLSInfo)
		if !ok || len(ti.State.PeerCertificates) == 0 {
			return wrapperspb.String("no client certificate"), nil
		}
		return wrapperspb.String(ti.State.PeerCertificates[0].Subject.CommonName), nil
	case strings.HasPrefix(v, "big:"):
		n, _ := strconv.Atoi(v[4:])
		return wrapperspb.String(strings.Repeat("x", n)), nil
	}
	return wrapperspb.String("echo:" + v), nil
}

func dial(t *testing.T, addr string, opts Options) *Conn {
	t.Helper()
	c, err := Dial(addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func call(c *Conn, ctx context.Context, v string, md Metadata) (string, error) {
	var out wrapperspb.StringValue
	err := c.Invoke(ctx, unary, md, wrapperspb.String(v), &out)
	return out.GetValue(), err
}

// openEcho starts a bidi stream on ctx and checks that v comes back from it.
func openEcho(t *testing.T, c *Conn, ctx context.Context, v string) *Stream {
	t.Helper()
	st, err := c.NewStream(ctx, bidi, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(wrapperspb.String(v)); err != nil {
		t.Fatal(err)
	}
	var out wrapperspb.StringValue
	if err := st.Recv(&out); err != nil || out.GetValue() != "echo:"+v {
		t.Fatalf("echo of %q: %q, %v", v, out.GetValue(), err)
	}
	return st
}

func wantCode(t *testing.T, err error, want Code) *Status {
	t.Helper()
	s, ok := FromError(err)
	if !ok {
		t.Fatalf("error %v (%T) is not a *Status", err, err)
	}
	if s.Code != want {
		t.Fatalf("code %v (%q), want %v", s.Code, s.Message, want)
	}
	return s
}

func TestUnaryH2C(t *testing.T) {
	s := startServer(t)
	c := dial(t, s.addr, Options{})
	got, err := call(c, context.Background(), "hello", nil)
	if err != nil || got != "echo:hello" {
		t.Fatalf("got %q, %v", got, err)
	}
	// An empty message is a 0-length frame.
	if got, err = call(c, context.Background(), "", nil); err != nil || got != "echo:" {
		t.Fatalf("empty: got %q, %v", got, err)
	}
}

func TestErrorStatus(t *testing.T) {
	s := startServer(t)
	c := dial(t, s.addr, Options{})
	_, err := call(c, context.Background(), "error", nil)
	st := wantCode(t, err, NotFound)
	if want := "no such thing: 100% \"ünïcode\"\n"; st.Message != want {
		t.Errorf("message %q, want %q", st.Message, want)
	}
	var details spb.Status
	if err := proto.Unmarshal(st.Details, &details); err != nil {
		t.Fatalf("details: %v", err)
	}
	var d wrapperspb.StringValue
	if details.GetCode() != int32(NotFound) || len(details.GetDetails()) != 1 || details.GetDetails()[0].UnmarshalTo(&d) != nil || d.GetValue() != "detail" {
		t.Errorf("details %v", &details)
	}
	if !strings.Contains(err.Error(), "code = NotFound") {
		t.Errorf("Error() = %q", err)
	}
}

func TestTrailersOnly(t *testing.T) {
	s := startServer(t)
	c := dial(t, s.addr, Options{})
	_, err := call(c, context.Background(), "denied", nil)
	if st := wantCode(t, err, PermissionDenied); st.Message != "denied" {
		t.Errorf("message %q", st.Message)
	}
	// OK with no message is not a valid unary reply.
	_, err = call(c, context.Background(), "nothing", nil)
	wantCode(t, err, Internal)
	// A method the server does not have.
	err = c.Invoke(context.Background(), "/test.Echo/Missing", nil, wrapperspb.String("x"), &wrapperspb.StringValue{})
	wantCode(t, err, Unimplemented)
	// The stream's trailer metadata of a trailers-only reply.
	st, err := c.NewStream(context.Background(), unary, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(wrapperspb.String("denied")); err != nil {
		t.Fatal(err)
	}
	st.CloseSend()
	wantCode(t, st.Recv(&wrapperspb.StringValue{}), PermissionDenied)
	if got := st.Trailer().Get("why"); got != "policy" {
		t.Errorf("trailer why = %q", got)
	}
}

func TestMetadata(t *testing.T) {
	s := startServer(t)
	c := dial(t, s.addr, Options{UserAgent: "test-agent"})
	st, err := c.NewStream(context.Background(), unary, Metadata{"x-key": {"a", "b"}, "x-blob-bin": {"\x00\x01\xfe"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(wrapperspb.String("metadata")); err != nil {
		t.Fatal(err)
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	h, err := st.Header()
	if err != nil {
		t.Fatal(err)
	}
	if h.Get("echo-hdr") != "h" || h.Get("blob-bin") != "\x00\xffbin" {
		t.Errorf("header metadata %q", h)
	}
	var out wrapperspb.StringValue
	if err := st.Recv(&out); err != nil {
		t.Fatal(err)
	}
	if want := "a,b|[0001fe]|test-agent"; !strings.HasPrefix(out.GetValue(), want) {
		t.Errorf("server saw %q, want prefix %q", out.GetValue(), want)
	}
	if err := st.Recv(&out); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
	if st.Trailer().Get("t-key") != "t" {
		t.Errorf("trailer %q", st.Trailer())
	}
	// Bad metadata is refused before anything is sent.
	for _, md := range []Metadata{{"Upper": {"x"}}, {"grpc-timeout": {"1S"}}, {"x": {"a\nb"}}, {"": {"x"}}} {
		if _, err := call(c, context.Background(), "x", md); CodeOf(err) != Internal || !strings.Contains(err.Error(), "metadata key") {
			t.Errorf("metadata %q: %v", md, err)
		}
	}
}

func TestDeadline(t *testing.T) {
	s := startServer(t)
	c := dial(t, s.addr, Options{})

	// The server sees the client's deadline (grpc-timeout).
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	got, err := call(c, ctx, "deadline", nil)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := time.ParseDuration(got); err != nil || d <= 0 || d > time.Hour {
		t.Errorf("server-side deadline in %q, want within an hour", got)
	}
	if got, _ := call(c, context.Background(), "deadline", nil); got != "none" {
		t.Errorf("without a deadline the server saw %q", got)
	}

	// A call that outlives its deadline: whichever side notices first, DeadlineExceeded, and
	// the server's context ends too.
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = call(c, ctx, "block", nil)
	wantCode(t, err, DeadlineExceeded)
	if e := <-s.ended; e == nil {
		t.Error("the server's context did not end")
	}

	// The server's own DEADLINE_EXCEEDED status.
	_, err = call(c, context.Background(), "late", nil)
	if st := wantCode(t, err, DeadlineExceeded); st.Message != "the server gave up" {
		t.Errorf("message %q", st.Message)
	}

	// A deadline already past fails at once.
	ctx, cancel = context.WithTimeout(context.Background(), -time.Second)
	defer cancel()
	_, err = call(c, ctx, "x", nil)
	wantCode(t, err, DeadlineExceeded)
}

func TestServerDeadlineStatus(t *testing.T) {
	// The server's own deadline (from grpc-timeout) ends the call: the client's context has a
	// much later deadline once it is rendered, so the status comes from the server.
	s := startServer(t)
	c := dial(t, s.addr, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	hr, err := c.request(ctx, unary, nil, http.NoBody)
	if err != nil {
		t.Fatal(err)
	}
	hr.Header.Set("Grpc-Timeout", "20m") // the server gives up long before the client does
	b, _ := frame(wrapperspb.String("block"))
	hr.Body = io.NopCloser(strings.NewReader(string(b)))
	// grpc-go's server either answers DEADLINE_EXCEEDED (its handler saw the deadline first)
	// or resets the stream with CANCEL (its timer fired first); its context ended either way.
	r, err := c.roundTrip(ctx, hr)
	if err == nil {
		err = r.recv(&wrapperspb.StringValue{})
	}
	if c := CodeOf(err); c != DeadlineExceeded && c != Canceled {
		t.Fatalf("code %v (%v), want DeadlineExceeded or Canceled", c, err)
	}
	if ctx.Err() != nil {
		t.Fatal("the client's deadline passed: the status did not come from the server")
	}
	// The server ended the call on the grpc-timeout alone (grpc-go cancels the handler's
	// context then, so its error is Canceled or DeadlineExceeded).
	if e := <-s.ended; e == nil {
		t.Error("the server's context did not end")
	}
}

func TestBidiStream(t *testing.T) {
	s := startServer(t)
	c := dial(t, s.addr, Options{})
	st, err := c.NewStream(context.Background(), bidi, nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 500
	sendErr := make(chan error, 1)
	go func() {
		for i := range n {
			if err := st.Send(wrapperspb.String(strconv.Itoa(i))); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- st.CloseSend()
	}()
	for i := range n {
		var out wrapperspb.StringValue
		if err := st.Recv(&out); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if want := "echo:" + strconv.Itoa(i); out.GetValue() != want {
			t.Fatalf("message %d: %q, want %q", i, out.GetValue(), want)
		}
	}
	if err := st.Recv(&wrapperspb.StringValue{}); err != io.EOF {
		t.Fatalf("end: %v, want io.EOF", err)
	}
	if err := <-sendErr; err != nil {
		t.Fatal(err)
	}
}

func TestStreamLockstep(t *testing.T) {
	// ADS's shape: the server answers only after the client's first message.
	s := startServer(t)
	c := dial(t, s.addr, Options{})
	st, err := c.NewStream(context.Background(), bidi, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if err := st.Send(wrapperspb.String(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
		var out wrapperspb.StringValue
		if err := st.Recv(&out); err != nil || out.GetValue() != "echo:"+strconv.Itoa(i) {
			t.Fatalf("%d: %q, %v", i, out.GetValue(), err)
		}
	}
	st.CloseSend()
	if err := st.Recv(&wrapperspb.StringValue{}); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
}

func TestServerEndsStream(t *testing.T) {
	s := startServer(t)
	c := dial(t, s.addr, Options{})
	for _, tc := range []struct {
		last string
		want Code
	}{{"abort", Aborted}, {"end", OK}} {
		st := openEcho(t, c, context.Background(), "one")
		st.Send(wrapperspb.String(tc.last))
		var out wrapperspb.StringValue
		err := st.Recv(&out)
		if tc.want == OK {
			if err != io.EOF {
				t.Fatalf("%s: %v, want io.EOF", tc.last, err)
			}
		} else {
			wantCode(t, err, tc.want)
		}
		// The stream is over: Send says so, and Recv repeats the end.
		var sendErr error
		for range 100 { // a write may land in the pipe before the stream's end is seen
			if sendErr = st.Send(wrapperspb.String("late")); sendErr != nil {
				break
			}
		}
		if sendErr != io.EOF {
			t.Errorf("%s: Send after the end: %v, want io.EOF", tc.last, sendErr)
		}
		if err2 := st.Recv(&out); err2 != err {
			t.Errorf("%s: second Recv %v, first %v", tc.last, err2, err)
		}
	}
}

func TestClientCancel(t *testing.T) {
	s := startServer(t)
	c := dial(t, s.addr, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	st := openEcho(t, c, ctx, "hello")
	st.Send(wrapperspb.String("hang"))
	var out wrapperspb.StringValue
	recvErr := make(chan error, 1)
	go func() { recvErr <- st.Recv(&out) }()
	cancel()
	wantCode(t, <-recvErr, Canceled)
	// The server saw the stream reset.
	if e := <-s.ended; !errors.Is(e, context.Canceled) {
		t.Errorf("server context ended with %v", e)
	}
	// The connection is still good.
	if got, err := call(c, context.Background(), "after", nil); err != nil || got != "echo:after" {
		t.Fatalf("after cancel: %q, %v", got, err)
	}
	if n := s.accepts.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

func TestMaxReceive(t *testing.T) {
	s := startServer(t)
	c := dial(t, s.addr, Options{MaxReceive: 1000})
	if got, err := call(c, context.Background(), "big:900", nil); err != nil || len(got) != 900 {
		t.Fatalf("900 bytes: %d, %v", len(got), err)
	}
	_, err := call(c, context.Background(), "big:2000", nil)
	if st := wantCode(t, err, ResourceExhausted); !strings.Contains(st.Message, "limit of 1000") {
		t.Errorf("message %q", st.Message)
	}
	// Default: 4 MiB.
	c = dial(t, s.addr, Options{})
	_, err = call(c, context.Background(), "big:"+strconv.Itoa(DefaultMaxReceive+1), nil)
	wantCode(t, err, ResourceExhausted)
}

func TestConcurrency(t *testing.T) {
	s := startServer(t)
	c := dial(t, s.addr, Options{})
	const workers, calls = 50, 10
	var wg sync.WaitGroup
	errs := make(chan error, workers*calls)
	for w := range workers {
		wg.Go(func() {
			for i := range calls {
				v := fmt.Sprintf("%d-%d", w, i)
				if got, err := call(c, context.Background(), v, nil); err != nil || got != "echo:"+v {
					errs <- fmt.Errorf("%s: %q, %v", v, got, err)
				}
			}
		})
	}
	for range 5 { // streams alongside the unary calls
		wg.Go(func() {
			st, err := c.NewStream(context.Background(), bidi, nil)
			if err != nil {
				errs <- err
				return
			}
			for i := range 20 {
				st.Send(wrapperspb.String(strconv.Itoa(i)))
				var out wrapperspb.StringValue
				if err := st.Recv(&out); err != nil {
					errs <- err
					return
				}
			}
			st.CloseSend()
			if err := st.Recv(&wrapperspb.StringValue{}); err != io.EOF {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := s.accepts.Load(); n != 1 {
		t.Errorf("%d connections, want 1 shared", n)
	}
}

func TestUnavailable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := dial(t, addr, Options{})
	_, err = call(c, context.Background(), "x", nil)
	wantCode(t, err, Unavailable)

	s := startServer(t)
	c = dial(t, s.addr, Options{})
	c.Close()
	_, err = call(c, context.Background(), "x", nil)
	wantCode(t, err, Unavailable)
}

func TestMutualTLS(t *testing.T) {
	ca := testenv.NewCA(t, "test CA")
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	s := startServer(t, grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{ca.Issue(t, testenv.Leaf{DNS: []string{"server.test"}})},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	})))
	client := ca.Issue(t, testenv.Leaf{CommonName: "the-client"})
	c := dial(t, s.addr, Options{TLS: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{client}, ServerName: "server.test"}})
	if got, err := call(c, context.Background(), "peer", nil); err != nil || got != "the-client" {
		t.Fatalf("peer: %q, %v", got, err)
	}
	// A bidi stream over TLS.
	st := openEcho(t, c, context.Background(), "tls")
	st.CloseSend()
	if err := st.Recv(&wrapperspb.StringValue{}); err != io.EOF {
		t.Fatal(err)
	}

	// Without a client certificate the server refuses the handshake.
	c = dial(t, s.addr, Options{TLS: &tls.Config{RootCAs: pool, ServerName: "server.test"}})
	_, err := call(c, context.Background(), "peer", nil)
	wantCode(t, err, Unavailable)
	// A server the client does not trust.
	c = dial(t, s.addr, Options{TLS: &tls.Config{RootCAs: x509.NewCertPool(), Certificates: []tls.Certificate{client}}})
	_, err = call(c, context.Background(), "peer", nil)
	wantCode(t, err, Unavailable)
	// h2c to a TLS server fails too.
	c = dial(t, s.addr, Options{})
	_, err = call(c, context.Background(), "peer", nil)
	wantCode(t, err, Unavailable)
}

func TestKeepaliveOptions(t *testing.T) {
	s := startServer(t)
	c := dial(t, s.addr, Options{ReadIdleTimeout: time.Minute, PingTimeout: time.Second})
	if c.t.ReadIdleTimeout != time.Minute || c.t.PingTimeout != time.Second {
		t.Fatalf("transport keepalive %v/%v", c.t.ReadIdleTimeout, c.t.PingTimeout)
	}
	if _, err := call(c, context.Background(), "x", nil); err != nil {
		t.Fatal(err)
	}
}

func TestDialErrors(t *testing.T) {
	for _, target := range []string{"", "no-port", "a:b:c"} {
		if _, err := Dial(target, Options{}); err == nil {
			t.Errorf("Dial(%q): no error", target)
		}
	}
	if _, err := Dial("127.0.0.1:1", Options{MaxReceive: -1}); err == nil {
		t.Error("negative MaxReceive: no error")
	}
	c := dial(t, "127.0.0.1:1", Options{})
	if err := c.Invoke(context.Background(), "no-slash", nil, wrapperspb.String(""), &wrapperspb.StringValue{}); CodeOf(err) != Internal {
		t.Errorf("bad method: %v", err)
	}
}

// TestInvokeRaw: a caller that encodes its own messages gets the reply's bytes as sent, and
// the same statuses as Invoke.
func TestInvokeRaw(t *testing.T) {
	s := startServer(t)
	c := dial(t, s.addr, Options{MaxReceive: 1 << 10})
	req, _ := proto.Marshal(wrapperspb.String("raw"))
	b, err := c.InvokeRaw(context.Background(), unary, nil, req)
	if err != nil {
		t.Fatal(err)
	}
	var out wrapperspb.StringValue
	if err := proto.Unmarshal(b, &out); err != nil || out.GetValue() != "echo:raw" {
		t.Fatalf("reply %q: %v", out.GetValue(), err)
	}
	if b, err := c.InvokeRaw(context.Background(), unary, nil, nil); err != nil || proto.Unmarshal(b, &out) != nil || out.GetValue() != "echo:" {
		t.Fatalf("empty request: %q, %v", out.GetValue(), err)
	}
	req, _ = proto.Marshal(wrapperspb.String("big:2000"))
	_, err = c.InvokeRaw(context.Background(), unary, nil, req)
	wantCode(t, err, ResourceExhausted)
	req, _ = proto.Marshal(wrapperspb.String("denied"))
	_, err = c.InvokeRaw(context.Background(), unary, nil, req)
	wantCode(t, err, PermissionDenied)
	req, _ = proto.Marshal(wrapperspb.String("nothing"))
	_, err = c.InvokeRaw(context.Background(), unary, nil, req)
	wantCode(t, err, Internal)
}

// TestConnectTimeout: a server that accepts TCP but never answers the TLS handshake fails the
// call with Unavailable once ConnectTimeout passes, though the call itself has no deadline.
func TestConnectTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c) // silent: no ServerHello
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	}()
	c := dial(t, ln.Addr().String(), Options{TLS: &tls.Config{InsecureSkipVerify: true}, ConnectTimeout: 100 * time.Millisecond})
	_, err = call(c, context.Background(), "x", nil)
	if s := wantCode(t, err, Unavailable); !strings.Contains(s.Message, "TLS handshake") {
		t.Errorf("message %q", s.Message)
	}
	if _, err := Dial("127.0.0.1:1", Options{ConnectTimeout: -1}); err == nil {
		t.Error("negative ConnectTimeout accepted")
	}
}

// TestParseTarget: gRPC's dns and passthrough URIs name a host:port; other forms are refused.
func TestParseTarget(t *testing.T) {
	for in, want := range map[string]string{
		"straitd:15012":                  "straitd:15012",
		"dns:///straitd.svc:15012":       "straitd.svc:15012",
		"passthrough:///127.0.0.1:15010": "127.0.0.1:15010",
		"[::1]:15010":                    "[::1]:15010",
	} {
		if got, err := ParseTarget(in); err != nil || got != want {
			t.Errorf("ParseTarget(%q) = %q, %v; want %q", in, got, err, want)
		}
		if c, err := Dial(in, Options{}); err != nil || c.Target() != want {
			t.Errorf("Dial(%q): %v", in, err)
		}
	}
	for _, bad := range []string{"", "straitd", "dns://8.8.8.8/straitd:15012", "unix:///run/x.sock", "xds:///svc:1", "dns:///straitd", "passthrough:///a/b:1"} {
		if got, err := ParseTarget(bad); err == nil {
			t.Errorf("ParseTarget(%q) = %q, want an error", bad, got)
		}
	}
}
