package l7

import (
	"bytes"
	"unsafe"

	"github.com/strait-mesh/strait/proxy/httpmsg"
)

// Hop-by-hop fields, as Envoy handles them.
//
// Requests: Envoy's HTTP/1 codec removes the fields a non-upgrade request's Connection field
// nominates as the request arrives, before the connection manager adds its own fields
// (x-forwarded-for, x-request-id, x-envoy-external-address...) and before any filter, so a
// client cannot nominate those away (sanitizeConnection). The router then removes only the
// fixed hop-by-hop names and reduces TE to "trailers" (removeRequestHopByHop).
//
// Responses: the upstream's Connection-nominated fields and the fixed names but
// Proxy-Authenticate, which is addressed to the client, are removed (removeResponseHopByHop),
// and so is Trailer (copyResponseHeader). Envoy removes only the fixed names (and passes
// Proxy-Authenticate); removing the nominated fields too is deliberate, as they describe the
// upstream connection, not the response, and so is removing Trailer, which the codec writes
// again for the trailers it actually sends.

// requestHopByHop are the fixed names removed from every forwarded request;
// removeRequestHopByHop names them too.
var requestHopByHop = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade", "Proxy-Authenticate"}

// responseHopByHop are the fixed names removed from every upstream response. Proxy-Authenticate
// is not one: Envoy passes it, as RFC 9110 (section 11.7.1) lets a proxy do.
// copyResponseHeader names them too.
var responseHopByHop = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade"}

// maxNominated is the number of Connection tokens from which Envoy's HTTP/1 codec rejects a
// request; maxNominatedTE the length of a nominated TE value from which it does.
const (
	maxNominated   = 10
	maxNominatedTE = 256
)

// connectionEntry applies an HTTP/1.x request's Connection field as the request arrives, as
// Envoy's HTTP/1 codec does: an upgrade's is left to the router; an h2c upgrade offer, which
// is answered in HTTP/1.1, loses HTTP2-Settings; otherwise sanitizeConnection. False means
// the request is to be refused with 400.
func connectionEntry(s *Stream) bool {
	hdr := &s.req.Header
	if !s.HTTP1() || hdr.Index("Connection", 0) < 0 {
		return true
	}
	if connectionHas(hdr, "upgrade") {
		if upgradeType(s) != "" {
			return true
		}
		if v, _ := hdr.Value("Upgrade"); httpmsg.EqualFold(v, "h2c") {
			hdr.Del("Http2-Settings")
		}
	}
	return sanitizeConnection(hdr)
}

// sanitizeConnection applies the Connection field of an HTTP/1.x request that is not an
// upgrade, as Envoy's HTTP/1 codec does: each token but close, keep-alive, upgrade,
// http2-settings and connection itself removes the field it names; a nominated TE is reduced
// to "trailers" when it offers trailers and removed otherwise. It returns false, leaving the
// request to be refused with 400, when the Connection fields (joined as one list) have
// maxNominated tokens or more, or a token names x-forwarded-for, x-forwarded-host or
// x-forwarded-proto, starts with ':', or names TE while TE is maxNominatedTE bytes or longer.
// A request without a nominated field costs a scan of its Connection values and no allocation.
func sanitizeConnection(h *httpmsg.Header) bool {
	// Envoy counts the non-empty comma-separated pieces, untrimmed.
	n := 0
	for i := h.Index("Connection", 0); i >= 0; i = h.Index("Connection", i+1) {
		_, v := h.Field(i)
		for len(v) > 0 {
			var piece []byte
			piece, v = cutComma(v)
			if len(piece) > 0 {
				n++
			}
		}
	}
	if n >= maxNominated {
		return false
	}
	// The tokens alias the header's storage, which deleting fields leaves in place.
	var toks [maxNominated - 1][]byte
	n = 0
	for i := h.Index("Connection", 0); i >= 0; i = h.Index("Connection", i+1) {
		_, v := h.Field(i)
		for len(v) > 0 {
			var piece []byte
			piece, v = cutComma(v)
			if t := bytes.Trim(piece, " \t"); len(t) > 0 {
				toks[n] = t
				n++
			}
		}
	}
	for _, t := range toks[:n] {
		switch {
		case httpmsg.EqualFold(t, "close"), httpmsg.EqualFold(t, "keep-alive"), httpmsg.EqualFold(t, "upgrade"),
			httpmsg.EqualFold(t, "http2-settings"), httpmsg.EqualFold(t, "connection"):
			// Connection options, not fields (and Connection itself goes in the router).
		case t[0] == ':', httpmsg.EqualFold(t, "x-forwarded-for"), httpmsg.EqualFold(t, "x-forwarded-host"),
			httpmsg.EqualFold(t, "x-forwarded-proto"):
			// Removing these would hide where the request came from: refused, as in Envoy.
			return false
		case httpmsg.EqualFold(t, "te"):
			if !reduceNominatedTE(h) {
				return false
			}
		default:
			delNamed(h, t)
		}
	}
	return true
}

// reduceNominatedTE makes a nominated TE "trailers" when one of its tokens is trailers (ASCII
// case-insensitive), and removes it otherwise. It returns false when TE, its fields joined
// with ",", is maxNominatedTE bytes or longer.
func reduceNominatedTE(h *httpmsg.Header) bool {
	size, trailers := -1, false
	for i := h.Index("Te", 0); i >= 0; i = h.Index("Te", i+1) {
		_, v := h.Field(i)
		size += len(v) + 1
		trailers = trailers || httpmsg.HasToken(v, "trailers")
	}
	switch {
	case size < 0:
		return true // not present
	case size >= maxNominatedTE:
		return false
	case trailers:
		h.Set("Te", "trailers")
	default:
		h.Del("Te")
	}
	return true
}

// delNamed deletes the fields named name, equal but for the case of ASCII letters
// (httpmsg.EqualFold): unlike bytes.EqualFold no other character folds, so a token such as
// "x-forwarded-ho\u017ft" (long s) does not name X-Forwarded-Host, which sanitizeConnection
// refuses to see nominated.
func delNamed(h *httpmsg.Header, name []byte) {
	ns := unsafe.String(unsafe.SliceData(name), len(name))
	for i := 0; i < h.Len(); {
		if k, _ := h.Field(i); httpmsg.EqualFold(k, ns) {
			h.DelAt(i)
			continue
		}
		i++
	}
}

// cutComma splits v at its first comma: the piece before it and the rest after it.
func cutComma(v []byte) (piece, rest []byte) {
	if i := bytes.IndexByte(v, ','); i >= 0 {
		return v[:i], v[i+1:]
	}
	return v, nil
}

// connectionHas reports whether a Connection field of h has token (ASCII case-insensitive).
func connectionHas(h *httpmsg.Header, token string) bool {
	for i := h.Index("Connection", 0); i >= 0; i = h.Index("Connection", i+1) {
		if _, v := h.Field(i); httpmsg.HasToken(v, token) {
			return true
		}
	}
	return false
}

// removeRequestHopByHop removes the fixed hop-by-hop names from a request on its way upstream
// (the nominated ones went at entry: sanitizeConnection) and sanitizes TE (sanitizeTE). Each
// name is looked up first (Index answers most absent names from the lengths of the names
// present) and deleted only when present.
func removeRequestHopByHop(h *httpmsg.Header) {
	// One lookup in a loop, each mostly ending at the Header's name-length bit test: less
	// code on the request's path than one inlined lookup per name.
	for _, k := range requestHopByHop {
		if h.Index(k, 0) >= 0 {
			h.Del(k)
		}
	}
	sanitizeTE(h)
}

// removeResponseHopByHop removes from an upstream response the fields its Connection field
// nominates, the names of responseHopByHop, and TE as sanitizeTE does.
func removeResponseHopByHop(h *httpmsg.Header) {
	// A token never names Connection itself (skipped), so the Connection fields stay; the
	// values alias the header's storage, which deleting fields leaves in place.
	for k, i := 0, h.Index("Connection", 0); i >= 0; k++ {
		_, v := h.Field(i)
		for len(v) > 0 {
			var piece []byte
			piece, v = cutComma(v)
			if t := bytes.Trim(piece, " \t"); len(t) > 0 && !httpmsg.EqualFold(t, "connection") {
				delNamed(h, t)
			}
		}
		// The deletions may have moved the fields: find the next Connection field afresh.
		i = -1
		for j := 0; j <= k+1; j++ {
			if i = h.Index("Connection", i+1); i < 0 {
				break
			}
		}
	}
	for _, k := range responseHopByHop {
		if h.Index(k, 0) >= 0 {
			h.Del(k)
		}
	}
	sanitizeTE(h)
}

// sanitizeTE keeps TE as "trailers" when one of its comma-separated items, trimmed, is
// "trailers" (ASCII case-insensitive: transfer-coding names are; Envoy compares exactly), and
// removes it otherwise: "trailersx" and "trailers;q=0.5" do not offer trailers. A request with
// the usual single "trailers" field is left untouched.
func sanitizeTE(h *httpmsg.Header) {
	i := h.Index("Te", 0)
	if i < 0 {
		return
	}
	keep, fields := false, 0
	for ; i >= 0; i = h.Index("Te", i+1) {
		fields++
		if _, v := h.Field(i); !keep && httpmsg.HasToken(v, "trailers") {
			keep = true
		}
	}
	if !keep {
		h.Del("Te")
		return
	}
	if v, _ := h.Value("Te"); fields == 1 && string(v) == "trailers" {
		return
	}
	h.Set("Te", "trailers")
}
