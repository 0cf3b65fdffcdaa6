// Package grpcunary makes unary gRPC calls through one of strait-proxy's own clusters, as
// Envoy's envoy_grpc client does for its filters (ext_authz, the global rate limit filter): the
// call is framed here (a 5-byte length prefix, application/grpc, te: trailers, grpc-timeout)
// and sent as one HTTP/2 request with :authority envoy_grpc.authority (the cluster name when
// unset); the reply must be exactly one uncompressed message within max_receive_message_length
// and end with grpc-status OK.
//
// A Client is immutable once compiled and safe for concurrent use.
package grpcunary

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
	"google.golang.org/protobuf/proto"

	"github.com/strait-mesh/strait/proxy/xdsfield"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
)

// DefaultMaxReceiveBytes bounds a reply message unless envoy_grpc sets
// max_receive_message_length (gRPC's default of 4 MiB).
const DefaultMaxReceiveBytes = 4 << 20

// RoundTripper sends one request to the client's cluster and returns its response with the
// body unread: the proxy's own cluster, so endpoints, pools and mTLS are its own.
type RoundTripper interface {
	RoundTrip(req *http.Request) (*http.Response, error)
}

// Client calls unary methods of a service behind one cluster.
type Client struct {
	// Cluster is the service's cluster, Authority the calls' :authority.
	Cluster, Authority string
	// Timeout bounds one call and is sent as grpc-timeout; 0: only the caller's context does.
	Timeout time.Duration
	// MaxReceive bounds the reply message; 0 means DefaultMaxReceiveBytes.
	MaxReceive int
	// Metadata are the initial_metadata headers (canonical name, value) of every call.
	Metadata [][2]string
}

// CompileEnvoyGRPC compiles the envoy_grpc target of gs (field names gs in errors) into a
// Client's Cluster, Authority and MaxReceive; Timeout and Metadata are the caller's, which
// checks gs's other fields first (the filters differ on them). Fields of envoy_grpc it does not
// implement are *xdsfield.UnsupportedError.
func CompileEnvoyGRPC(field string, gs *corev3.GrpcService) (Client, error) {
	var c Client
	eg := gs.GetEnvoyGrpc()
	if eg == nil {
		return c, fmt.Errorf("%s.envoy_grpc: missing", field)
	}
	// skip_envoy_headers: the proxy adds no x-envoy-* headers to the call either way.
	if err := xdsfield.Check(eg, field+".envoy_grpc", "cluster_name", "authority", "max_receive_message_length",
		"skip_envoy_headers"); err != nil {
		return c, err
	}
	if c.Cluster = eg.GetClusterName(); c.Cluster == "" {
		return c, fmt.Errorf("%s.envoy_grpc.cluster_name: empty", field)
	}
	if c.Authority = eg.GetAuthority(); c.Authority == "" {
		var ok bool
		if c.Authority, ok = defaultAuthority(c.Cluster); !ok {
			return c, fmt.Errorf("%s.envoy_grpc.authority: unset, and the cluster name %q is not an authority strait-proxy can send: set authority", field, c.Cluster)
		}
	}
	if strings.ContainsAny(c.Authority, " \t\r\n\x00/") {
		return c, fmt.Errorf("%s.envoy_grpc.authority: %q is not an authority", field, c.Authority)
	}
	c.MaxReceive = DefaultMaxReceiveBytes
	if m := eg.GetMaxReceiveMessageLength(); m != nil && m.GetValue() > 0 {
		c.MaxReceive = int(m.GetValue())
	}
	return c, nil
}

// Call sends req to method (the path "/package.Service/Method") on the cluster through rt,
// within the client's Timeout and ctx, and decodes the reply into resp. Any failure (transport,
// HTTP status, grpc-status, oversized or malformed reply) is an error naming the method and
// the cluster.
func (c *Client) Call(ctx context.Context, rt RoundTripper, method string, req, resp proto.Message) error {
	if err := c.call(ctx, rt, method, req, resp); err != nil {
		return fmt.Errorf("calling %s on %s: %w", method, c.Cluster, err)
	}
	return nil
}

func (c *Client) call(ctx context.Context, rt RoundTripper, method string, req, resp proto.Message) error {
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	hr, err := c.request(method, req)
	if err != nil {
		return err
	}
	hresp, err := rt.RoundTrip(hr.WithContext(ctx))
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		return err
	}
	defer hresp.Body.Close()
	return c.response(hresp, resp)
}

// request builds the call: one length-prefixed message.
func (c *Client) request(method string, req proto.Message) (*http.Request, error) {
	msg, err := proto.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encoding the %s: %w", messageName(req), err)
	}
	frame := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(frame[1:5], uint32(len(msg)))
	copy(frame[5:], msg)
	hdr := http.Header{"Content-Type": {"application/grpc"}, "Te": {"trailers"}, "User-Agent": nil}
	if c.Timeout > 0 {
		hdr["Grpc-Timeout"] = []string{timeoutHeader(c.Timeout.Milliseconds())}
	}
	for _, m := range c.Metadata {
		hdr[m[0]] = append(hdr[m[0]], m[1])
	}
	return &http.Request{
		Method:        http.MethodPost,
		URL:           &url.URL{Path: method},
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Header:        hdr,
		Host:          c.Authority,
		ContentLength: int64(len(frame)),
		Body:          io.NopCloser(bytes.NewReader(frame)),
		GetBody:       func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(frame)), nil },
	}, nil
}

// defaultAuthority is the :authority of calls whose envoy_grpc sets none: the cluster name, as
// Envoy sends it. Istio's cluster names (outbound|8081||ratelimit.default.svc.cluster.local)
// are not valid authorities for strait-proxy's HTTP/2 client, which refuses a '|' in
// :authority: for them the service's host name is sent. ok is false when neither is valid.
func defaultAuthority(cluster string) (authority string, ok bool) {
	if httpguts.ValidHostHeader(cluster) {
		return cluster, true
	}
	if parts := strings.Split(cluster, "|"); len(parts) == 4 && parts[3] != "" && httpguts.ValidHostHeader(parts[3]) {
		return parts[3], true
	}
	return "", false
}

// timeoutHeader renders a grpc-timeout header value (at most 8 digits) for ms milliseconds.
func timeoutHeader(ms int64) string {
	if ms < 1 {
		ms = 1
	}
	if ms < 100_000_000 {
		return strconv.FormatInt(ms, 10) + "m"
	}
	return strconv.FormatInt(min(ms/1000, 99_999_999), 10) + "S"
}

// response reads the call's reply into resp.
func (c *Client) response(hresp *http.Response, resp proto.Message) error {
	if hresp.StatusCode != http.StatusOK {
		return fmt.Errorf("answered HTTP %d to a gRPC call", hresp.StatusCode)
	}
	if ct := hresp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/grpc") {
		return fmt.Errorf("answered content-type %q to a gRPC call", ct)
	}
	if err := statusErr(hresp.Header); err != nil {
		return err // a trailers-only reply
	}
	limit := c.limit()
	body, err := io.ReadAll(io.LimitReader(hresp.Body, int64(limit)+6))
	if err != nil {
		return fmt.Errorf("reading the %s: %w", messageName(resp), err)
	}
	if hresp.Header.Get("Grpc-Status") == "" {
		if hresp.Trailer.Get("Grpc-Status") == "" {
			return errors.New("the call ended without a grpc-status")
		}
		if err := statusErr(hresp.Trailer); err != nil {
			return err
		}
	}
	return Decode(body, limit, resp)
}

func (c *Client) limit() int {
	if c.MaxReceive <= 0 {
		return DefaultMaxReceiveBytes
	}
	return c.MaxReceive
}

// statusErr returns the failure carried by h's grpc-status, nil for none or OK.
func statusErr(h http.Header) error {
	st := h.Get("Grpc-Status")
	if st == "" || st == "0" {
		return nil
	}
	msg, _ := url.PathUnescape(h.Get("Grpc-Message"))
	return fmt.Errorf("grpc-status %s: %s", st, msg)
}

// Decode decodes the body of a successful call into resp: exactly one uncompressed message of
// at most limit bytes.
func Decode(body []byte, limit int, resp proto.Message) error {
	msg, err := message(body, limit)
	if err != nil {
		return fmt.Errorf("reading the %s: %w", messageName(resp), err)
	}
	if err := proto.Unmarshal(msg, resp); err != nil {
		return fmt.Errorf("decoding the %s: %w", messageName(resp), err)
	}
	return nil
}

// message returns the one message of a gRPC response body.
func message(b []byte, limit int) ([]byte, error) {
	if len(b) < 5 {
		return nil, fmt.Errorf("%d bytes: no complete message", len(b))
	}
	if b[0] != 0 {
		return nil, fmt.Errorf("message flags %#x: compressed or unknown", b[0])
	}
	n := binary.BigEndian.Uint32(b[1:5])
	if uint64(n) > uint64(limit) {
		return nil, fmt.Errorf("message of %d bytes exceeds the limit of %d", n, limit)
	}
	if uint64(len(b)-5) != uint64(n) {
		return nil, fmt.Errorf("message of %d bytes in %d bytes of body: not exactly one message", n, len(b)-5)
	}
	return b[5:], nil
}

// messageName is m's message name for errors ("CheckResponse").
func messageName(m proto.Message) string {
	return string(m.ProtoReflect().Descriptor().Name())
}
