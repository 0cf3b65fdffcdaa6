package extauthz

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/strait-mesh/strait/proxy/grpcunary"
	"github.com/strait-mesh/strait/proxy/xdsfield"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	authv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/service/auth/v3"
)

// CheckPath is the gRPC method the gRPC service is called on.
const CheckPath = "/envoy.service.auth.v3.Authorization/Check"

// compileGRPCClient compiles a GrpcService with an envoy_grpc target (see package grpcunary),
// its timeout (DefaultTimeout when unset) and initial_metadata; field names it in errors.
// Fields it does not implement (google_grpc, retry_policy...) are *xdsfield.UnsupportedError.
func compileGRPCClient(field string, gs *corev3.GrpcService) (grpcunary.Client, error) {
	if err := xdsfield.Check(gs, field, "envoy_grpc", "timeout", "initial_metadata"); err != nil {
		return grpcunary.Client{}, err
	}
	g, err := grpcunary.CompileEnvoyGRPC(field, gs)
	if err != nil {
		return g, err
	}
	g.Timeout = DefaultTimeout
	if t := gs.GetTimeout(); t != nil {
		if err := t.CheckValid(); err != nil {
			return g, fmt.Errorf("%s.timeout: %w", field, err)
		}
		g.Timeout = t.AsDuration()
	}
	if g.Timeout < 0 {
		return g, fmt.Errorf("%s.timeout: negative", field)
	}
	md, err := compileHeaders(field+".initial_metadata", gs.GetInitialMetadata())
	for _, h := range md {
		g.Metadata = append(g.Metadata, [2]string{http.CanonicalHeaderKey(h.name), h.value})
	}
	return g, err
}

// callCheck sends cr to the authorization service through rt within g's timeout and ctx, and
// returns its CheckResponse. Any failure (transport, HTTP status, grpc-status, oversized or
// malformed reply) is an error.
func callCheck(ctx context.Context, g *grpcunary.Client, rt RoundTripper, cr *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	var resp authv3.CheckResponse
	if err := g.Call(ctx, rt, CheckPath, cr, &resp); err != nil {
		return nil, fmt.Errorf("the authorization service: %w", err)
	}
	return &resp, nil
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

// fromGRPCBody interprets the body of a successful Check call: exactly one uncompressed
// CheckResponse of at most the receive limit.
func (c *Config) fromGRPCBody(body []byte) *Response {
	var cr authv3.CheckResponse
	if err := grpcunary.Decode(body, c.grpc.MaxReceive, &cr); err != nil {
		return errorResponse(err)
	}
	return c.fromCheckResponse(&cr)
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
