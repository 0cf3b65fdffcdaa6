package http1

// Error is a rejected request: the status to answer and Envoy's response code details. The
// values below are the only ones the package returns; compare with == or errors.Is.
type Error struct {
	// Status is the HTTP status Envoy answers with: 400, 431 or 501.
	Status int
	// Details is Envoy's response code details string (what %RESPONSE_CODE_DETAILS% logs),
	// e.g. "http1.codec_error".
	Details string
	// Reason names the parse error as Envoy's codec reports it (http-parser's or balsa's name).
	Reason string
	msg    string
}

func (e *Error) Error() string { return e.msg }

func newError(status int, details, reason string) *Error {
	return &Error{Status: status, Details: details, Reason: reason,
		msg: "http/1.1 protocol error: " + reason + " (" + details + ")"}
}

// Envoy's details strings (source/common/http/http1/codec_impl.cc, Http1ResponseCodeDetails).
const (
	detailsCodecError        = "http1.codec_error"
	detailsInvalidCharacters = "http1.invalid_characters"
	detailsHeadersTooLarge   = "http1.headers_too_large"
	detailsTooManyHeaders    = "http1.too_many_headers"
	detailsChunkedCL         = "http1.content_length_and_chunked_not_allowed"
	detailsInvalidTE         = "http1.invalid_transfer_encoding"
	detailsBodyDisallowed    = "http1.body_disallowed"
)

// Rejections of a request head.
var (
	ErrInvalidMethod   = newError(400, detailsCodecError, "HPE_INVALID_METHOD")
	ErrInvalidURL      = newError(400, detailsCodecError, "HPE_INVALID_URL")
	ErrInvalidVersion  = newError(400, detailsCodecError, "HPE_INVALID_VERSION")
	ErrBareLF          = newError(400, detailsCodecError, "HPE_CR_EXPECTED")
	ErrBareCR          = newError(400, detailsCodecError, "HPE_LF_EXPECTED")
	ErrObsFold         = newError(400, detailsCodecError, "HPE_UNEXPECTED_SPACE")
	ErrHeaderName      = newError(400, detailsCodecError, "HPE_INVALID_HEADER_TOKEN")
	ErrHeaderValue     = newError(400, detailsInvalidCharacters, "header value contains invalid chars")
	ErrDuplicateLength = newError(400, detailsCodecError, "HPE_UNEXPECTED_CONTENT_LENGTH")
	ErrInvalidLength   = newError(400, detailsCodecError, "UNPARSABLE_CONTENT_LENGTH")
	ErrLengthOverflow  = newError(400, detailsCodecError, "CONTENT_LENGTH_OVERFLOW")
	ErrDuplicateHost   = newError(400, detailsCodecError, "MULTIPLE_HOST_HEADERS")
	ErrLengthAndTE     = newError(400, detailsChunkedCL, "both 'Content-Length' and 'Transfer-Encoding' are set")
	ErrUnsupportedTE   = newError(501, detailsInvalidTE, "unsupported transfer encoding")
	ErrTEInHTTP10      = newError(400, detailsInvalidTE, "Transfer-Encoding in an HTTP/1.0 request")
	ErrConnectBody     = newError(400, detailsBodyDisallowed, "unsupported content length")
	ErrHeadersTooLarge = newError(431, detailsHeadersTooLarge, "headers size exceeds limit")
	ErrTooManyHeaders  = newError(431, detailsTooManyHeaders, "headers count exceeds limit")
)

// Rejections of a chunked body.
var (
	ErrChunkSize        = newError(400, detailsCodecError, "HPE_INVALID_CHUNK_SIZE")
	ErrChunkExtension   = newError(400, detailsCodecError, "INVALID_CHUNK_EXTENSION")
	ErrChunkData        = newError(400, detailsCodecError, "HPE_STRICT")
	ErrTrailersTooLarge = newError(431, detailsHeadersTooLarge, "trailers size exceeds limit")
	ErrTooManyTrailers  = newError(431, detailsTooManyHeaders, "trailers count exceeds limit")
)
