// Package httpmsg is the proxy's protocol-neutral view of an HTTP message: the request and
// response heads that the connection manager's filters and router see, whichever codec
// (HTTP/1.1 or HTTP/2) filled them.
//
// Storage is reused: a Header keeps its fields in one byte buffer that it truncates on Reset,
// so a codec that serves many requests with one Request (or Response) does not allocate once
// the buffers have grown. Byte slices returned by the accessors alias that storage: they are
// valid until the next Reset (for a server request: until the handler returns) and must not
// be kept or modified. The string accessors (Get, Request.PathString...) return copies.
package httpmsg

import (
	"bytes"
	"net/http"
)

type span struct{ off, end int32 }

type field struct{ name, value span }

// Header is an ordered list of header (or trailer) fields with case-insensitive names, stored
// in one reused buffer. Names keep the case they were added with; lookups fold ASCII case.
// Values are stored as given: a codec validates what it receives, and the HTTP/1.1 writer
// refuses to write a name or value that would change the message's framing (CR, LF, NUL).
// The zero Header is empty and ready to use; a Header is not safe for concurrent use.
//
// Deleting fields does not reclaim their bytes until Reset, so a Header that is edited many
// times between Resets grows; filters edit a bounded number of fields per request.
type Header struct {
	buf    []byte
	fields []field
	// lens has bit n%64 set when a field whose name is n bytes long was added since Reset:
	// a lookup of a name no field can have (most lookups) scans nothing.
	lens uint64
}

// Reset empties h, keeping its storage.
func (h *Header) Reset() {
	h.buf = h.buf[:0]
	h.fields = h.fields[:0]
	h.lens = 0
}

// Len returns the number of fields.
func (h *Header) Len() int { return len(h.fields) }

// Size returns the bytes of the names and values.
func (h *Header) Size() int {
	n := 0
	for _, f := range h.fields {
		n += int(f.name.end-f.name.off) + int(f.value.end-f.value.off)
	}
	return n
}

// Field returns field i's name and value (0 <= i < Len), aliasing h's storage.
func (h *Header) Field(i int) (name, value []byte) {
	f := h.fields[i]
	return h.slice(f.name), h.slice(f.value)
}

func (h *Header) slice(s span) []byte { return h.buf[s.off:s.end:s.end] }

// Range calls f for each field in order until f returns false. The slices alias h's storage.
func (h *Header) Range(f func(name, value []byte) bool) {
	for _, fl := range h.fields {
		if !f(h.slice(fl.name), h.slice(fl.value)) {
			return
		}
	}
}

// Index returns the index of the first field named name (ASCII case-insensitive) at or after
// from, or -1.
func (h *Header) Index(name string, from int) int {
	if h.lens&(1<<(len(name)%64)) == 0 {
		return -1
	}
	for i := from; i < len(h.fields); i++ {
		f := h.fields[i].name
		// Most names differ in length: that test is all most fields cost.
		if int(f.end-f.off) == len(name) && EqualFold(h.buf[f.off:f.end], name) {
			return i
		}
	}
	return -1
}

// Has reports whether a field named name is present.
func (h *Header) Has(name string) bool { return h.Index(name, 0) >= 0 }

// Value returns the value of the first field named name, or nil (and false) when there is
// none. It aliases h's storage.
func (h *Header) Value(name string) ([]byte, bool) {
	i := h.Index(name, 0)
	if i < 0 {
		return nil, false
	}
	return h.slice(h.fields[i].value), true
}

// Get returns a copy of the value of the first field named name, or "".
func (h *Header) Get(name string) string {
	v, _ := h.Value(name)
	return string(v)
}

// Count returns how many fields are named name.
func (h *Header) Count(name string) int {
	n := 0
	for i := h.Index(name, 0); i >= 0; i = h.Index(name, i+1) {
		n++
	}
	return n
}

// Add appends a field.
func (h *Header) Add(name, value string) {
	f := field{name: h.appendString(name)}
	f.value = h.appendString(value)
	h.fields = append(h.fields, f)
	h.lens |= 1 << (len(name) % 64)
}

// AddBytes appends a field; name and value are copied.
func (h *Header) AddBytes(name, value []byte) {
	f := field{name: h.appendBytes(name)}
	f.value = h.appendBytes(value)
	h.fields = append(h.fields, f)
	h.lens |= 1 << (len(name) % 64)
}

// Set makes value the only value of name: the first field named name keeps its position and
// takes the value, later ones are deleted; without one, the field is appended.
func (h *Header) Set(name, value string) {
	i := h.Index(name, 0)
	if i < 0 {
		h.Add(name, value)
		return
	}
	h.fields[i].value = h.appendString(value)
	h.delFrom(name, i+1)
}

// SetBytes is Set with a byte-slice value, which is copied.
func (h *Header) SetBytes(name string, value []byte) {
	i := h.Index(name, 0)
	if i < 0 {
		h.AddBytes([]byte(name), value)
		return
	}
	h.fields[i].value = h.appendBytes(value)
	h.delFrom(name, i+1)
}

// Del deletes every field named name and returns how many there were.
func (h *Header) Del(name string) int { return h.delFrom(name, 0) }

// DelAt deletes field i.
func (h *Header) DelAt(i int) {
	h.fields = append(h.fields[:i], h.fields[i+1:]...)
}

func (h *Header) delFrom(name string, from int) int {
	// Most deletions find nothing: look first, move fields only from the first match on.
	j := h.Index(name, from)
	if j < 0 {
		return 0
	}
	for i := j + 1; i < len(h.fields); i++ {
		f := h.fields[i]
		if int(f.name.end-f.name.off) == len(name) && EqualFold(h.buf[f.name.off:f.name.end], name) {
			continue
		}
		h.fields[j] = f
		j++
	}
	n := len(h.fields) - j
	h.fields = h.fields[:j]
	return n
}

// CopyFrom makes h a copy of src, reusing h's storage.
func (h *Header) CopyFrom(src *Header) {
	h.buf = append(h.buf[:0], src.buf...)
	h.fields = append(h.fields[:0], src.fields...)
	h.lens = src.lens
}

// Equal reports whether h and o have the same fields in the same order (names compared
// case-insensitively, values exactly).
func (h *Header) Equal(o *Header) bool {
	if len(h.fields) != len(o.fields) {
		return false
	}
	for i := range h.fields {
		hn, hv := h.Field(i)
		on, ov := o.Field(i)
		if !bytes.EqualFold(hn, on) || !bytes.Equal(hv, ov) {
			return false
		}
	}
	return true
}

func (h *Header) appendString(s string) span {
	off := len(h.buf)
	h.buf = append(h.buf, s...)
	return span{int32(off), int32(len(h.buf))}
}

func (h *Header) appendBytes(b []byte) span {
	off := len(h.buf)
	h.buf = append(h.buf, b...)
	return span{int32(off), int32(len(h.buf))}
}

// HTTPHeader returns h's fields as net/http's header map (names canonicalized, values copied),
// for the code paths that still speak net/http (HTTP/2, ext_authz's HTTP service).
func HTTPHeader(h *Header) http.Header {
	m := make(http.Header, h.Len())
	for i := 0; i < h.Len(); i++ {
		k, v := h.Field(i)
		m.Add(string(k), string(v))
	}
	return m
}

// EqualFold reports whether b equals s, folding ASCII case only (header names are tokens).
func EqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := b[i], s[i]
		if x == y {
			continue
		}
		if x|0x20 != y|0x20 || x|0x20 < 'a' || x|0x20 > 'z' {
			return false
		}
	}
	return true
}

// HasToken reports whether the comma-separated list value contains token (ASCII
// case-insensitive, surrounding whitespace ignored), as in Connection: keep-alive, Upgrade.
func HasToken(value []byte, token string) bool {
	for len(value) > 0 {
		var elem []byte
		if i := bytes.IndexByte(value, ','); i >= 0 {
			elem, value = value[:i], value[i+1:]
		} else {
			elem, value = value, nil
		}
		if EqualFold(bytes.Trim(elem, " \t"), token) {
			return true
		}
	}
	return false
}
