package sniff

import (
	"bytes"

	"github.com/strait-mesh/strait/internal/vocab"
)

// HTTP detection results.
const (
	// ProtoHTTP10 is the application protocol Envoy's http_inspector reports for HTTP/1.0.
	ProtoHTTP10 = vocab.ALPNHTTP10
	// ProtoHTTP11 is the application protocol reported for an HTTP/1.1 request line.
	ProtoHTTP11 = vocab.ALPNHTTP11
	// ProtoH2C is the application protocol reported for the HTTP/2 prior-knowledge preface.
	ProtoH2C = vocab.ALPNH2C
)

// MaxRequestLine bounds how many bytes DetectHTTP looks at before deciding the data is not HTTP,
// as Envoy's http_inspector does.
const MaxRequestLine = 8 * 1024

// maxMethodLen bounds the request method token.
const maxMethodLen = 32

// h2Preface is the HTTP/2 client connection preface (RFC 9113 §3.4).
var h2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// DetectHTTP reports which HTTP protocol the first bytes of a plaintext connection speak. It returns
// ("", ErrShort) when more bytes are needed to decide, ("", ErrNotHTTP) when the bytes are not an
// HTTP/1.x request line nor the HTTP/2 preface, and otherwise ProtoHTTP10, ProtoHTTP11 or ProtoH2C.
func DetectHTTP(b []byte) (string, error) {
	if len(b) == 0 {
		return "", ErrShort
	}
	// HTTP/2 preface: "PRI" is also a valid HTTP/1 method token, so check it first.
	n := min(len(b), len(h2Preface))
	if bytes.Equal(b[:n], h2Preface[:n]) {
		if n == len(h2Preface) {
			return ProtoH2C, nil
		}
		return "", ErrShort
	}
	// HTTP/1.x: method SP request-target SP HTTP/1.x CRLF.
	i := 0
	for i < len(b) && isTokenChar(b[i]) {
		i++
		if i > maxMethodLen {
			return "", ErrNotHTTP
		}
	}
	if i == len(b) {
		return "", ErrShort
	}
	if i == 0 || b[i] != ' ' {
		return "", ErrNotHTTP
	}
	i++
	start := i
	for i < len(b) && b[i] != ' ' {
		c := b[i]
		if c <= ' ' || c == 0x7f {
			return "", ErrNotHTTP
		}
		i++
		if i > MaxRequestLine {
			return "", ErrNotHTTP
		}
	}
	if i == len(b) {
		return "", ErrShort
	}
	if i == start {
		return "", ErrNotHTTP
	}
	i++ // SP
	rest := b[i:]
	const prefix = "HTTP/1."
	n = min(len(rest), len(prefix))
	if string(rest[:n]) != prefix[:n] {
		return "", ErrNotHTTP
	}
	if len(rest) < len(prefix)+1 {
		return "", ErrShort
	}
	minor := rest[len(prefix)]
	if minor != '0' && minor != '1' {
		return "", ErrNotHTTP
	}
	eol := rest[len(prefix)+1:]
	switch {
	case len(eol) == 0:
		return "", ErrShort
	case eol[0] == '\n': // bare LF, accepted as HTTP parsers do
	case eol[0] != '\r':
		return "", ErrNotHTTP
	case len(eol) == 1:
		return "", ErrShort
	case eol[1] != '\n':
		return "", ErrNotHTTP
	}
	if minor == '0' {
		return ProtoHTTP10, nil
	}
	return ProtoHTTP11, nil
}

// isTokenChar reports whether c is an RFC 9110 tchar.
func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}
