package grpclite

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/net/http2"
)

// Code is a gRPC status code (the grpc-status trailer).
type Code uint32

// The gRPC status codes.
const (
	OK                 Code = 0
	Canceled           Code = 1
	Unknown            Code = 2
	InvalidArgument    Code = 3
	DeadlineExceeded   Code = 4
	NotFound           Code = 5
	AlreadyExists      Code = 6
	PermissionDenied   Code = 7
	ResourceExhausted  Code = 8
	FailedPrecondition Code = 9
	Aborted            Code = 10
	OutOfRange         Code = 11
	Unimplemented      Code = 12
	Internal           Code = 13
	Unavailable        Code = 14
	DataLoss           Code = 15
	Unauthenticated    Code = 16
)

var codeNames = [...]string{
	"OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound", "AlreadyExists",
	"PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange",
	"Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated",
}

// String is the code's name as gRPC spells it ("DeadlineExceeded"), or "Code(n)".
func (c Code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return "Code(" + strconv.FormatUint(uint64(c), 10) + ")"
}

// Status is a call's failure: the server's grpc-status, grpc-message and
// grpc-status-details-bin, or a status the client derived from a transport failure, as gRPC
// specifies. A *Status is the error every failed call returns (see FromError).
type Status struct {
	Code    Code
	Message string
	// Details is the raw grpc-status-details-bin value: an encoded google.rpc.Status, or nil.
	Details []byte
}

// Error renders the status like grpc-go does: "rpc error: code = NotFound desc = ...".
func (s *Status) Error() string {
	return fmt.Sprintf("rpc error: code = %s desc = %s", s.Code, s.Message)
}

// FromError returns the *Status in err's chain; ok is false when there is none.
func FromError(err error) (s *Status, ok bool) {
	ok = errors.As(err, &s)
	return s, ok
}

// CodeOf is err's status code: OK for nil, Unknown for an error that carries no *Status.
func CodeOf(err error) Code {
	if err == nil {
		return OK
	}
	if s, ok := FromError(err); ok {
		return s.Code
	}
	return Unknown
}

func statusf(c Code, format string, args ...any) *Status {
	return &Status{Code: c, Message: fmt.Sprintf(format, args...)}
}

// httpStatusCode maps a non-200 HTTP status to a gRPC code per gRPC's "HTTP to gRPC Status
// Code Mapping".
func httpStatusCode(status int) Code {
	switch status {
	case http.StatusBadRequest:
		return Internal
	case http.StatusUnauthorized:
		return Unauthenticated
	case http.StatusForbidden:
		return PermissionDenied
	case http.StatusNotFound:
		return Unimplemented
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return Unavailable
	}
	return Unknown
}

// transportStatus turns a failure to send or receive on ctx's call into a Status: the
// context's own end first, then an RST_STREAM's code per gRPC's "HTTP2 Transport Mapping",
// anything else (a broken or refused connection) Unavailable.
func transportStatus(ctx context.Context, err error) *Status {
	if s, ok := FromError(err); ok {
		return s
	}
	switch ctx.Err() {
	case context.DeadlineExceeded:
		return statusf(DeadlineExceeded, "context deadline exceeded")
	case context.Canceled:
		return statusf(Canceled, "context canceled")
	}
	var se http2.StreamError
	if errors.As(err, &se) {
		c := Internal
		switch se.Code {
		case http2.ErrCodeRefusedStream:
			c = Unavailable
		case http2.ErrCodeCancel:
			c = Canceled
			// A server resets a call whose deadline it saw pass (grpc-go does): when the
			// client's deadline has passed too, that is the cause.
			if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
				c = DeadlineExceeded
			}
		case http2.ErrCodeEnhanceYourCalm:
			c = ResourceExhausted
		case http2.ErrCodeInadequateSecurity:
			c = PermissionDenied
		}
		return statusf(c, "stream reset by the server: %v", se.Code)
	}
	return statusf(Unavailable, "%v", err)
}

// headerStatus reads the status carried by h (a trailers-only reply's headers, or the
// trailers); ok is false when h has no grpc-status.
func headerStatus(h http.Header) (s *Status, ok bool) {
	v := h.Values("Grpc-Status")
	if len(v) == 0 {
		return nil, false
	}
	s = &Status{Code: Unknown, Message: percentDecode(h.Get("Grpc-Message"))}
	if n, err := strconv.ParseUint(v[0], 10, 32); err == nil && len(v) == 1 {
		s.Code = Code(n)
	} else {
		s.Message = fmt.Sprintf("invalid grpc-status %q: %s", v, s.Message)
	}
	if d := h.Get("Grpc-Status-Details-Bin"); d != "" {
		if b, err := decodeBinary(d); err == nil {
			s.Details = b
		}
	}
	return s, true
}

// percentDecode decodes a grpc-message: %XX sequences become their byte, and an invalid
// sequence is kept as it is (gRPC's spec: never fail on a malformed message).
func percentDecode(s string) string {
	i := 0
	for i < len(s) && s[i] != '%' {
		i++
	}
	if i == len(s) {
		return s
	}
	b := make([]byte, 0, len(s))
	b = append(b, s[:i]...)
	for ; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if hi, ok1 := unhex(s[i+1]); ok1 {
				if lo, ok2 := unhex(s[i+2]); ok2 {
					b = append(b, hi<<4|lo)
					i += 2
					continue
				}
			}
		}
		b = append(b, s[i])
	}
	return string(b)
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
