package l7

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/strait-mesh/strait/proxy/httpmsg"
)

// The one-pass header removals (cleanEntryHeaders, removeRequestHopByHop,
// removeResponseHopByHop) against the one-Del-per-name forms they replace, kept here as the
// reference.

func refSanitizeUntrusted(hdr *httpmsg.Header) {
	for _, k := range untrustedHeaders {
		hdr.Del(k)
	}
}

func refSanitizeEdge(hdr *httpmsg.Header, trustedHops int) {
	for i := 0; i < hdr.Len(); i++ {
		if k, _ := hdr.Field(i); len(k) > len("X-Envoy-") && httpmsg.EqualFold(k[:len("X-Envoy-")], "X-Envoy-") {
			hdr.DelAt(i)
			i--
		}
	}
	for _, k := range edgeOnlyHeaders {
		hdr.Del(k)
	}
	if trustedHops == 0 {
		hdr.Del("Forwarded")
	}
}

func refCleanEntry(hdr *httpmsg.Header, class, trustedHops int) {
	hdr.Del("X-Envoy-Internal")
	for _, k := range peerMetadataHeaders {
		hdr.Del(k)
	}
	switch class {
	case entryEdge:
		refSanitizeEdge(hdr, trustedHops)
	case entryUntrusted:
		refSanitizeUntrusted(hdr)
	}
}

// refSanitizeTE keeps "TE: trailers" when an item of TE, trimmed, is trailers.
func refSanitizeTE(h *httpmsg.Header) {
	if h.Has("Te") {
		keep := false
		for i := h.Index("Te", 0); i >= 0; i = h.Index("Te", i+1) {
			_, v := h.Field(i)
			for _, item := range strings.Split(string(v), ",") {
				if strings.EqualFold(strings.Trim(item, " \t"), "trailers") {
					keep = true
				}
			}
		}
		if keep {
			h.Set("Te", "trailers")
		} else {
			h.Del("Te")
		}
	}
}

func refRemoveRequestHopByHop(h *httpmsg.Header) {
	for _, k := range requestHopByHop {
		h.Del(k)
	}
	refSanitizeTE(h)
}

func refRemoveResponseHopByHop(h *httpmsg.Header) {
	if h.Has("Connection") {
		for _, v := range headerValues(h, "Connection") {
			for _, f := range strings.Split(v, ",") {
				if f = strings.Trim(f, " \t"); f != "" {
					h.Del(f)
				}
			}
		}
	}
	for _, k := range responseHopByHop {
		h.Del(k)
	}
	refSanitizeTE(h)
}

// headerPool is what the random headers are drawn from: every name the removals know, in
// other cases, and ordinary ones.
var headerPool = func() []string {
	names := []string{"Host", "Content-Type", "Accept", "User-Agent", "X-Request-Id", "Forwarded",
		"X-Forwarded-For", "Te", "TE", "x-envoy-internal", "X-Envoy-Foo", "X-Envoy-", "X-Envoyx",
		"X-Custom", "Connection", "keep-alive", "PROXY-CONNECTION", "transfer-encoding", "upgrade",
		"Proxy-Authenticate", "Proxy-Authorization", "X-Envoy-External-Address", "X-Envoy-Decorator-Operation"}
	names = append(names, untrustedHeaders...)
	names = append(names, edgeOnlyHeaders...)
	names = append(names, peerMetadataHeaders...)
	names = append(names, requestHopByHop...)
	for _, n := range append([]string(nil), names...) {
		names = append(names, strings.ToLower(n), strings.ToUpper(n))
	}
	return names
}()

var valuePool = []string{"1", "true", "trailers", "Trailers, deflate", "gzip", "x-custom, close",
	"Upgrade", "keep-alive", "te", "X-Custom,  Accept ,", "", "trailersx", "trailers;q=0.5", " trailers ,gzip",
	"connection, x-custom", "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t,x-custom,accept"}

func randomHeader(r *rand.Rand) *httpmsg.Header {
	var h httpmsg.Header
	for n := r.IntN(12); n > 0; n-- {
		h.Add(headerPool[r.IntN(len(headerPool))], valuePool[r.IntN(len(valuePool))])
	}
	return &h
}

func dumpHeader(h *httpmsg.Header) string {
	var b strings.Builder
	for i := 0; i < h.Len(); i++ {
		k, v := h.Field(i)
		fmt.Fprintf(&b, "%s: %s\n", k, v)
	}
	return b.String()
}

func TestCleanEntryHeadersMatchesDels(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 20000; n++ {
		in := randomHeader(r)
		class, hops := r.IntN(3), r.IntN(2)
		var got, want httpmsg.Header
		got.CopyFrom(in)
		want.CopyFrom(in)
		cleanEntryHeaders(&got, class, hops)
		refCleanEntry(&want, class, hops)
		if !got.Equal(&want) {
			t.Fatalf("class %d, hops %d, fields:\n%sone pass:\n%sone Del per name:\n%s", class, hops,
				dumpHeader(in), dumpHeader(&got), dumpHeader(&want))
		}
	}
}

func TestRemoveHopByHopMatchesDels(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for n := 0; n < 40000; n++ {
		in := randomHeader(r)
		remove, ref := removeRequestHopByHop, refRemoveRequestHopByHop
		if n%2 == 1 {
			remove, ref = removeResponseHopByHop, refRemoveResponseHopByHop
		}
		var got, want httpmsg.Header
		got.CopyFrom(in)
		want.CopyFrom(in)
		remove(&got)
		ref(&want)
		if !got.Equal(&want) {
			t.Fatalf("response %v, fields:\n%sone pass:\n%sone Del per name:\n%s", n%2 == 1, dumpHeader(in), dumpHeader(&got), dumpHeader(&want))
		}
	}
}

func TestHasEnvoyField(t *testing.T) {
	for _, c := range []struct {
		names []string
		want  bool
	}{
		{nil, false},
		{[]string{"Host", "Accept"}, false},
		{[]string{"X-Envoy-"}, false},
		{[]string{"Host", "x-envoy-retry-on"}, true},
		{[]string{"X-ENVOY-MAX-RETRIES", "Host"}, true},
		{[]string{"X-Envoyz-Foo"}, false},
	} {
		var h httpmsg.Header
		for _, n := range c.names {
			h.Add(n, "1")
		}
		if got := hasEnvoyField(&h); got != c.want {
			t.Errorf("hasEnvoyField(%q) = %v, want %v", c.names, got, c.want)
		}
	}
}

// validRequestID reports whether id is at most 256 bytes of visible ASCII, as a generated
// request id must be.
func validRequestID(id []byte) bool {
	if len(id) > 256 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// refPutUUIDFrom is putUUID's former form (bytes, then encoding/hex per group).
func refPutUUIDFrom(out *[uuidLen]byte, a, c uint64) {
	var b [16]byte
	for i := 0; i < 8; i++ {
		b[i] = byte(a >> (8 * i))
		b[8+i] = byte(c >> (8 * i))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:])
}

func TestPutUUIDFrom(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for n := 0; n < 10000; n++ {
		a, c := r.Uint64(), r.Uint64()
		if n == 0 {
			a, c = 0, 0
		} else if n == 1 {
			a, c = ^uint64(0), ^uint64(0)
		}
		var got, want [uuidLen]byte
		putUUIDFrom(&got, a, c)
		refPutUUIDFrom(&want, a, c)
		if got != want {
			t.Fatalf("%x %x: %s, want %s", a, c, got[:], want[:])
		}
		if !validRequestID(got[:]) {
			t.Fatalf("%s is not a valid request id", got[:])
		}
	}
}

func TestCopyResponseHeaderMatchesDels(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	pool := append([]string{"Trailer", "trailer", "TRAILER"}, headerPool...)
	for n := 0; n < 20000; n++ {
		var src, pre httpmsg.Header
		for k := r.IntN(10); k > 0; k-- {
			src.Add(pool[r.IntN(len(pool))], valuePool[r.IntN(len(valuePool))])
		}
		if r.IntN(4) == 0 {
			pre.Add(pool[r.IntN(len(pool))], "pre")
		}
		var got, want httpmsg.Header
		got.CopyFrom(&pre)
		want.CopyFrom(&pre)
		copyResponseHeader(&got, &src)
		for i := 0; i < src.Len(); i++ {
			want.AddBytes(src.Field(i))
		}
		refRemoveResponseHopByHop(&want)
		want.Del("Trailer")
		if !got.Equal(&want) {
			t.Fatalf("before:\n%supstream:\n%scopied:\n%swant:\n%s", dumpHeader(&pre), dumpHeader(&src),
				dumpHeader(&got), dumpHeader(&want))
		}
	}
}

// TestNoEnvoyFieldsTracksEdits checks the router's shortcut past its control headers: set only
// when decorateRequest left no x-envoy-* field on a request that is neither internal nor edge,
// and cleared by every way filters add request fields.
func TestNoEnvoyFieldsTracksEdits(t *testing.T) {
	h, err := New(inlineHCM(oneVhost(fwdRoute("r", pfx("/"), toCluster("c")))), &testEnv{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	decorated := func(names ...string) *Stream {
		s := &Stream{}
		s.req, s.h, s.scheme = &httpmsg.Request{}, h, "http"
		for _, n := range names {
			s.req.Header.Add(n, "1")
		}
		h.decorateRequest(s, &connState{})
		return s
	}
	if s := decorated("Accept", "X-Envoy-Retry-On"); !s.noEnvoyFields || hasEnvoyField(&s.req.Header) {
		t.Errorf("untrusted request without x-envoy-* fields left: noEnvoyFields %v, fields:\n%s",
			s.noEnvoyFields, dumpHeader(&s.req.Header))
	}
	if s := decorated("X-Envoy-Decorator-Operation"); s.noEnvoyFields {
		t.Error("noEnvoyFields set with x-envoy-decorator-operation left on the request")
	}
	for name, edit := range map[string]func(s *Stream){
		"SetHeader":       func(s *Stream) { s.SetHeader("X-Envoy-Retry-On", "5xx") },
		"AddHeader":       func(s *Stream) { s.AddHeader("X-Envoy-Max-Retries", "1") },
		"reqHeader":       func(s *Stream) { s.reqHeader().Add("X-Envoy-Max-Retries", "1") },
		"applyRequestOps": func(s *Stream) { s.applyRequestOps(nil) },
	} {
		s := decorated()
		if !s.noEnvoyFields {
			t.Fatal("noEnvoyFields not set for a plain request")
		}
		edit(s)
		if s.noEnvoyFields {
			t.Errorf("%s left noEnvoyFields set", name)
		}
	}
}

// TestHex8 checks hex8 for every byte value at every position against encoding/hex.
func TestHex8(t *testing.T) {
	for pos := 0; pos < 4; pos++ {
		for b := 0; b < 256; b++ {
			x := uint32(b)<<(8*pos) | 0x5a5a5a5a&^(0xff<<(8*pos))
			var in [4]byte
			binary.LittleEndian.PutUint32(in[:], x)
			var got [8]byte
			binary.LittleEndian.PutUint64(got[:], hex8(x))
			if want := hex.EncodeToString(in[:]); string(got[:]) != want {
				t.Fatalf("hex8(%#x) = %s, want %s", x, got[:], want)
			}
		}
	}
}
