package l7

import (
	"bytes"
	"net/netip"
	"strconv"
	"strings"
	"unsafe"

	"github.com/strait-mesh/strait/proxy/httpmsg"
)

// Edge trust: which downstream requests may steer the proxy with x-envoy-* control headers.
//
// The rules are Envoy's (source/common/http/conn_manager_utility.cc, mutateRequestHeaders and
// cleanInternalHeaders; the "HTTP header sanitizing" page of Envoy's docs):
//
//   - A request is internal only when the trusted client address is an internal address AND
//     the address checks are allowed: with use_remote_address the request must arrive without
//     x-forwarded-for (the client is the connection's peer, or the xff_num_trusted_hops-th
//     address from the right of XFF); without use_remote_address XFF must hold exactly one
//     address and xff_num_trusted_hops must be 0 (no XFF: never internal).
//   - Internal addresses are those of internal_address_config.cidr_ranges. Without
//     internal_address_config no address is internal: the old RFC 1918 / loopback default
//     was put behind envoy.reloadable_features.explicit_internal_address_config (CVE-2024-45806,
//     ISTIO-SECURITY-2024-006), trusted nothing by default from Envoy 1.33 (the API's warning on
//     internal_address_config), and its legacy path was removed in Envoy 1.36.
//   - x-envoy-internal is removed from every request and set to "true" on internal ones.
//   - A request that is not internal loses the control headers in untrustedHeaders (and the
//     route's internal_only_headers); the router therefore honours x-envoy-upstream-rq-timeout-ms,
//     x-envoy-retry-on and friends only from internal clients.
//   - An edge request (use_remote_address and not internal) also loses the headers in
//     edgeOnlyHeaders, gets x-envoy-external-address, and a new x-request-id unless
//     preserve_external_request_id is set.
//
// Beyond Envoy, strait-proxy hardens edge requests (see cleanEntryHeaders): every x-envoy-* request
// header except x-envoy-external-address (which the proxy itself sets) is removed — the x-envoy-
// namespace belongs to the mesh, and no client outside it has a reason to send one — and so is an
// RFC 7239 Forwarded header unless xff_num_trusted_hops declares a trusted proxy in front (Envoy
// passes Forwarded through untouched: it neither writes nor reads it, envoyproxy/envoy#5889 and
// #31198; left as is, a client-chosen for=/proto=/host= would reach the app as if the proxy had
// vouched for it). Istio's metadata exchange headers (x-envoy-peer-metadata and
// x-envoy-peer-metadata-id) are removed from every request: in Istio the metadata exchange filter
// consumes them, and strait-proxy has no such filter, so any value a workload would see is
// forged.

// untrustedHeaders are removed from every request that is not internal (Envoy's
// cleanInternalHeaders, plus x-envoy-upstream-stream-duration-ms from the documented list).
var untrustedHeaders = []string{
	"X-Envoy-Retriable-Status-Codes",
	"X-Envoy-Retriable-Header-Names",
	"X-Envoy-Retry-On",
	"X-Envoy-Retry-Grpc-On",
	"X-Envoy-Max-Retries",
	"X-Envoy-Upstream-Alt-Stat-Name",
	"X-Envoy-Upstream-Rq-Timeout-Ms",
	"X-Envoy-Upstream-Rq-Per-Try-Timeout-Ms",
	"X-Envoy-Upstream-Rq-Timeout-Alt-Response",
	"X-Envoy-Upstream-Stream-Duration-Ms",
	"X-Envoy-Expected-Rq-Timeout-Ms",
	"X-Envoy-Force-Trace",
	"X-Envoy-Ip-Tags",
	"X-Envoy-Original-Url",
	"X-Envoy-Hedge-On-Per-Try-Timeout",
}

// edgeOnlyHeaders are removed from edge requests only (Envoy's cleanInternalHeaders with
// edge_request). cleanEntryHeaders removes them with the rest of the x-envoy- namespace; the list
// documents Envoy's minimum.
var edgeOnlyHeaders = []string{
	"X-Envoy-Decorator-Operation",
	"X-Envoy-Downstream-Service-Cluster",
	"X-Envoy-Downstream-Service-Node",
}

// peerMetadataHeaders are Istio's metadata exchange headers, removed from every request.
var peerMetadataHeaders = []string{"X-Envoy-Peer-Metadata", "X-Envoy-Peer-Metadata-Id"}

// MaxHeaderRetries bounds the number of retries an x-envoy-max-retries header can ask for.
//
// Envoy lets x-envoy-max-retries from an internal client replace the route's num_retries with
// no bound of its own: only the cluster's circuit breakers (max_retries, 3 concurrent retries by
// default) and retry budget limit retries, and both count retries in flight, not the retries of
// one request, so a single request asking for 100 retries gets them one after the other.
// strait-proxy caps the header at max(MaxHeaderRetries, the route's num_retries): a client may
// lower the operator's retry count or raise it up to 10, never beyond what the operator
// configured when that is more. The circuit breaker and budget still apply on top.
const MaxHeaderRetries = 10

// headerRetryCap returns the largest retry count x-envoy-max-retries may set on a route whose
// policy allows routeRetries.
func headerRetryCap(routeRetries int) int {
	if routeRetries > MaxHeaderRetries {
		return routeRetries
	}
	return MaxHeaderRetries
}

// clientAddress is the result of Envoy's trusted client address determination.
type clientAddress struct {
	// addr is the trusted client address, invalid when none could be found (no or bad XFF
	// without use_remote_address).
	addr netip.AddrPort
	// checkable reports whether the address may be tested for being internal.
	checkable bool
}

// trustedClient determines the trusted client address of a request whose connection peer is
// peer, from the request's x-forwarded-for fields in hdr (before the proxy appends to them).
func (h *Handler) trustedClient(peer netip.AddrPort, hdr *httpmsg.Header) clientAddress {
	if h.useRemoteAddress {
		c := clientAddress{addr: peer, checkable: !hdr.Has(xffName)}
		if h.xffTrustedHops > 0 {
			if a, _, ok := xffAddr(hdr, h.xffTrustedHops-1); ok {
				c.addr = netip.AddrPortFrom(a, 0)
			}
		}
		return c
	}
	if hdr.Index(xffName, 0) < 0 {
		return clientAddress{} // no list: xffAddr finds no entry
	}
	a, n, ok := xffAddr(hdr, h.xffTrustedHops)
	if !ok {
		return clientAddress{}
	}
	return clientAddress{addr: netip.AddrPortFrom(a, 0), checkable: n == 1 && h.xffTrustedHops == 0}
}

// xffName is the x-forwarded-for field's name.
const xffName = "X-Forwarded-For"

// Names the connection manager adds on most requests, checked once (httpmsg.Name).
var (
	xffHName              = httpmsg.MustName(xffName)
	xfccHName             = httpmsg.MustName(xfccName)
	nameEnvoyInternal     = httpmsg.MustName("X-Envoy-Internal")
	nameForwardedProto    = httpmsg.MustName("X-Forwarded-Proto")
	nameRequestID         = httpmsg.MustName("X-Request-Id")
	nameExpectedRqTimeout = httpmsg.MustName("X-Envoy-Expected-Rq-Timeout-Ms")
	nameUpstreamSvcTime   = httpmsg.MustName("X-Envoy-Upstream-Service-Time")
	nameServer            = httpmsg.MustName("Server")
)

// xffAddr returns the address skip hops from the right of the x-forwarded-for list (the
// comma-separated entries of the x-forwarded-for fields of hdr, in order, an empty field
// skipped as Envoy's codec skips it when it coalesces a repeated field) and how many entries
// the list has. ok is false when the list is too short or the entry, trimmed of white space,
// is not an IP address. It reads the fields in place: nothing is allocated.
func xffAddr(hdr *httpmsg.Header, skip int) (a netip.Addr, n int, ok bool) {
	for i := hdr.Index(xffName, 0); i >= 0; i = hdr.Index(xffName, i+1) {
		_, v := hdr.Field(i)
		n += xffEntries(v)
	}
	if skip >= n {
		return netip.Addr{}, n, false
	}
	want := n - 1 - skip // the entry's index from the left
	for i := hdr.Index(xffName, 0); i >= 0; i = hdr.Index(xffName, i+1) {
		_, v := hdr.Field(i)
		if c := xffEntries(v); want >= c {
			want -= c
			continue
		}
		for ; want > 0; want-- {
			v = v[bytes.IndexByte(v, ',')+1:]
		}
		if j := bytes.IndexByte(v, ','); j >= 0 {
			v = v[:j]
		}
		v = bytes.TrimSpace(v)
		// ParseAddr keeps nothing of its argument (an IPv6 zone is copied into its handle), so
		// the header's bytes are lent to it.
		a, err := netip.ParseAddr(unsafe.String(unsafe.SliceData(v), len(v)))
		return a, n, err == nil
	}
	return netip.Addr{}, n, false
}

// xffEntries returns how many comma-separated entries the field value v has; an empty value
// has none (the field is skipped).
func xffEntries(v []byte) int {
	if len(v) == 0 {
		return 0
	}
	n := 1
	for _, b := range v {
		if b == ',' {
			n++
		}
	}
	return n
}

// The request classes of cleanEntryHeaders.
const (
	entryInternal  = iota // internal: x-envoy-internal and the peer metadata headers go
	entryEdge             // edge: every x-envoy-* header goes, and Forwarded (unless trusted hops)
	entryUntrusted        // neither: x-envoy-internal, peer metadata and untrustedHeaders go
)

// cleanEntryHeaders removes, in one pass over the fields, what the connection manager strips
// from a request of class (entryInternal, entryEdge or entryUntrusted) on entry: x-envoy-internal
// and Istio's metadata exchange headers from every request; from an edge request every
// x-envoy-* header (x-envoy-external-address is set afterwards by the caller, and the
// edgeOnlyHeaders are among them) and Forwarded unless trustedHops says a trusted proxy in
// front wrote it; from one that is neither edge nor internal the untrustedHeaders. Most
// requests carry no x-envoy-* field, and then each field costs one prefix test. It reports
// whether an x-envoy-* field is left.
func cleanEntryHeaders(hdr *httpmsg.Header, class, trustedHops int) (envoyLeft bool) {
	if !hdr.MayHaveEnvoyNames() {
		// No x-envoy-* field: Forwarded is all an edge request may lose.
		if class == entryEdge && trustedHops == 0 {
			hdr.Del("Forwarded")
		}
		return false
	}
	for i := 0; i < hdr.Len(); {
		k, _ := hdr.Field(i)
		if !httpmsg.IsEnvoyName(k) {
			// Forwarded is the one field outside the x-envoy- namespace edge requests lose.
			if class == entryEdge && trustedHops == 0 && httpmsg.EqualFold(k, "Forwarded") {
				hdr.DelAt(i)
				continue
			}
		} else if dropEnvoyOnEntry(k, class) {
			hdr.DelAt(i)
			continue
		} else {
			envoyLeft = true
		}
		i++
	}
	return envoyLeft
}

// dropEnvoyOnEntry reports whether cleanEntryHeaders removes the x-envoy-* field named k.
func dropEnvoyOnEntry(k []byte, class int) bool {
	switch class {
	case entryEdge:
		return true
	case entryUntrusted:
		if oneOf(k, untrustedHeaders) {
			return true
		}
	}
	return httpmsg.EqualFold(k, "X-Envoy-Internal") || oneOf(k, peerMetadataHeaders)
}

// oneOf reports whether name equals one of names (ASCII case-insensitive).
func oneOf(name []byte, names []string) bool {
	for _, n := range names {
		if len(n) == len(name) && httpmsg.EqualFold(name, n) {
			return true
		}
	}
	return false
}

// retriableStatusCodes parses x-envoy-retriable-status-codes ("503,504"); invalid entries are
// ignored, as in Envoy.
func retriableStatusCodes(v string) []int {
	var out []int
	for _, p := range strings.Split(v, ",") {
		if c, err := strconv.Atoi(strings.TrimSpace(p)); err == nil && c >= 100 && c <= 599 {
			out = append(out, c)
		}
	}
	return out
}
