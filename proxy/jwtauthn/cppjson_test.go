package jwtauthn

import (
	"math"
	"math/bits"
	"strconv"
	"strings"
	"unicode/utf8"
)

// cppJSON is a test oracle for decodeStructAs(data, cppJSONDepth, true): a small re-statement
// of C++ protobuf's JSON lexer and Struct parser (json/internal/lexer.{h,cc} and parser.cc as
// JsonStringToMessage runs them, allow_legacy_syntax set) in their own shape: Peek, Expect,
// PeekKind, VisitObject and VisitArray with a recursion budget, ParseUtf8, ParseRawNumber,
// ParseBareWord and ParseMap's keys_seen. It returns the Struct as Go values (map[string]any,
// []any, string, float64, bool, nil).
func cppJSON(data string) (map[string]any, bool) {
	l := &cppLexer{s: data, depth: 100}
	var top map[string]any
	if l.peekKind() == 'n' {
		if !l.expect("null") {
			return nil, false
		}
		top = map[string]any{}
	} else {
		v, ok := l.parseMap()
		if !ok {
			return nil, false
		}
		top = v
	}
	l.skip()
	return top, l.i == len(l.s)
}

type cppLexer struct {
	s     string
	i     int
	depth int // recursion_depth left
}

// skip is SkipToToken; false at the end of the input.
func (l *cppLexer) skip() bool {
	for l.i < len(l.s) {
		switch l.s[l.i] {
		case ' ', '\t', '\r', '\n':
			l.i++
		default:
			return true
		}
	}
	return false
}

// peek is Peek(literal): consumes literal when it comes next.
func (l *cppLexer) peek(lit string) bool {
	l.skip()
	if strings.HasPrefix(l.s[l.i:], lit) {
		l.i += len(lit)
		return true
	}
	return false
}

func (l *cppLexer) expect(lit string) bool { return l.skip() && l.peek(lit) }

// peekKind is PeekKind: '{', '[', '"' (either quote), '0' (a number), 't', 'f', 'n', or 0.
func (l *cppLexer) peekKind() byte {
	if !l.skip() {
		return 0
	}
	switch c := l.s[l.i]; {
	case c == '{' || c == '[' || c == 't' || c == 'f' || c == 'n':
		return c
	case c == '"' || c == '\'':
		return '"'
	case c == '-' || '0' <= c && c <= '9':
		return '0'
	}
	return 0
}

func (l *cppLexer) push() bool {
	if l.depth == 0 {
		return false
	}
	l.depth--
	return true
}

// parseMap is ParseMap over VisitObject: keys seen twice are refused.
func (l *cppLexer) parseMap() (map[string]any, bool) {
	if !l.expect("{") || !l.push() {
		return nil, false
	}
	m := map[string]any{}
	if l.peek("}") {
		l.depth++
		return m, true
	}
	hasComma := true
	for {
		if !hasComma || !l.skip() {
			return nil, false
		}
		var key string
		var ok bool
		if c := l.s[l.i]; c == '"' || c == '\'' {
			key, ok = l.parseUtf8()
		} else {
			key, ok = l.parseBareWord()
		}
		if !ok || !l.expect(":") {
			return nil, false
		}
		if _, seen := m[key]; seen {
			return nil, false
		}
		if m[key], ok = l.value(); !ok {
			return nil, false
		}
		hasComma = l.peek(",")
		if l.peek("}") {
			break
		}
	}
	l.depth++
	return m, true
}

// parseList is ParseArray over VisitArray.
func (l *cppLexer) parseList() ([]any, bool) {
	if !l.expect("[") || !l.push() {
		return nil, false
	}
	list := []any{}
	if l.peek("]") {
		l.depth++
		return list, true
	}
	hasComma := true
	for {
		if !hasComma {
			return nil, false
		}
		v, ok := l.value()
		if !ok {
			return nil, false
		}
		list = append(list, v)
		hasComma = l.peek(",")
		if l.peek("]") {
			break
		}
	}
	l.depth++
	return list, true
}

// value is ParseValue.
func (l *cppLexer) value() (any, bool) {
	switch l.peekKind() {
	case '{':
		return l.parseMap()
	case '[':
		return l.parseList()
	case '"':
		return l.parseUtf8()
	case '0':
		return l.parseNumber()
	case 't':
		return true, l.expect("true")
	case 'f':
		return false, l.expect("false")
	case 'n':
		return nil, l.expect("null")
	}
	return nil, false
}

// parseNumber is ParseRawNumber's TakeWhile and checks, then a finite double.
func (l *cppLexer) parseNumber() (any, bool) {
	l.skip()
	const (
		kInt = iota
		kFraction
		kExponent
	)
	state, prev := kInt, byte(0)
	start := l.i
	for ; l.i < len(l.s); l.i++ {
		c := l.s[l.i]
		p := prev
		prev = c
		isDigit := func(b byte) bool { return '0' <= b && b <= '9' }
		lastWasInt := isDigit(p)
		switch {
		case isDigit(c):
			continue
		case state == kInt && c == '-':
			if !lastWasInt {
				continue
			}
		case state == kInt && lastWasInt && c == '.':
			state = kFraction
			continue
		case state != kExponent && lastWasInt && (c == 'e' || c == 'E'):
			state = kExponent
			continue
		case (p == 'e' || p == 'E') && (c == '-' || c == '+'):
			continue
		}
		break
	}
	text := l.s[start:l.i]
	if text == "" || text == "-" {
		return nil, false
	}
	digits := strings.TrimPrefix(text, "-")
	if len(digits) > 1 && digits[0] == '0' && '0' <= digits[1] && digits[1] <= '9' {
		return nil, false
	}
	if text[len(text)-1] == '.' {
		return nil, false
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil && !strings.Contains(err.Error(), "range") || math.IsInf(f, 0) {
		return nil, false
	}
	if l.skip() && !strings.ContainsRune(",]}", rune(l.s[l.i])) {
		return nil, false
	}
	return f, true
}

// parseBareWord is ParseBareWord.
func (l *cppLexer) parseBareWord() (string, bool) {
	start := l.i
	for l.i < len(l.s) {
		c := l.s[l.i]
		if c != '_' && !('0' <= c && c <= '9') && !('a' <= c && c <= 'z') && !('A' <= c && c <= 'Z') {
			break
		}
		l.i++
	}
	w := l.s[start:l.i]
	if w == "" || '0' <= w[0] && w[0] <= '9' || w == "null" || w == "true" || w == "false" {
		return "", false
	}
	return w, true
}

// hex is ParseU16HexCodepoint.
func (l *cppLexer) hex() (rune, bool) {
	if l.i+4 > len(l.s) {
		return 0, false
	}
	n, err := strconv.ParseUint(l.s[l.i:l.i+4], 16, 16)
	if err != nil || strings.ContainsAny(l.s[l.i:l.i+4], "+-_xX") {
		return 0, false
	}
	l.i += 4
	return rune(n), true
}

// parseUtf8 is ParseUtf8 with allow_legacy_syntax.
func (l *cppLexer) parseUtf8() (string, bool) {
	l.skip()
	quote := l.s[l.i]
	l.i++
	var b []byte
	for l.i < len(l.s) {
		c := l.s[l.i]
		l.i++
		switch {
		case c == quote:
			return string(b), true
		case c == '\\':
			if l.i >= len(l.s) {
				return "", false
			}
			e := l.s[l.i]
			l.i++
			if e == 'u' || e == 'U' {
				r, ok := l.hex()
				if !ok {
					return "", false
				}
				if 0xD800 <= r && r <= 0xDBFF {
					if !l.expect(`\u`) {
						return "", false
					}
					lo, ok := l.hex()
					if !ok || lo < 0xDC00 || lo > 0xDFFF {
						return "", false
					}
					r = (r&0x3FF)<<10 | lo&0x3FF + 0x10000
				} else if 0xDC00 <= r && r <= 0xDFFF {
					return "", false
				}
				b = utf8.AppendRune(b, r)
				continue
			}
			i := strings.IndexByte(`"\/bfnrt'`, e)
			if i < 0 {
				return "", false
			}
			b = append(b, "\"\\/\b\f\n\r\t'"[i])
		default:
			var more int
			switch bits.LeadingZeros8(^c) {
			case 0:
			case 2, 3, 4:
				more = bits.LeadingZeros8(^c) - 1
			default:
				return "", false
			}
			b = append(b, c)
			for ; more > 0; more-- {
				if l.i >= len(l.s) || l.s[l.i]>>6 != 2 {
					return "", false
				}
				b = append(b, l.s[l.i])
				l.i++
			}
		}
	}
	return "", false
}
