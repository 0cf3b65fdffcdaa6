package httpmsg

// The checks a field must pass to be written (RFC 9110 section 5.5, 5.6.2): a name is a
// token; a value has no control character but HTAB — no CR, LF or NUL, no DEL — so that it
// cannot change a message's framing. Add and AddBytes mark a field that passes them valid, and
// the HTTP/1.1 writer checks only fields not marked.

// ValidName reports whether b is a field name: a token.
func ValidName(b []byte) bool { return validName(unsafeString(b)) }

// ValidValue reports whether b may be a field value: no control character but HTAB.
func ValidValue(b []byte) bool { return validValue(unsafeString(b)) }

// ValidValueString is ValidValue for a string.
func ValidValueString(s string) bool { return validValue(s) }

// validName reports whether b is a token. Most names are letters, digits and "-": eight
// bytes are tested at a time for those (see nameWord), and a word with another byte, or a
// name shorter than a word, byte by byte. It takes a string only (a []byte is viewed as one
// with unsafeString): one copy of its code serves both.
func validName(b string) bool {
	n := len(b)
	if n < 8 {
		return n > 0 && validToken(b)
	}
	// The last word overlaps the one before when n%8 != 0.
	for i := 0; i < n-8; i += 8 {
		if !nameWord(load64(b[i:])) && !validToken(b[i:i+8]) {
			return false
		}
	}
	return nameWord(load64(b[n-8:])) || validToken(b[n-8:])
}

// nameWord reports whether each byte of x is an ASCII letter, digit or "-". With every top
// bit clear, adding 0x80-k to a byte sets its top bit exactly when the byte is at least k,
// and carries into no other byte; y's bytes are zero where x has a "-".
func nameWord(x uint64) bool {
	const ones, highs, lows = 0x0101010101010101, 0x8080808080808080, 0x7f7f7f7f7f7f7f7f
	if x&highs != 0 {
		return false
	}
	l := x | ones*0x20 // letters folded to lower case; no other byte lands on a letter
	letter := (l + ones*(0x80-'a')) &^ (l + ones*(0x80-'z'-1))
	digit := (x + ones*(0x80-'0')) &^ (x + ones*(0x80-'9'-1))
	y := x ^ ones*'-'
	dash := ^((y&lows + lows) | y)
	return (letter|digit|dash)&highs == highs
}

func validToken[T string | []byte](b T) bool {
	for i := 0; i < len(b); i++ {
		if !tchar[b[i]] {
			return false
		}
	}
	return true
}

// validValue reports whether b holds no control character other than HTAB (no CR, LF or NUL,
// no DEL). Eight bytes are tested at a time (see valueWord); a word with a mark, or a value
// shorter than a word, is checked byte by byte, as HTAB is allowed. String only, as validName.
func validValue(b string) bool {
	n := len(b)
	if n < 8 {
		return validBytes(b)
	}
	// The last word overlaps the one before when n%8 != 0.
	for i := 0; i < n-8; i += 8 {
		if !valueWord(load64(b[i:])) && !validBytes(b[i:i+8]) {
			return false
		}
	}
	return valueWord(load64(b[n-8:])) || validBytes(b[n-8:])
}

// valueWord reports whether x (eight bytes) has no byte below 0x20 and none 0x7f: lt has a
// byte's top bit set where the byte is below 0x20 and del where it is 0x7f, exactly when some
// byte is (borrows may mark more bytes above the first such one, never one where there is
// none).
func valueWord(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	lt := (x - ones*0x20) &^ x & highs
	y := x ^ ones*0x7f
	del := (y - ones) &^ y & highs
	return lt|del == 0
}

func validBytes[T string | []byte](b T) bool {
	for i := 0; i < len(b); i++ {
		if c := b[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// tchar marks token characters (RFC 9110 section 5.6.2).
var tchar = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		t[c] = 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9'
	}
	for _, c := range []byte("!#$%&'*+-.^_`|~") {
		t[c] = true
	}
	return t
}()

func load64[T string | []byte](b T) uint64 {
	_ = b[7]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

func load32[T string | []byte](b T) uint32 {
	_ = b[3]
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}
