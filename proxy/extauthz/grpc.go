package extauthz

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/strait-mesh/strait/proxy/xdsfield"
)

// CheckPath is the gRPC method the gRPC service is called on.
const CheckPath = "/envoy.service.auth.v3.Authorization/Check"

// grpcClient is a unary envoy.service.auth.v3.Authorization/Check client over an envoy_grpc
// cluster: the framing of the call and of its reply, shared by the HTTP filter's gRPC service
// and the network filter. It is immutable once compiled and safe for concurrent use.
type grpcClient struct {
	cluster, authority string
	// timeout bounds one call (grpc_service.timeout); 0: no bound beyond the caller's context.
	timeout         time.Duration
	initialMetadata []header
	// maxReceive bounds the CheckResponse message (max_receive_message_length).
	maxReceive int
}

// compileGRPCClient compiles a GrpcService with an envoy_grpc target; field names it in errors.
// Fields it does not implement (google_grpc, retry_policy...) are *xdsfield.UnsupportedError.
func compileGRPCClient(field string, gs *corev3.GrpcService) (grpcClient, error) {
	var g grpcClient
	if err := xdsfield.Check(gs, field, "envoy_grpc", "timeout", "initial_metadata"); err != nil {
		return g, err
	}
	eg := gs.GetEnvoyGrpc()
	if eg == nil {
		return g, fmt.Errorf("%s.envoy_grpc: missing", field)
	}
	// skip_envoy_headers: the proxy adds no x-envoy-* headers to the call either way.
	if err := xdsfield.Check(eg, field+".envoy_grpc", "cluster_name", "authority", "max_receive_message_length",
		"skip_envoy_headers"); err != nil {
		return g, err
	}
	if g.cluster = eg.GetClusterName(); g.cluster == "" {
		return g, fmt.Errorf("%s.envoy_grpc.cluster_name: empty", field)
	}
	if g.authority = eg.GetAuthority(); g.authority == "" {
		g.authority = g.cluster
	}
	if strings.ContainsAny(g.authority, " \t\r\n\x00/") {
		return g, fmt.Errorf("%s.envoy_grpc.authority: %q is not an authority", field, g.authority)
	}
	g.maxReceive = DefaultMaxReceiveBytes
	if m := eg.GetMaxReceiveMessageLength(); m != nil && m.GetValue() > 0 {
		g.maxReceive = int(m.GetValue())
	}
	g.timeout = DefaultTimeout
	if t := gs.GetTimeout(); t != nil {
		if err := t.CheckValid(); err != nil {
			return g, fmt.Errorf("%s.timeout: %w", field, err)
		}
		g.timeout = t.AsDuration()
	}
	if g.timeout < 0 {
		return g, fmt.Errorf("%s.timeout: negative", field)
	}
	var err error
	g.initialMetadata, err = compileHeaders(field+".initial_metadata", gs.GetInitialMetadata())
	return g, err
}

// call sends cr to the cluster through rt within the timeout and ctx, and returns the service's
// CheckResponse. Any failure (transport, HTTP status, grpc-status, oversized or malformed reply)
// is an error.
func (g *grpcClient) call(ctx context.Context, rt RoundTripper, cr *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	ctx, cancel := withTimeout(ctx, g.timeout)
	defer cancel()
	req, err := g.request(cr)
	if err != nil {
		return nil, err
	}
	resp, err := rt.RoundTrip(req.WithContext(ctx))
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		return nil, fmt.Errorf("calling the authorization service on %s: %w", g.cluster, err)
	}
	defer resp.Body.Close()
	return g.response(resp)
}

// request builds the Check call: one length-prefixed CheckRequest.
func (g *grpcClient) request(cr *authv3.CheckRequest) (*http.Request, error) {
	msg, err := proto.Marshal(cr)
	if err != nil {
		return nil, fmt.Errorf("encoding the CheckRequest: %w", err)
	}
	frame := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(frame[1:5], uint32(len(msg)))
	copy(frame[5:], msg)
	hdr := http.Header{
		"Content-Type": {"application/grpc"},
		"Te":           {"trailers"},
		"User-Agent":   nil,
	}
	if g.timeout > 0 {
		hdr["Grpc-Timeout"] = []string{grpcTimeout(g.timeout.Milliseconds())}
	}
	for _, h := range g.initialMetadata {
		k := http.CanonicalHeaderKey(h.name)
		hdr[k] = append(hdr[k], h.value)
	}
	return &http.Request{
		Method:        http.MethodPost,
		URL:           &url.URL{Path: CheckPath},
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Header:        hdr,
		Host:          g.authority,
		ContentLength: int64(len(frame)),
		Body:          io.NopCloser(bytes.NewReader(frame)),
		GetBody:       func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(frame)), nil },
	}, nil
}

// grpcTimeout renders a grpc-timeout header value (at most 8 digits) for ms milliseconds.
func grpcTimeout(ms int64) string {
	if ms < 1 {
		ms = 1
	}
	if ms < 100_000_000 {
		return strconv.FormatInt(ms, 10) + "m"
	}
	return strconv.FormatInt(min(ms/1000, 99_999_999), 10) + "S"
}

// sendGRPCHeader says whether a header (lower case) goes into the CheckRequest: all of them
// without allowed_headers, else those it matches; never those disallowed_headers matches.
func (c *Config) sendGRPCHeader(name string) bool {
	if c.disallowed.match(name) {
		return false
	}
	return c.allowed == nil || c.allowed.match(name)
}

// checkRequest builds the CheckRequest's AttributeContext (see the package doc).
func (c *Config) checkRequest(r *Request) *authv3.CheckRequest {
	hdrs := make(map[string]string, len(r.Header)+5)
	add := func(name, value string) {
		if c.sendGRPCHeader(name) {
			hdrs[name] = sanitize(value)
		}
	}
	add(":authority", r.Host)
	add(":method", r.Method)
	add(":path", r.Path)
	if r.Scheme != "" {
		add(":scheme", r.Scheme)
	}
	for k, vs := range r.Header {
		if len(vs) == 1 {
			add(strings.ToLower(k), vs[0])
		} else {
			add(strings.ToLower(k), strings.Join(vs, ","))
		}
	}
	if r.ContentLength > 0 {
		add("content-length", strconv.FormatInt(r.ContentLength, 10))
	}
	if r.BodyBuffered {
		hdrs[PartialBodyHeader] = strconv.FormatBool(r.PartialBody)
	}
	hr := &authv3.AttributeContext_HttpRequest{
		Id:       sanitize(r.ID),
		Method:   sanitize(r.Method),
		Headers:  hdrs,
		Path:     sanitize(r.Path),
		Host:     sanitize(r.Host),
		Scheme:   sanitize(r.Scheme),
		Size:     r.ContentLength,
		Protocol: r.Protocol,
	}
	if c.Body != nil && len(r.Body) > 0 {
		if c.Body.PackAsBytes {
			hr.RawBody = r.Body
		} else if utf8.Valid(r.Body) {
			hr.Body = string(r.Body)
		} else {
			hr.Body = sanitize(string(r.Body))
		}
	}
	ac := &authv3.AttributeContext{
		Source:      peer(r.Source, r.SourcePrincipal, r.Header.Get("X-Envoy-Downstream-Service-Cluster")),
		Destination: peer(r.Destination, r.DestinationPrincipal, ""),
		Request:     &authv3.AttributeContext_Request{Http: hr},
	}
	if !r.Time.IsZero() {
		ac.Request.Time = timestamppb.New(r.Time)
	}
	ac.MetadataContext = metadataContext(c.metadataNamespaces, r.Metadata)
	if c.includeTLSSession && r.TLS {
		ac.TlsSession = &authv3.AttributeContext_TLSSession{Sni: sanitize(r.SNI)}
	}
	return &authv3.CheckRequest{Attributes: ac}
}

func peer(addr netip.AddrPort, principal, service string) *authv3.AttributeContext_Peer {
	p := &authv3.AttributeContext_Peer{Principal: sanitize(principal), Service: sanitize(service)}
	if addr.IsValid() {
		p.Address = &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address:       addr.Addr().Unmap().String(),
			PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(addr.Port())},
		}}}
	}
	return p
}

// response reads and decodes the Check call's reply.
func (g *grpcClient) response(resp *http.Response) (*authv3.CheckResponse, error) {
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("the authorization service answered HTTP %d to a gRPC call", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/grpc") {
		return nil, fmt.Errorf("the authorization service answered content-type %q to a gRPC call", ct)
	}
	if err := grpcStatusErr(resp.Header); err != nil {
		return nil, err // a trailers-only reply
	}
	body, err := readAtMost(resp.Body, g.maxReceive+5)
	if err != nil {
		return nil, fmt.Errorf("reading the CheckResponse: %w", err)
	}
	if resp.Header.Get("Grpc-Status") == "" {
		if resp.Trailer.Get("Grpc-Status") == "" {
			return nil, errors.New("the Check call ended without a grpc-status")
		}
		if err := grpcStatusErr(resp.Trailer); err != nil {
			return nil, err
		}
	}
	return g.decode(body)
}

// decode decodes the body of a successful Check call: exactly one uncompressed CheckResponse of
// at most the receive limit.
func (g *grpcClient) decode(body []byte) (*authv3.CheckResponse, error) {
	msg, err := grpcMessage(body, g.maxReceive)
	if err != nil {
		return nil, fmt.Errorf("reading the CheckResponse: %w", err)
	}
	var cr authv3.CheckResponse
	if err := proto.Unmarshal(msg, &cr); err != nil {
		return nil, fmt.Errorf("decoding the CheckResponse: %w", err)
	}
	return &cr, nil
}

// fromGRPCBody interprets the body of a successful Check call (see decode).
func (c *Config) fromGRPCBody(body []byte) *Response {
	cr, err := c.grpc.decode(body)
	if err != nil {
		return errorResponse(err)
	}
	return c.fromCheckResponse(cr)
}

// grpcStatusErr returns the failure carried by h's grpc-status, nil for none or OK.
func grpcStatusErr(h http.Header) error {
	st := h.Get("Grpc-Status")
	if st == "" || st == "0" {
		return nil
	}
	msg, _ := url.PathUnescape(h.Get("Grpc-Message"))
	return fmt.Errorf("the Check call failed: grpc-status %s: %s", st, msg)
}

// grpcMessage returns the one message of a gRPC response body.
func grpcMessage(b []byte, limit int) ([]byte, error) {
	if len(b) < 5 {
		return nil, fmt.Errorf("%d bytes: no complete message", len(b))
	}
	if b[0] != 0 {
		return nil, fmt.Errorf("message flags %#x: compressed or unknown", b[0])
	}
	n := binary.BigEndian.Uint32(b[1:5])
	if uint64(n) > uint64(limit) {
		return nil, fmt.Errorf("message of %d bytes: %w of %d bytes", n, errTooLarge, limit)
	}
	if uint64(len(b)-5) != uint64(n) {
		return nil, fmt.Errorf("message of %d bytes in %d bytes of body: not exactly one message", n, len(b)-5)
	}
	return b[5:], nil
}

// fromCheckResponse interprets a CheckResponse.
func (c *Config) fromCheckResponse(cr *authv3.CheckResponse) *Response {
	var res *Response
	switch checkStatus(cr) {
	case StatusOK:
		ok := cr.GetOkResponse()
		res = &Response{Status: StatusOK}
		var bad1, bad2 bool
		res.RequestHeaders, bad1 = opsFromOptions(ok.GetHeaders(), true, c.ValidateMutations)
		res.ResponseHeaders, bad2 = opsFromOptions(ok.GetResponseHeadersToAdd(), false, c.ValidateMutations)
		res.RemoveHeaders = removals(ok.GetHeadersToRemove())
		for _, q := range ok.GetQueryParametersToSet() {
			if q.GetKey() == "" {
				bad1 = bad1 || c.ValidateMutations
				continue
			}
			res.QuerySet = append(res.QuerySet, QueryParam{Key: q.GetKey(), Value: q.GetValue()})
		}
		for _, k := range ok.GetQueryParametersToRemove() {
			if k != "" {
				res.QueryRemove = append(res.QueryRemove, k)
			}
		}
		if bad1 || bad2 {
			res = &Response{Status: StatusOK, Invalid: true}
		}
	case StatusError:
		e := cr.GetErrorResponse()
		res = &Response{Status: StatusError, Err: errors.New("the authorization service sent an error_response"),
			Body: c.cutBody(e.GetBody())}
		if e.GetStatus() != nil {
			res.Code = errorCode(e.GetStatus().GetCode())
		}
		res.ResponseHeaders, _ = opsFromOptions(e.GetHeaders(), false, false)
	default:
		d := cr.GetDeniedResponse()
		res = &Response{Status: StatusDenied, Code: 403, Body: c.cutBody(d.GetBody())}
		if d.GetStatus() != nil {
			res.Code = errorCode(d.GetStatus().GetCode())
		}
		res.ResponseHeaders, _ = opsFromOptions(d.GetHeaders(), false, false)
	}
	res.Metadata = checkMetadata(cr)
	return res
}

// checkStatus classifies a CheckResponse as Envoy's gRPC client does: status OK allows, an
// error_response is an error, anything else denies.
func checkStatus(cr *authv3.CheckResponse) Status {
	switch {
	case cr.GetStatus().GetCode() == 0:
		return StatusOK
	case cr.GetErrorResponse() != nil:
		return StatusError
	}
	return StatusDenied
}

// checkMetadata returns a CheckResponse's dynamic metadata (ok_response's deprecated one
// overrides it on an allowing reply), nil when empty.
func checkMetadata(cr *authv3.CheckResponse) *structpb.Struct {
	md := cr.GetDynamicMetadata()
	if checkStatus(cr) == StatusOK && cr.GetOkResponse().GetDynamicMetadata() != nil {
		md = cr.GetOkResponse().GetDynamicMetadata() // deprecated, but it overrides while it exists
	}
	if len(md.GetFields()) == 0 {
		return nil
	}
	return md
}
