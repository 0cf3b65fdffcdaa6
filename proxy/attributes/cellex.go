package attributes

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// tokKind is a lexical token's kind (CEL's lexis, langdef "Syntax").
type tokKind uint8

const (
	tEOF tokKind = iota
	tIdent
	tInt
	tUint
	tDouble
	tString
	tBytes
	tPunct // operators and delimiters; text holds the symbol
)

type token struct {
	kind tokKind
	text string // identifier, punctuation or the literal's source text
	val  Value  // the literal's value
	pos  int    // byte offset
}

// syntaxError is a parse failure with its position.
type syntaxError struct {
	line, col int
	msg       string
}

func (e *syntaxError) Error() string {
	return fmt.Sprintf("%d:%d: Syntax error: %s", e.line, e.col, e.msg)
}

// reserved are CEL's reserved words besides the literals true, false, null and the operator in.
var reserved = map[string]bool{"as": true, "break": true, "const": true, "continue": true, "else": true,
	"for": true, "function": true, "if": true, "import": true, "let": true, "loop": true,
	"package": true, "namespace": true, "return": true, "var": true, "void": true, "while": true}

type lexer struct {
	src string
	pos int
}

func (l *lexer) errAt(pos int, f string, a ...any) error {
	line, col := 1, 1
	for i, r := range l.src[:min(pos, len(l.src))] {
		_ = i
		if r == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return &syntaxError{line: line, col: col, msg: fmt.Sprintf(f, a...)}
}

// threeChar and twoChar are the multi-character operators.
var twoChar = []string{"==", "!=", "<=", ">=", "&&", "||"}

// next returns the next token.
func (l *lexer) next() (token, error) {
	// Whitespace and comments.
	for l.pos < len(l.src) {
		c := l.src[l.pos]
		if c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' {
			l.pos++
			continue
		}
		if strings.HasPrefix(l.src[l.pos:], "//") {
			i := strings.IndexAny(l.src[l.pos:], "\r\n")
			if i < 0 {
				l.pos = len(l.src)
			} else {
				l.pos += i
			}
			continue
		}
		break
	}
	start := l.pos
	if l.pos >= len(l.src) {
		return token{kind: tEOF, pos: start}, nil
	}
	c := l.src[l.pos]
	switch {
	case c == '.' && l.pos+1 < len(l.src) && isDigit(l.src[l.pos+1]):
		return l.number()
	case isDigit(c):
		return l.number()
	case isIdentStart(c):
		// String and bytes prefixes: r, b or br (either case) directly followed by a quote.
		j := l.pos
		raw, byt := false, false
		if l.src[j] == 'b' || l.src[j] == 'B' {
			byt = true
			j++
		}
		if j < len(l.src) && (l.src[j] == 'r' || l.src[j] == 'R') {
			raw = true
			j++
		}
		if j > l.pos && j < len(l.src) && (l.src[j] == '"' || l.src[j] == '\'') {
			l.pos = j
			return l.str(start, raw, byt)
		}
		for l.pos < len(l.src) && (isIdentStart(l.src[l.pos]) || isDigit(l.src[l.pos])) {
			l.pos++
		}
		return token{kind: tIdent, text: l.src[start:l.pos], pos: start}, nil
	case c == '"' || c == '\'':
		return l.str(start, false, false)
	}
	for _, op := range twoChar {
		if strings.HasPrefix(l.src[l.pos:], op) {
			l.pos += 2
			return token{kind: tPunct, text: op, pos: start}, nil
		}
	}
	if strings.IndexByte("+-*/%!<>?:.,()[]{}", c) >= 0 {
		l.pos++
		return token{kind: tPunct, text: l.src[start:l.pos], pos: start}, nil
	}
	r, _ := utf8.DecodeRuneInString(l.src[l.pos:])
	return token{}, l.errAt(start, "token recognition error at: %q", string(r))
}

func isDigit(c byte) bool      { return c >= '0' && c <= '9' }
func isHex(c byte) bool        { return isDigit(c) || (c|0x20) >= 'a' && (c|0x20) <= 'f' }
func isIdentStart(c byte) bool { return c == '_' || (c|0x20) >= 'a' && (c|0x20) <= 'z' }

// number lexes an int, uint or double literal (without sign).
func (l *lexer) number() (token, error) {
	s := l.src
	start := l.pos
	if strings.HasPrefix(s[l.pos:], "0x") {
		l.pos += 2
		h := l.pos
		for l.pos < len(s) && isHex(s[l.pos]) {
			l.pos++
		}
		if l.pos == h {
			return token{}, l.errAt(start, "malformed hexadecimal literal")
		}
		kind := tInt
		if l.pos < len(s) && (s[l.pos] == 'u' || s[l.pos] == 'U') {
			kind = tUint
			l.pos++
		}
		return token{kind: kind, text: s[start:l.pos], pos: start}, nil
	}
	for l.pos < len(s) && isDigit(s[l.pos]) {
		l.pos++
	}
	float := false
	if l.pos+1 < len(s) && s[l.pos] == '.' && isDigit(s[l.pos+1]) {
		float = true
		l.pos++
		for l.pos < len(s) && isDigit(s[l.pos]) {
			l.pos++
		}
	}
	if l.pos < len(s) && (s[l.pos] == 'e' || s[l.pos] == 'E') {
		j := l.pos + 1
		if j < len(s) && (s[j] == '+' || s[j] == '-') {
			j++
		}
		if j < len(s) && isDigit(s[j]) {
			float = true
			for j < len(s) && isDigit(s[j]) {
				j++
			}
			l.pos = j
		}
	}
	if float {
		return token{kind: tDouble, text: s[start:l.pos], pos: start}, nil
	}
	if l.pos < len(s) && (s[l.pos] == 'u' || s[l.pos] == 'U') {
		l.pos++
		return token{kind: tUint, text: s[start:l.pos], pos: start}, nil
	}
	return token{kind: tInt, text: s[start:l.pos], pos: start}, nil
}

// numberValue converts a number token (with an optional leading minus) to its value.
func (l *lexer) numberValue(t token, neg bool) (Value, error) {
	text := t.text
	switch t.kind {
	case tDouble:
		if neg {
			text = "-" + text
		}
		f, err := strconv.ParseFloat(text, 64)
		if err != nil { // out of range included
			return Value{}, l.errAt(t.pos, "invalid double literal %s", text)
		}
		return doubleVal(f), nil
	case tUint:
		body := text[:len(text)-1]
		base := 10
		if strings.HasPrefix(body, "0x") {
			body, base = body[2:], 16
		}
		u, err := strconv.ParseUint(body, base, 64)
		if err != nil {
			return Value{}, l.errAt(t.pos, "invalid uint literal %s", text)
		}
		return uintVal(u), nil
	}
	body := text
	base := 10
	if strings.HasPrefix(body, "0x") {
		body, base = body[2:], 16
	}
	if neg {
		body = "-" + body
	}
	i, err := strconv.ParseInt(body, base, 64)
	if err != nil {
		return Value{}, l.errAt(t.pos, "invalid int literal %s", text)
	}
	return intVal(i), nil
}

// str lexes a string or bytes literal whose opening quote is at l.pos.
func (l *lexer) str(start int, raw, byt bool) (token, error) {
	s := l.src
	q := s[l.pos : l.pos+1]
	if strings.HasPrefix(s[l.pos:], q+q+q) {
		q = q + q + q
	}
	l.pos += len(q)
	var b strings.Builder
	for {
		if l.pos >= len(s) {
			return token{}, l.errAt(start, "unterminated string literal")
		}
		if strings.HasPrefix(s[l.pos:], q) {
			l.pos += len(q)
			break
		}
		c := s[l.pos]
		if len(q) == 1 && (c == '\n' || c == '\r') {
			return token{}, l.errAt(start, "newline in string literal")
		}
		if c == '\r' { // a line break in a triple-quoted string is \n, whatever its form
			b.WriteByte('\n')
			l.pos++
			if l.pos < len(s) && s[l.pos] == '\n' {
				l.pos++
			}
			continue
		}
		if c != '\\' || raw {
			b.WriteByte(c)
			l.pos++
			continue
		}
		if err := l.escape(&b, byt); err != nil {
			return token{}, err
		}
	}
	t := token{kind: tString, text: s[start:l.pos], pos: start}
	out := b.String()
	if byt {
		t.kind = tBytes
		t.val = bytesVal(out)
		return t, nil
	}
	if !utf8.ValidString(out) {
		return token{}, l.errAt(start, "invalid UTF-8 in string literal")
	}
	t.val = stringVal(out)
	return t, nil
}

var simpleEscapes = map[byte]byte{'a': '\a', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t', 'v': '\v',
	'\\': '\\', '\'': '\'', '"': '"', '`': '`', '?': '?'}

// escape decodes one escape sequence at l.pos (a backslash) into b.
func (l *lexer) escape(b *strings.Builder, byt bool) error {
	s := l.src
	at := l.pos
	l.pos++
	if l.pos >= len(s) {
		return l.errAt(at, "unterminated escape sequence")
	}
	c := s[l.pos]
	l.pos++
	if r, ok := simpleEscapes[c]; ok {
		b.WriteByte(r)
		return nil
	}
	hex := func(n int) (uint64, error) {
		if l.pos+n > len(s) {
			return 0, l.errAt(at, "invalid escape sequence")
		}
		for i := 0; i < n; i++ {
			if !isHex(s[l.pos+i]) {
				return 0, l.errAt(at, "invalid escape sequence")
			}
		}
		v, _ := strconv.ParseUint(s[l.pos:l.pos+n], 16, 32)
		l.pos += n
		return v, nil
	}
	var code uint64
	var err error
	switch {
	case c == 'x' || c == 'X':
		code, err = hex(2)
		if err != nil {
			return err
		}
		if byt {
			b.WriteByte(byte(code))
			return nil
		}
	case c == 'u' || c == 'U':
		if byt {
			return l.errAt(at, "\\%c escapes are not allowed in bytes literals", c)
		}
		n := 4
		if c == 'U' {
			n = 8
		}
		code, err = hex(n)
		if err != nil {
			return err
		}
		if code > utf8.MaxRune || (code >= 0xD800 && code < 0xE000) {
			return l.errAt(at, "invalid unicode code point in escape sequence")
		}
	case c >= '0' && c <= '3':
		if l.pos+2 > len(s) || s[l.pos] < '0' || s[l.pos] > '7' || s[l.pos+1] < '0' || s[l.pos+1] > '7' {
			return l.errAt(at, "invalid octal escape sequence")
		}
		code = uint64(c-'0')<<6 | uint64(s[l.pos]-'0')<<3 | uint64(s[l.pos+1]-'0')
		l.pos += 2
		if byt {
			b.WriteByte(byte(code))
			return nil
		}
	default:
		return l.errAt(at, "invalid escape sequence \\%c", c)
	}
	b.WriteRune(rune(code))
	return nil
}
