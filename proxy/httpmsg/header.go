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
	"unsafe"
)

type span struct{ off, end int32 }

type field struct {
	name, value span
	// sig is nameSig of the name: equal for names equal but for ASCII case, so a lookup
	// compares it before any byte.
	sig uint32
	// valid marks a field added with AddValid, or added with Add or AddBytes and found so (or
	// copied from such a field), and not changed since: its name is a token, its value has no
	// control character but HTAB, and its bytes are stored as an HTTP/1.1 field line, name
	// ": " value CRLF (see Line).
	valid bool
}

// Header is an ordered list of header (or trailer) fields with case-insensitive names, stored
// in one reused buffer. Names keep the case they were added with; lookups fold ASCII case.
// Values are stored as given: a codec validates what it receives, and the HTTP/1.1 writer
// refuses to write a name or value that would change the message's framing (CR, LF, NUL).
// A field is marked valid when it is added with a token name and a value without control
// characters but HTAB (Add and AddBytes check; AddValid takes a codec's word for a field its
// parser checked), so that the writer need not check it again; Set and SetBytes leave the
// field they change unmarked.
// The zero Header is empty and ready to use; a Header is not safe for concurrent use.
//
// Deleting fields does not reclaim their bytes until Reset, so a Header that is edited many
// times between Resets grows; filters edit a bounded number of fields per request.
type Header struct {
	buf    []byte
	fields []field
	// lens has bit n%64 set when a field whose name is n bytes long was added since Reset, and
	// lasts bit c%64 when one whose name ends with c (folded): a lookup of a name no field can
	// have (most lookups) scans nothing.
	lens, lasts uint64
	// envoy is set when a field in the x-envoy- namespace was added since Reset (deleting it
	// does not clear it): most requests have none, and then MayHaveEnvoyNames saves a scan.
	envoy bool
}

// nameSig returns a name's length and its first and last bytes with the ASCII case bit set:
// names equal but for ASCII case have equal signatures.
func nameSig(name string) uint32 {
	n := len(name)
	if n == 0 {
		return 0
	}
	return uint32(n)<<16 | uint32(name[0]|0x20)<<8 | uint32(name[n-1]|0x20)
}

func nameSigBytes(name []byte) uint32 {
	n := len(name)
	if n == 0 {
		return 0
	}
	return uint32(n)<<16 | uint32(name[0]|0x20)<<8 | uint32(name[n-1]|0x20)
}

func (h *Header) push(f field) {
	h.fields = append(h.fields, f)
	h.lens |= 1 << (f.sig >> 16 & 63)
	h.lasts |= 1 << (f.sig & 63)
}

// note marks h.envoy (after push) when the name at n, of signature sig, is in the x-envoy- namespace.
func (h *Header) note(sig uint32, n span) {
	if sig>>8&0xff == 'x' && !h.envoy { // the signature's first byte settles most names
		h.markEnvoy(n)
	}
}

// markEnvoy sets h.envoy if the name at n is in the x-envoy- namespace.
func (h *Header) markEnvoy(n span) {
	k := h.buf[n.off:n.end]
	h.envoy = len(k) > len(envoyPrefix) && k[7] == '-' && IsEnvoyName(k)
}

// envoyPrefix is the prefix of Envoy's own header names.
const envoyPrefix = "x-envoy-"

// IsEnvoyName reports whether the field name k is in the x-envoy- namespace (ASCII case
// folded) and longer than the prefix. The dashes are tested first: most names fail there.
// "envoy" is compared as a word and a byte with the case bit set (a byte equals a lower-case
// letter so only when it is that letter in either case), without a call to EqualFold.
func IsEnvoyName(k []byte) bool {
	return len(k) > len(envoyPrefix) && k[1] == '-' && k[7] == '-' && k[0]|0x20 == 'x' &&
		load32(k[2:6])|0x20202020 == 'e'|'n'<<8|'v'<<16|'o'<<24 && k[6]|0x20 == 'y'
}

// MayHaveEnvoyNames reports whether a field in the x-envoy- namespace may be present: false
// means none is (none was added since Reset); true, that one was added (it may have been
// deleted since).
func (h *Header) MayHaveEnvoyNames() bool { return h.envoy }

// Reset empties h, keeping its storage.
func (h *Header) Reset() {
	h.buf = h.buf[:0]
	h.fields = h.fields[:0]
	h.lens, h.lasts = 0, 0
	h.envoy = false
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
	f := &h.fields[i]
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
	// Most lookups are of names no field has: one bit test, inlined in the caller, settles it.
	if h.lens&(1<<(len(name)&63)) == 0 {
		return -1
	}
	return h.index(name, from)
}

func (h *Header) index(name string, from int) int {
	sig := nameSig(name)
	if h.lasts&(1<<(sig&63)) == 0 {
		return -1
	}
	if from < 0 {
		from = 0
	}
	for i := from; i < len(h.fields); i++ {
		// Most names differ in length, first or last byte: that test is all most fields cost.
		if f := &h.fields[i]; f.sig == sig && EqualFold(h.buf[f.name.off:f.name.end], name) {
			return i
		}
	}
	return -1
}

// Has reports whether a field named name is present.
func (h *Header) Has(name string) bool {
	return h.lens&(1<<(len(name)&63)) != 0 && h.index(name, 0) >= 0 // as in Index
}

// Value returns the value of the first field named name, or nil (and false) when there is
// none. It aliases h's storage.
func (h *Header) Value(name string) ([]byte, bool) {
	if h.lens&(1<<(len(name)&63)) != 0 { // as in Index
		return h.value(name)
	}
	return nil, false
}

func (h *Header) value(name string) ([]byte, bool) {
	i := h.index(name, 0)
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

// Add appends a field. It is marked valid (see AddValid) when name is a token and value has
// no control character but HTAB.
func (h *Header) Add(name, value string) {
	if validName(name) && validValue(value) {
		h.addLineString(name, value, nameSig(name))
		return
	}
	h.addUnmarked(name, value, nameSig(name))
}

// addUnmarked appends a field not marked valid. Out of line: filters add valid fields, and
// the callers' common paths stay short.
//
//go:noinline
func (h *Header) addUnmarked(name, value string, sig uint32) {
	f := field{name: h.appendString(name), sig: sig}
	f.value = h.appendString(value)
	h.push(f)
	h.note(f.sig, f.name)
}

// Name is a field name checked once: a token, with its lookup signature. Adding or setting a
// field by Name checks only the value. Make them at package level with MustName.
type Name struct {
	s   string
	sig uint32
}

// MustName returns name as a Name; it panics if name is not a token (a programming error:
// names are constants).
func MustName(name string) Name {
	if !validName(name) {
		panic("httpmsg: " + name + " is not a field name")
	}
	return Name{name, nameSig(name)}
}

// String returns the name.
func (n Name) String() string { return n.s }

// AddName is Add for a Name.
func (h *Header) AddName(n Name, value string) {
	if validValue(value) {
		h.addLineString(n.s, value, n.sig)
		return
	}
	h.addUnmarked(n.s, value, n.sig)
}

// SetNameBytes is SetBytes for a Name.
func (h *Header) SetNameBytes(n Name, value []byte) {
	if h.lens&(1<<(len(n.s)&63)) == 0 { // as in Index
		if validValue(unsafeString(value)) {
			h.addLine(unsafeBytes(n.s), value, n.sig)
			return
		}
		h.AddBytes(unsafeBytes(n.s), value)
		return
	}
	h.SetBytes(n.s, value)
}

// SetName is Set for a Name.
func (h *Header) SetName(n Name, value string) {
	if h.lens&(1<<(len(n.s)&63)) == 0 { // as in Index
		h.AddName(n, value)
		return
	}
	h.Set(n.s, value)
}

// AddBytes appends a field; name and value are copied. It is marked valid (see AddValid)
// when name is a token and value has no control character but HTAB.
func (h *Header) AddBytes(name, value []byte) {
	if validName(unsafeString(name)) && validValue(unsafeString(value)) {
		h.addLine(name, value, nameSigBytes(name))
		return
	}
	h.addUnmarked(unsafeString(name), unsafeString(value), nameSigBytes(name))
}

// AddValid appends a field (name and value are copied) that the caller has checked: name is a
// token (RFC 9110 section 5.6.2) and value has no control character but HTAB — no CR, LF,
// NUL or DEL — as a strict HTTP/1.1 parser guarantees of the fields it accepts. The field is
// marked valid (see Line) until it is changed. Adding a field that is not so with AddValid
// lets it reach the wire unchecked: use Add or AddBytes for anything not received so.
func (h *Header) AddValid(name, value []byte) { h.addLine(name, value, nameSigBytes(name)) }

// addLine appends a field marked valid, stored as its HTTP/1.1 field line. (Appends: a
// single capacity check and copies measured more instructions, the copies' calls spilling
// what the appends keep in registers.)
func (h *Header) addLine(name, value []byte, sig uint32) {
	off := len(h.buf)
	b := append(h.buf, name...) // in a local: h.buf (a pointer in the heap) stored once
	b = append(b, ':', ' ')
	b = append(b, value...)
	b = append(b, '\r', '\n')
	h.buf = b
	n, v := int32(off+len(name)), int32(len(b)-2)
	h.push(field{name: span{int32(off), n}, value: span{n + 2, v}, sig: sig, valid: true})
	h.note(sig, span{int32(off), n})
}

// addLineString is addLine for strings (only read: addLine copies them). One copy of
// addLine's code serves both: a second, for strings, would be as many more code lines.
func (h *Header) addLineString(name, value string, sig uint32) {
	h.addLine(unsafeBytes(name), unsafeBytes(value), sig)
}

// AddField appends field i of src (0 <= i < src.Len()), keeping its valid mark (see
// AddValid): a copy of a checked field is not checked again; an unmarked one is added as with
// AddBytes.
func (h *Header) AddField(src *Header, i int) {
	f := src.fields[i]
	if !f.valid {
		h.AddBytes(src.slice(f.name), src.slice(f.value))
		return
	}
	off := int32(len(h.buf)) - f.name.off
	h.buf = append(h.buf, src.buf[f.name.off:f.value.end+2]...)
	f.name.off += off
	f.name.end += off
	f.value.off += off
	f.value.end += off
	h.push(f)
	h.note(f.sig, f.name)
}

// Set makes value the only value of name: the first field named name keeps its position and
// takes the value, later ones are deleted; without one, the field is appended.
func (h *Header) Set(name, value string) {
	i := h.Index(name, 0)
	if i < 0 {
		h.Add(name, value)
		return
	}
	f := &h.fields[i]
	f.value = h.appendString(value)
	f.valid = false
	h.delFrom(name, i+1)
}

// SetBytes is Set with a byte-slice value, which is copied.
func (h *Header) SetBytes(name string, value []byte) {
	i := h.Index(name, 0)
	if i < 0 {
		h.AddBytes([]byte(name), value)
		return
	}
	f := &h.fields[i]
	f.value = h.appendBytes(value)
	f.valid = false
	h.delFrom(name, i+1)
}

// Del deletes every field named name and returns how many there were.
func (h *Header) Del(name string) int {
	if h.lens&(1<<(len(name)&63)) == 0 {
		return 0 // as in Index
	}
	return h.delFrom(name, 0)
}

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
	sig := h.fields[j].sig
	for i := j + 1; i < len(h.fields); i++ {
		f := h.fields[i]
		if f.sig == sig && EqualFold(h.buf[f.name.off:f.name.end], name) {
			continue
		}
		h.fields[j] = f
		j++
	}
	n := len(h.fields) - j
	h.fields = h.fields[:j]
	return n
}

// CopyFrom makes h a copy of src, reusing h's storage; valid marks are copied too.
func (h *Header) CopyFrom(src *Header) {
	h.buf = append(h.buf[:0], src.buf...)
	h.fields = append(h.fields[:0], src.fields...)
	h.lens, h.lasts = src.lens, src.lasts
	h.envoy = src.envoy
}

// Valid reports whether field i is marked valid: added with AddValid, or with Add, AddBytes
// or AddField and found valid (or copied from such a field with AddField or CopyFrom), and not
// changed since.
func (h *Header) Valid(i int) bool { return h.fields[i].valid }

// Line reports where field i (0 <= i < Len) lies in h's storage when it is marked valid (see
// AddValid): its HTTP/1.1 field line, name ": " value CRLF, is Raw(off, end), and its name is
// Raw(off, nameEnd); ok is false, and the bounds meaningless, for a field not marked valid.
// The lines of fields added marked valid one after another, and not deleted between, lie end
// to end (one's end is the next one's off), so a codec can copy a run of them at once.
func (h *Header) Line(i int) (off, nameEnd, end int, ok bool) {
	f := &h.fields[i]
	return int(f.name.off), int(f.name.end), int(f.value.end) + 2, f.valid
}

// Raw returns h's storage from off to end, bounds that Line returned, aliasing it.
func (h *Header) Raw(off, end int) []byte { return h.buf[off:end:end] }

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
	// Most calls compare names of different lengths: that test is inlined.
	return len(b) == len(s) && equalFold(b, s)
}

func equalFold(b []byte, s string) bool {
	n := len(b)
	if n < 4 {
		return equalFoldShort(b, s)
	}
	s = s[:n]
	// Eight bytes at a time; the last word overlaps the one before when n%8 != 0, and a name
	// shorter than a word is two four-byte halves of one, overlapping.
	for i := 0; i < n-8; i += 8 {
		if !foldWord(load64(b[i:]), load64(s[i:])) {
			return false
		}
	}
	var x, y uint64
	if n < 8 {
		x = uint64(load32(b)) | uint64(load32(b[n-4:]))<<32
		y = uint64(load32(s)) | uint64(load32(s[n-4:]))<<32
	} else {
		x, y = load64(b[n-8:]), load64(s[n-8:])
	}
	return foldWord(x, y)
}

// equalFoldShort is equalFold for fewer than four bytes, byte by byte. Out of line: few
// names are so short, and equalFold's common paths stay dense.
//
//go:noinline
func equalFoldShort(b []byte, s string) bool {
	for i := 0; i < len(b); i++ {
		x, y := b[i], s[i]
		if x != y && (x|0x20 != y|0x20 || x|0x20 < 'a' || x|0x20 > 'z') {
			return false
		}
	}
	return true
}

// foldWord reports whether the words x and y (eight bytes each) differ at most in the ASCII
// case of letters of x. With top bits cleared, adding 0x80-k to a byte sets its top bit
// exactly when the byte is at least k, with no carry into the next byte; a letter's case bit
// is 0x20, its top bit shifted right by two.
func foldWord(x, y uint64) bool {
	const ones, highs, lows = 0x0101010101010101, 0x8080808080808080, 0x7f7f7f7f7f7f7f7f
	d := x ^ y
	if d == 0 {
		return true
	}
	l := x&lows | ones*0x20
	letter := (l + ones*(0x80-'a')) &^ (l + ones*(0x80-'z'-1)) &^ x & highs
	return d&^(letter>>2) == 0
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

// unsafeString views b as a string, for reading only while b is unchanged.
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// unsafeBytes views s as bytes, for reading only (the callers copy from it).
func unsafeBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }
