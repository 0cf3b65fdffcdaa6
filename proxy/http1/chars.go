package http1

// Character classes of RFC 9110/9112, one bit each in charClass.
const (
	cToken  = 1 << iota // tchar: field names, methods, chunk extension names and values
	cTarget             // VCHAR: a request target in origin or absolute form (as Envoy: no CTL, SP, DEL or obs-text)
	cValue              // field-vchar, SP and HTAB: a field value (obs-text allowed, as Envoy and net/http)
	cHost               // authority characters of an absolute-form or authority-form target (Envoy's valid_host_char)
	cScheme             // ALPHA, DIGIT, "+", "-", "."
	cQdtext             // qdtext of a quoted-string
	cHex                // HEXDIG
)

var charClass = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		alnum := 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9'
		if alnum || contains("!#$%&'*+-.^_`|~", b) {
			t[c] |= cToken
		}
		if 0x21 <= b && b <= 0x7e {
			t[c] |= cTarget | cValue
		}
		if b >= 0x80 || b == ' ' || b == '\t' {
			t[c] |= cValue
		}
		if alnum || contains("!$%&'()*+,-.:;=@[]_~", b) {
			t[c] |= cHost
		}
		if alnum || contains("+-.", b) {
			t[c] |= cScheme
		}
		if b == '\t' || b == ' ' || b == 0x21 || 0x23 <= b && b <= 0x5b || 0x5d <= b && b <= 0x7e || b >= 0x80 {
			t[c] |= cQdtext
		}
		if '0' <= b && b <= '9' || 'a' <= b && b <= 'f' || 'A' <= b && b <= 'F' {
			t[c] |= cHex
		}
	}
	return t
}()

func contains(s string, b byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == b {
			return true
		}
	}
	return false
}

func isToken(c byte) bool { return charClass[c]&cToken != 0 }
func isAlpha(c byte) bool { return 'a' <= c|0x20 && c|0x20 <= 'z' }
func isOWS(c byte) bool   { return c == ' ' || c == '\t' }

// lower folds an ASCII letter to lower case.
func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func hexVal(c byte) uint64 {
	switch {
	case c <= '9':
		return uint64(c - '0')
	case c >= 'a':
		return uint64(c - 'a' + 10)
	default:
		return uint64(c - 'A' + 10)
	}
}
