package jwtauthn

import (
	"math/bits"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/structpb"
)

// decodeStruct parses data, a JSON object, into a Struct with protojson's rules (tokens and
// JWKS are parsed with C++ protobuf's, see decodeMembers). It accepts exactly what
// protojson.UnmarshalOptions{RecursionLimit: limit}.Unmarshal into a structpb.Struct accepts and
// builds a Struct proto.Equal to protojson's (with the same float bits, -0 included):
//   - strict RFC 8259 syntax, white space being space, tab, CR and LF only, nothing after the
//     object but white space;
//   - strings of valid UTF-8 without raw control characters; escapes \" \\ \/ \b \f \n \r \t and
//     \uXXXX, a surrogate only as a valid high-low pair;
//   - a duplicate member name in one object (compared after unescaping) is refused;
//   - numbers are strconv.ParseFloat of their text and refused when out of float64 range;
//   - depth is counted as protojson counts messages: the top Struct is one level and every
//     Value one more (a Struct or ListValue inside a Value is not counted again), and more than
//     limit levels are refused.
//
// Work is linear in len(data) (map inserts aside) and recursion is bounded by limit. Strings
// without escapes share data's memory. It reports false on any refusal.
func decodeStruct(data string, limit int) (*structpb.Struct, bool) {
	return decodeStructAs(data, limit, false)
}

// decodeStructAs is decodeStruct with protojson's rules, or C++ protobuf's (cpp, see
// decodeMembers).
func decodeStructAs(data string, limit int, cpp bool) (*structpb.Struct, bool) {
	d := newStructDecoder(data)
	defer d.release()
	s := new(structpb.Struct)
	if !d.decode(data, limit, cpp, s) {
		return nil, false
	}
	return s, true
}

var decoderPool = sync.Pool{New: func() any { return new(structDecoder) }}

// newStructDecoder returns a decoder for text or parts of it, its first allocations sized for
// text. The caller must release it.
func newStructDecoder(text string) *structDecoder {
	d := decoderPool.Get().(*structDecoder)
	// Scalars: at least one per member (colon) and about one per list; at most one per colon,
	// comma and list. Containers: at most one per brace and bracket but the top object's. All
	// are loose, as those bytes may be in strings.
	colons, commas, lists := strings.Count(text, ":"), strings.Count(text, ","), strings.Count(text, "[")
	d.cells.size(colons+lists, colons+commas+lists)
	n := strings.Count(text, "{") + lists - 1
	d.containers.size(n, n)
	d.members = d.memberStack[:0]
	d.elems = d.elemStack[:0]
	d.buf = d.bufStack[:0]
	return d
}

// release returns d to the pool, holding nothing of what it decoded.
func (d *structDecoder) release() {
	*d = structDecoder{}
	decoderPool.Put(d)
}

// decode is decodeStructAs into dst (reset first) with d's allocations; d may decode several
// inputs one after the other, and the Structs share its chunks.
func (d *structDecoder) decode(data string, limit int, cpp bool, dst *structpb.Struct) bool {
	dst.Reset()
	obj, ok := d.start(data, limit, cpp)
	if !ok || obj && !d.object(limit-1, dst) || !d.end() {
		dst.Reset()
		return false
	}
	return true
}

// decodeMembers is decode without the top object's map: it returns the top object's members,
// in input order, valid until d's next use. It accepts exactly what decode accepts.
//
// With cpp it follows C++ protobuf's JsonStringToMessage into a Struct (what jwt_verify_lib
// parses a token's header and payload and a JWKS with), which runs its parser with
// allow_legacy_syntax set and differs from protojson in these, and only these, ways:
//   - a top-level null is an empty Struct;
//   - strings may be quoted with ' as well as " (the other quote is then an ordinary byte),
//     and \' and \U (as \u) are escapes too;
//   - a member name may be a bare word: ASCII letters, digits and _, not starting with a
//     digit, and not null, true or false;
//   - one comma may end an object's or an array's last member or element;
//   - control characters may stand raw in strings;
//   - UTF-8 is checked for its shape only (a lead byte of 0xxxxxxx, 110xxxxx, 1110xxxx or
//     11110xxx followed by as many 10xxxxxx bytes), so overlong forms, surrogates and code
//     points past U+10FFFF pass;
//   - white space may stand between the two \u escapes of a surrogate pair;
//   - depth counts objects and arrays, the top object included, and more than limit are
//     refused (the JSON lexer's recursion_depth, 100).
//
// Duplicate names (after unescaping), numbers out of float64 range and anything after the top
// value but white space are refused by both.
func (d *structDecoder) decodeMembers(data string, limit int, cpp bool) ([]member, bool) {
	obj, ok := d.start(data, limit, cpp)
	if !ok || obj && !d.readMembers(limit-1) || !d.end() {
		return nil, false
	}
	ms := d.members
	if len(ms) <= len(d.memberStack) {
		for i := 1; i < len(ms); i++ {
			for j := range i {
				if ms[i].name == ms[j].name {
					return nil, false
				}
			}
		}
	} else {
		seen := make(map[string]struct{}, len(ms))
		for _, m := range ms {
			if _, dup := seen[m.name]; dup {
				return nil, false
			}
			seen[m.name] = struct{}{}
		}
	}
	return ms, true
}

// start resets d for data with protojson's or C++ protobuf's rules (cpp) and consumes the
// white space before the top object's '{' (obj), or C++ protobuf's top-level null, which it
// consumes too.
func (d *structDecoder) start(data string, limit int, cpp bool) (obj, ok bool) {
	d.in, d.pos, d.cpp, d.notUTF8 = data, 0, cpp, false
	clear(d.members)
	clear(d.elems)
	d.members, d.elems = d.members[:0], d.elems[:0]
	if limit < 1 {
		return false, false
	}
	d.space()
	if d.pos < len(d.in) && d.in[d.pos] == '{' {
		return true, true
	}
	if cpp && strings.HasPrefix(d.in[d.pos:], "null") {
		d.pos += len("null")
		return false, true
	}
	return false, false
}

// end reports whether only white space follows the top object.
func (d *structDecoder) end() bool {
	d.space()
	return d.pos == len(d.in)
}

// valueCell holds a Value and the oneof wrappers of its scalar kinds, so that one allocation
// serves several values.
type valueCell struct {
	v   structpb.Value
	str structpb.Value_StringValue
	num structpb.Value_NumberValue
	b   structpb.Value_BoolValue
	nul structpb.Value_NullValue
}

// containerCell holds what a Value holding an object or a list needs.
type containerCell struct {
	v  structpb.Value
	sv structpb.Value_StructValue
	lv structpb.Value_ListValue
	s  structpb.Struct
	l  structpb.ListValue
}

// slab hands out pointers to zero T's, allocating them in chunks.
type slab[T any] struct {
	buf  []T
	want int // size of the next chunk
	left int // estimate of the T's needed after the chunks allocated so far
}

const slabMaxChunk = 256

// size sets the first chunk's size and an upper estimate of all the T's needed.
func (s *slab[T]) size(first, all int) {
	s.want, s.left = first, all
}

func (s *slab[T]) next() *T {
	if len(s.buf) == cap(s.buf) {
		n := min(max(s.want, 1), slabMaxChunk)
		s.buf = make([]T, 0, n)
		s.left -= n
		// The estimate's rest, and at least twice this chunk once it is exceeded.
		s.want = max(s.left, 2*n)
	}
	s.buf = s.buf[:len(s.buf)+1]
	return &s.buf[len(s.buf)-1]
}

type member struct {
	name string
	v    *structpb.Value
}

// structDecoder decodes JSON objects into Structs (decodeStruct). One request's decoder comes
// from newStructDecoder and goes back with release; it is not safe for concurrent use.
type structDecoder struct {
	in         string
	pos        int
	cells      slab[valueCell]
	containers slab[containerCell]
	members    []member          // members of the open objects, innermost last
	elems      []*structpb.Value // elements of the open lists, innermost last
	buf        []byte            // unescaping scratch
	cpp        bool              // C++ protobuf's rules rather than protojson's (decodeMembers)
	// notUTF8 reports that a string of the last input (C++ protobuf's rules) holds a sequence
	// of the right shape that is not valid UTF-8 (see runeLen): Go's proto.Marshal refuses it.
	notUTF8 bool

	// First backing arrays of members, elems and buf.
	memberStack [16]member
	elemStack   [8]*structpb.Value
	bufStack    [64]byte
}

func (d *structDecoder) space() {
	for d.pos < len(d.in) {
		switch d.in[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// object decodes the object at d.pos ('{') into s; budget is the number of levels left for
// its members' values.
func (d *structDecoder) object(budget int, s *structpb.Struct) bool {
	base := len(d.members)
	if !d.readMembers(budget) {
		return false
	}
	ms := d.members[base:]
	s.Fields = make(map[string]*structpb.Value, len(ms))
	for _, m := range ms {
		if _, dup := s.Fields[m.name]; dup {
			return false
		}
		s.Fields[m.name] = m.v
	}
	clear(ms)
	d.members = d.members[:base]
	return true
}

// readMembers decodes the members of the object at d.pos ('{') onto d.members, not checking
// for duplicate names.
func (d *structDecoder) readMembers(budget int) bool {
	d.pos++
	d.space()
	if d.pos < len(d.in) && d.in[d.pos] == '}' {
		d.pos++
		return true
	}
	for {
		if d.pos >= len(d.in) {
			return false
		}
		var name string
		var ok bool
		switch c := d.in[d.pos]; {
		case c == '"' || d.cpp && c == '\'':
			name, ok = d.str()
		case d.cpp:
			name, ok = d.bareWord()
		}
		if !ok {
			return false
		}
		if d.space(); d.pos >= len(d.in) || d.in[d.pos] != ':' {
			return false
		}
		d.pos++
		d.space()
		v, ok := d.value(budget)
		if !ok {
			return false
		}
		d.members = append(d.members, member{name, v})
		if next, ok := d.more('}'); !ok {
			return false
		} else if !next {
			return true
		}
	}
}

// more consumes what follows a member or element: a comma (next) or the closing byte; ok is
// false for anything else.
func (d *structDecoder) more(closing byte) (next, ok bool) {
	d.space()
	if d.pos < len(d.in) {
		switch d.in[d.pos] {
		case ',':
			d.pos++
			d.space()
			if d.cpp && d.pos < len(d.in) && d.in[d.pos] == closing {
				d.pos++ // C++ protobuf: a trailing comma
				return false, true
			}
			return true, true
		case closing:
			d.pos++
			return false, true
		}
	}
	return false, false
}

// list decodes the array at d.pos ('[') into l.
func (d *structDecoder) list(budget int, l *structpb.ListValue) bool {
	d.pos++
	d.space()
	if d.pos < len(d.in) && d.in[d.pos] == ']' {
		d.pos++
		return true
	}
	base := len(d.elems)
	for {
		v, ok := d.value(budget)
		if !ok {
			return false
		}
		d.elems = append(d.elems, v)
		if next, ok := d.more(']'); !ok {
			return false
		} else if !next {
			break
		}
	}
	l.Values = make([]*structpb.Value, len(d.elems)-base)
	copy(l.Values, d.elems[base:])
	clear(d.elems[base:])
	d.elems = d.elems[:base]
	return true
}

// value decodes the value at d.pos; budget is the levels left before this value is counted:
// protojson counts every Value, C++ protobuf objects and arrays only.
func (d *structDecoder) value(budget int) (*structpb.Value, bool) {
	if d.pos >= len(d.in) {
		return nil, false
	}
	c := d.in[d.pos]
	if !d.cpp || c == '{' || c == '[' {
		if budget--; budget < 0 {
			return nil, false
		}
	}
	switch c {
	case '{':
		cc := d.containers.next()
		if !d.object(budget, &cc.s) {
			return nil, false
		}
		cc.sv.StructValue = &cc.s
		cc.v.Kind = &cc.sv
		return &cc.v, true
	case '[':
		cc := d.containers.next()
		if !d.list(budget, &cc.l) {
			return nil, false
		}
		cc.lv.ListValue = &cc.l
		cc.v.Kind = &cc.lv
		return &cc.v, true
	case '"', '\'':
		if c == '\'' && !d.cpp {
			return nil, false
		}
		s, ok := d.str()
		if !ok {
			return nil, false
		}
		vc := d.cells.next()
		vc.str.StringValue = s
		vc.v.Kind = &vc.str
		return &vc.v, true
	case 't':
		return d.literal("true", func(vc *valueCell) { vc.b.BoolValue = true; vc.v.Kind = &vc.b })
	case 'f':
		return d.literal("false", func(vc *valueCell) { vc.v.Kind = &vc.b })
	case 'n':
		return d.literal("null", func(vc *valueCell) { vc.v.Kind = &vc.nul })
	default:
		if c == '-' || '0' <= c && c <= '9' {
			return d.number()
		}
	}
	return nil, false
}

// literal consumes word (true, false or null); what may follow is checked by the caller.
func (d *structDecoder) literal(word string, set func(*valueCell)) (*structpb.Value, bool) {
	if !strings.HasPrefix(d.in[d.pos:], word) {
		return nil, false
	}
	d.pos += len(word)
	vc := d.cells.next()
	set(vc)
	return &vc.v, true
}

// number consumes a number with RFC 8259's grammar and converts it with strconv.ParseFloat, as
// protojson; a number out of float64 range is refused.
func (d *structDecoder) number() (*structpb.Value, bool) {
	in, start := d.in, d.pos
	i := start
	if in[i] == '-' {
		i++
	}
	switch {
	case i < len(in) && in[i] == '0':
		i++
	case i < len(in) && '1' <= in[i] && in[i] <= '9':
		i = digits(in, i+1)
	default:
		return nil, false
	}
	if i < len(in) && in[i] == '.' {
		j := digits(in, i+1)
		if j == i+1 {
			return nil, false
		}
		i = j
	}
	if i < len(in) && (in[i] == 'e' || in[i] == 'E') {
		i++
		if i < len(in) && (in[i] == '+' || in[i] == '-') {
			i++
		}
		j := digits(in, i)
		if j == i {
			return nil, false
		}
		i = j
	}
	f, err := strconv.ParseFloat(in[start:i], 64)
	if err != nil {
		return nil, false
	}
	d.pos = i
	vc := d.cells.next()
	vc.num.NumberValue = f
	vc.v.Kind = &vc.num
	return &vc.v, true
}

func digits(s string, i int) int {
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	return i
}

// str decodes the string at d.pos, its opening quote (a double one, or with C++ protobuf's rules
// an apostrophe too). Without escapes the result shares d.in.
func (d *structDecoder) str() (string, bool) {
	in := d.in
	quote := in[d.pos]
	start := d.pos + 1
	i := start
	for i < len(in) {
		c := in[i]
		switch {
		case c == quote:
			d.pos = i + 1
			return in[start:i], true
		case c == '\\':
			return d.unescape(quote, start, i)
		case c < ' ' && !d.cpp:
			return "", false
		case c < utf8.RuneSelf:
			i++
		default:
			n := d.runeLen(i)
			if n == 0 {
				return "", false
			}
			i += n
		}
	}
	return "", false
}

// runeLen returns the length of the encoded rune at d.in[i] (not ASCII), 0 if it is not valid
// UTF-8: strictly (protojson), or by its shape alone (C++ protobuf's lexer: the lead byte's
// leading ones give the length, 2 to 4, and the bytes after it must be 10xxxxxx). A sequence
// that passes by its shape but is not valid UTF-8 sets d.notUTF8.
func (d *structDecoder) runeLen(i int) int {
	in := d.in
	if !d.cpp {
		r, n := utf8.DecodeRuneInString(in[i:])
		if r == utf8.RuneError && n == 1 {
			return 0
		}
		return n
	}
	n := bits.LeadingZeros8(^in[i])
	if n < 2 || n > 4 || i+n > len(in) {
		return 0
	}
	for _, c := range []byte(in[i+1 : i+n]) {
		if c&0xC0 != 0x80 {
			return 0
		}
	}
	if _, m := utf8.DecodeRuneInString(in[i : i+n]); m != n {
		d.notUTF8 = true // overlong, a surrogate or past U+10FFFF
	}
	return n
}

// unescape continues str from the first backslash at i.
func (d *structDecoder) unescape(quote byte, start, i int) (string, bool) {
	in := d.in
	b := append(d.buf[:0], in[start:i]...)
	for i < len(in) {
		c := in[i]
		switch {
		case c == quote:
			d.pos = i + 1
			d.buf = b
			return string(b), true
		case c == '\\':
			if i+1 >= len(in) {
				return "", false
			}
			switch e := in[i+1]; e {
			case '"', '\\', '/':
				b = append(b, e)
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case '\'', 'U':
				if !d.cpp {
					return "", false
				}
				if e == '\'' {
					b = append(b, e)
					break
				}
				fallthrough
			case 'u':
				r, next, ok := d.unicodeEscape(i + 2)
				if !ok {
					return "", false
				}
				b = utf8.AppendRune(b, r)
				i = next - 2
			default:
				return "", false
			}
			i += 2
		case c < ' ' && !d.cpp:
			return "", false
		case c < utf8.RuneSelf:
			b = append(b, c)
			i++
		default:
			n := d.runeLen(i)
			if n == 0 {
				return "", false
			}
			b = append(b, in[i:i+n]...)
			i += n
		}
	}
	return "", false
}

// unicodeEscape reads the four hexadecimal digits of a \u escape at d.in[i:], and a second
// escape when they are a high surrogate: only a low one may follow, as \u (C++ protobuf allows
// white space before it). It returns the code point and the index after the escape.
func (d *structDecoder) unicodeEscape(i int) (rune, int, bool) {
	in := d.in
	r, ok := hex4(in, i)
	if !ok || 0xDC00 <= r && r < 0xE000 {
		return 0, 0, false
	}
	i += 4
	if r < 0xD800 || r >= 0xDC00 {
		return r, i, true
	}
	if d.cpp {
		for i < len(in) && (in[i] == ' ' || in[i] == '\t' || in[i] == '\r' || in[i] == '\n') {
			i++
		}
	}
	if i+1 >= len(in) || in[i] != '\\' || in[i+1] != 'u' {
		return 0, 0, false
	}
	lo, ok := hex4(in, i+2)
	if !ok || lo < 0xDC00 || lo >= 0xE000 {
		return 0, 0, false
	}
	return 0x10000 + (r-0xD800)<<10 + (lo - 0xDC00), i + 6, true
}

// bareWord decodes an unquoted member name (C++ protobuf's legacy syntax): ASCII letters,
// digits and '_', not starting with a digit, and neither null, true nor false.
func (d *structDecoder) bareWord() (string, bool) {
	in := d.in
	i := d.pos
	for i < len(in) && (in[i] == '_' || '0' <= in[i] && in[i] <= '9' || 'a' <= in[i]|0x20 && in[i]|0x20 <= 'z') {
		i++
	}
	w := in[d.pos:i]
	if w == "" || w[0] <= '9' || w == "null" || w == "true" || w == "false" {
		return "", false
	}
	d.pos = i
	return w, true
}

// hex4 reads the four hexadecimal digits at in[i:].
func hex4(in string, i int) (rune, bool) {
	if i+4 > len(in) {
		return 0, false
	}
	var r rune
	for _, c := range []byte(in[i : i+4]) {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
