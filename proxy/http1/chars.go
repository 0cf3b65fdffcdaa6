package http1

import (
	"encoding/binary"
	"math/bits"
)

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

// Word-at-a-time scans. In each word of eight bytes, (x - ones*n) &^ x & highs has a byte's
// top bit set where the byte is below n (n <= 0x80), and (y - ones) &^ y & highs with
// y = x ^ ones*k where the byte equals k — exactly when some byte is (borrows may mark more
// bytes above the first such one, never one where there is none, so the lowest marked byte is
// the first such byte).
const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

func load64(b []byte) uint64 {
	_ = b[7]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

func load64s(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

func load32(b []byte) uint32 {
	_ = b[3]
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

func load32s(s string) uint32 {
	_ = s[3]
	return uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
}

// tokenRun returns the length of b's longest prefix of token bytes (cToken), eight at a time
// while it can. The lowest byte of a word that nameMask marks is the first in it that is no
// letter and no '-': a digit or another tchar goes on (one byte by the table, then words
// again), anything else ends the run.
func tokenRun(b []byte) int {
	i := 0
	for len(b)-i >= 8 {
		m := nameMask(binary.LittleEndian.Uint64(b[i : i+8]))
		if m == 0 {
			i += 8
			continue
		}
		i += bits.TrailingZeros64(m) >> 3
		if charClass[b[i]]&cToken == 0 {
			return i
		}
		i++
	}
	for i < len(b) && charClass[b[i]]&cToken != 0 {
		i++
	}
	return i
}

// nameMask returns the top bit of every byte of the word x that is neither an ASCII letter
// nor '-', exactly: each byte is tested on its low seven bits (sums of at most 0x7f+0x7f that
// never carry into the next byte), then bytes above 0x7f are marked.
func nameMask(x uint64) uint64 {
	l := x &^ highs
	ly := l | ones*0x20                                      // letters folded to lower case
	ok := (ly + ones*(0x80-'a')) &^ (ly + ones*(0x80-'z'-1)) // 'a' <= ly <= 'z'
	ok |= ^((l ^ ones*'-') + ones*0x7f)                      // l == '-'
	return highs &^ (ok &^ x)
}

// valueRun returns the length of b's longest prefix of field-value bytes (cValue: VCHAR, SP,
// HTAB, obs-text). The lowest marked byte of a word is the first CTL or DEL in it (ctlMask):
// past an HTAB the scan goes on, at anything else it ends.
func valueRun(b []byte) int {
	i := 0
	for len(b)-i >= 8 {
		m := ctlMask(binary.LittleEndian.Uint64(b[i : i+8]))
		if m == 0 {
			i += 8
			continue
		}
		i += bits.TrailingZeros64(m) >> 3
		if b[i] != '\t' {
			return i
		}
		i++
	}
	for i < len(b) && charClass[b[i]]&cValue != 0 {
		i++
	}
	return i
}

// ctlMask marks bytes of the word x below 0x20 or equal to 0x7f (CTL and DEL), exactly: each
// byte is tested on its low seven bits (sums that never carry into the next byte), and bytes
// above 0x7f are never marked.
func ctlMask(x uint64) uint64 {
	l := x &^ highs
	return (^(l + ones*0x60) | (l + ones)) &^ x & highs // l < 0x20 or l == 0x7f, below 0x80
}

// targetRun returns the length of b's longest prefix of request-target bytes (cTarget: VCHAR).
// The lowest marked byte of a word is the first CTL, SP, DEL or byte above 0x7f in it.
func targetRun(b []byte) int {
	i := 0
	for ; len(b)-i >= 8; i += 8 {
		x := binary.LittleEndian.Uint64(b[i : i+8])
		y := x ^ ones*0x7f
		if m := (x-ones*0x21)&^x&highs | x&highs | (y-ones)&^y&highs; m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
	}
	for i < len(b) && charClass[b[i]]&cTarget != 0 {
		i++
	}
	return i
}
