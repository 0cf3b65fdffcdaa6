package extauthz

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// CheckPath is the gRPC method the gRPC service is called on.
const CheckPath = "/envoy.service.auth.v3.Authorization/Check"

// grpcRequest builds the gRPC service's Check call: one length-prefixed CheckRequest.
func (c *Config) grpcRequest(r *Request) (*http.Request, error) {
	msg, err := proto.Marshal(c.checkRequest(r))
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
	if c.Timeout > 0 {
		hdr["Grpc-Timeout"] = []string{grpcTimeout(c.Timeout.Milliseconds())}
	}
	for _, h := range c.initialMetadata {
		k := http.CanonicalHeaderKey(h.name)
		hdr[k] = append(hdr[k], h.value)
	}
	return &http.Request{
		Method:        http.MethodPost,
		URL:           &url.URL{Path: CheckPath},
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Header:        hdr,
		Host:          c.authority,
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
	if r.Metadata != nil {
		for _, ns := range c.metadataNamespaces {
			if s := r.Metadata(ns); s != nil {
				if ac.MetadataContext == nil {
					ac.MetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{}}
				}
				ac.MetadataContext.FilterMetadata[ns] = s
			}
		}
	}
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

// fromGRPCResponse reads and interprets the Check call's reply.
func (c *Config) fromGRPCResponse(resp *http.Response) *Response {
	if resp.StatusCode != http.StatusOK {
		return errorResponse(fmt.Errorf("the authorization service answered HTTP %d to a gRPC call", resp.StatusCode))
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/grpc") {
		return errorResponse(fmt.Errorf("the authorization service answered content-type %q to a gRPC call", ct))
	}
	if err := grpcStatusErr(resp.Header); err != nil {
		return errorResponse(err) // a trailers-only reply
	}
	body, err := readAtMost(resp.Body, c.maxReceive+5)
	if err != nil {
		return errorResponse(fmt.Errorf("reading the CheckResponse: %w", err))
	}
	if resp.Header.Get("Grpc-Status") == "" {
		if resp.Trailer.Get("Grpc-Status") == "" {
			return errorResponse(errors.New("the Check call ended without a grpc-status"))
		}
		if err := grpcStatusErr(resp.Trailer); err != nil {
			return errorResponse(err)
		}
	}
	return c.fromGRPCBody(body)
}

// fromGRPCBody interprets the body of a successful Check call: exactly one uncompressed
// CheckResponse of at most the receive limit.
func (c *Config) fromGRPCBody(body []byte) *Response {
	msg, err := grpcMessage(body, c.maxReceive)
	if err != nil {
		return errorResponse(fmt.Errorf("reading the CheckResponse: %w", err))
	}
	var cr authv3.CheckResponse
	if err := proto.Unmarshal(msg, &cr); err != nil {
		return errorResponse(fmt.Errorf("decoding the CheckResponse: %w", err))
	}
	return c.fromCheckResponse(&cr)
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
	md := cr.GetDynamicMetadata()
	var res *Response
	switch {
	case cr.GetStatus().GetCode() == 0:
		ok := cr.GetOkResponse()
		res = &Response{Status: StatusOK}
		if ok.GetDynamicMetadata() != nil {
			md = ok.GetDynamicMetadata() // deprecated, but it overrides while it exists
		}
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
	case cr.GetErrorResponse() != nil:
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
	if len(md.GetFields()) > 0 {
		res.Metadata = md
	}
	return res
}
