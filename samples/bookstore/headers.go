package bookstore

import (
	"crypto/rand"
	"fmt"
	"net/http"
)

// PropagatedHeaders are the request headers every service copies from the request it serves to
// the requests it makes upstream. A mesh's proxies create the spans and the request id, but only
// the application can carry them from an inbound request to its outbound ones: without this,
// every hop starts a new trace. The list is the one Istio's bookinfo productpage forwards: request
// id, W3C trace context, Zipkin B3 (multi and single header), OpenTracing, Datadog, Google Cloud,
// gRPC and SkyWalking trace headers, baggage, and the user identity headers that header-based
// routing matches on (end-user, x-user), plus cookie, authorization and user-agent.
var PropagatedHeaders = []string{
	"X-Request-Id",
	"Traceparent",
	"Tracestate",
	"Baggage",
	"B3",
	"X-B3-Traceid",
	"X-B3-Spanid",
	"X-B3-Parentspanid",
	"X-B3-Sampled",
	"X-B3-Flags",
	"X-Ot-Span-Context",
	"X-Datadog-Trace-Id",
	"X-Datadog-Parent-Id",
	"X-Datadog-Sampling-Priority",
	"X-Cloud-Trace-Context",
	"Grpc-Trace-Bin",
	"Sw8",
	"End-User",
	"X-User",
	"User-Agent",
	"Cookie",
	"Authorization",
}

// Response headers naming the service and version that answered.
const (
	// HeaderService is the name of the service that produced a response ("reviews").
	HeaderService = "X-Bookstore-Service"
	// HeaderVersion is its version ("v2").
	HeaderVersion = "X-Bookstore-Version"
	// HeaderVersions, set by web only, lists every service that took part in a page and the version
	// that answered, sorted by service: "details=v1,ratings=v1,reviews=v2,web=v1".
	HeaderVersions = "X-Bookstore-Versions"
	// HeaderCallers, set by web only, lists for every service that took part in a page who called
	// it, as its sidecar verified the caller's certificate: "details=spiffe://cluster.local/ns/
	// default/sa/web,...". A plaintext hop has no entry.
	HeaderCallers = "X-Bookstore-Callers"
)

// propagate copies PropagatedHeaders from the inbound request in to the outbound request out.
// Multi-valued headers keep every value.
func propagate(in, out *http.Request) {
	for _, h := range PropagatedHeaders {
		if v := in.Header.Values(h); len(v) > 0 {
			out.Header[http.CanonicalHeaderKey(h)] = append([]string(nil), v...)
		}
	}
}

// newRequestID returns a random UUID (version 4), the form Envoy uses for x-request-id. The
// frontend uses it when a request arrives without one (no mesh in front of it).
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
