package http1

// Limits bound what a Parser accepts; a request beyond them is answered 431, as Envoy does.
// A zero field takes its default.
type Limits struct {
	// MaxRequestLineBytes bounds the request line (method, target and version, without CRLF).
	// Default: MaxHeaderBytes (Envoy has no separate limit: the line counts in the headers).
	MaxRequestLineBytes int
	// MaxHeaderBytes bounds the whole head as received: request line and header field lines
	// with their CRLFs, like balsa's max_header_length, which Envoy sets from the
	// HttpConnectionManager's max_request_headers_kb. It bounds a trailer section separately.
	// Default 60 KiB (Envoy's default).
	MaxHeaderBytes int
	// MaxHeaderCount bounds the number of header fields (and, separately, trailer fields), like
	// Envoy's common_http_protocol_options.max_headers_count. Default 100 (Envoy's default).
	MaxHeaderCount int
}

// Defaults, Envoy's.
const (
	DefaultMaxHeaderBytes = 60 << 10
	DefaultMaxHeaderCount = 100
)

// maxChunkLine bounds a chunk-size line (size and extensions, without CRLF). net/http refuses
// lines of 4096 bytes or more, so the guard never accepts one that net/http would refuse.
const maxChunkLine = 4095

// normalized returns l with defaults filled in and values clamped to what the parser's
// counters hold.
func (l Limits) normalized() Limits {
	const maxInt32 = 1<<31 - 1
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if l.MaxHeaderBytes > maxInt32 {
		l.MaxHeaderBytes = maxInt32
	}
	if l.MaxRequestLineBytes <= 0 || l.MaxRequestLineBytes > l.MaxHeaderBytes {
		l.MaxRequestLineBytes = l.MaxHeaderBytes
	}
	if l.MaxHeaderCount <= 0 {
		l.MaxHeaderCount = DefaultMaxHeaderCount
	}
	if l.MaxHeaderCount > maxInt32 {
		l.MaxHeaderCount = maxInt32
	}
	return l
}
