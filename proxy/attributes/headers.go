package attributes

import (
	"net/http"
	"net/textproto"
	"strings"
	"unsafe"

	"github.com/strait-mesh/strait/proxy/httpmsg"
)

// Headers is a read-only view of a message's header (or trailer) fields, whichever codec holds
// them: the access log, CEL expressions and tracing read requests and responses through it, so
// the codec beneath can change without touching them. Names are case-insensitive. Returned
// values are views, valid while the Record is: do not modify or keep them. A nil Headers has no
// fields (see values and rangeHeaders).
type Headers interface {
	// Values returns every value of the field name, nil when absent.
	Values(name string) []string
	// Range calls f for each field value, in no particular order, until f returns false.
	Range(f func(name, value string) bool)
}

// HTTPHeaders is Headers over a net/http header map, without its trailers (the names net/http
// keeps under http.TrailerPrefix). It is map-shaped: converting one to Headers takes no
// allocation.
type HTTPHeaders http.Header

// Values returns every value of name.
func (h HTTPHeaders) Values(name string) []string {
	if strings.HasPrefix(name, http.TrailerPrefix) {
		return nil
	}
	var buf [64]byte
	if n, ok := canonicalKey(name, &buf); ok {
		return h[string(buf[:n])] // no allocation
	}
	return h[textproto.CanonicalMIMEHeaderKey(name)]
}

// canonicalKey writes textproto.CanonicalMIMEHeaderKey(name) to buf for names of letters,
// digits and hyphens that fit (CEL expressions look headers up by lower-case name: "x-debug" is
// "X-Debug" in a net/http header map); false for other names.
func canonicalKey(name string, buf *[64]byte) (int, bool) {
	if len(name) > len(buf) {
		return 0, false
	}
	upper := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z':
			if upper {
				c -= 'a' - 'A'
			}
		case c >= 'A' && c <= 'Z':
			if !upper {
				c += 'a' - 'A'
			}
		case c == '-' || c >= '0' && c <= '9':
		default:
			return 0, false
		}
		buf[i] = c
		upper = c == '-'
	}
	return len(name), true
}

// Range calls f for each header value until f returns false.
func (h HTTPHeaders) Range(f func(name, value string) bool) {
	for k, vs := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		for _, v := range vs {
			if !f(k, v) {
				return
			}
		}
	}
}

// HTTPTrailers is Headers over the trailers of a net/http header map: the names it keeps under
// http.TrailerPrefix, as a handler sets trailers after the head went out.
type HTTPTrailers http.Header

// Values returns every value of the trailer name.
func (h HTTPTrailers) Values(name string) []string {
	return h[http.TrailerPrefix+textproto.CanonicalMIMEHeaderKey(name)]
}

// Range calls f for each trailer value until f returns false.
func (h HTTPTrailers) Range(f func(name, value string) bool) {
	for k, vs := range h {
		name, ok := strings.CutPrefix(k, http.TrailerPrefix)
		if !ok {
			continue
		}
		for _, v := range vs {
			if !f(name, v) {
				return
			}
		}
	}
}

// values returns h's values of name; a nil h has none.
func values(h Headers, name string) []string {
	if h == nil {
		return nil
	}
	return h.Values(name)
}

// rangeHeaders calls f for each of h's values; a nil h has none.
func rangeHeaders(h Headers, f func(name, value string) bool) {
	if h != nil {
		h.Range(f)
	}
}

// Values returns every value of name in h (nil: none).
func Values(h Headers, name string) []string { return values(h, name) }

// FirstValue returns the first value of name in h (nil: none), or "".
func FirstValue(h Headers, name string) string {
	if vs := values(h, name); len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// FirstLender is implemented by Headers that lend the first value of a field without copying
// it (a codec's fields): the string is valid only until the header changes.
type FirstLender interface {
	LendFirst(name string) (string, bool)
}

// LendFirstValue returns the first value of name in h (nil: none), or "": lent when h is a
// FirstLender, so the caller copies at once what it keeps (the access log appends it to its
// line) and keeps nothing of it.
func LendFirstValue(h Headers, name string) string {
	if l, ok := h.(FirstLender); ok {
		v, _ := l.LendFirst(name)
		return v
	}
	return FirstValue(h, name)
}

// MessageHeaders is Headers over a codec's header (or trailer) fields (httpmsg.Header).
// Values copies; it is pointer-shaped, so converting one to Headers takes no allocation.
type MessageHeaders httpmsg.Header

// Values returns every value of name, copied; nil when absent.
func (h *MessageHeaders) Values(name string) []string {
	m := (*httpmsg.Header)(h)
	var out []string
	for i := m.Index(name, 0); i >= 0; i = m.Index(name, i+1) {
		_, v := m.Field(i)
		out = append(out, string(v))
	}
	return out
}

// LendFirst returns the first value of name, not copied: valid until the fields change.
func (h *MessageHeaders) LendFirst(name string) (string, bool) {
	v, ok := (*httpmsg.Header)(h).Value(name)
	return unsafe.String(unsafe.SliceData(v), len(v)), ok
}

// Range calls f for each field value, in order, until f returns false.
func (h *MessageHeaders) Range(f func(name, value string) bool) {
	m := (*httpmsg.Header)(h)
	for i := 0; i < m.Len(); i++ {
		n, v := m.Field(i)
		if !f(string(n), string(v)) {
			return
		}
	}
}
