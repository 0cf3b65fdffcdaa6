package h1

import "os"

// ErrWriteStall is the error (inside a *net.OpError) of a write that made no progress for the
// connection's write stall limit (SetWriteStall): the peer accepted no byte for that long. It
// is a timeout: errors.Is(err, os.ErrDeadlineExceeded) holds and net.Error's Timeout reports
// true, so callers that only look for a timeout see one.
var ErrWriteStall error = stallError{}

type stallError struct{}

func (stallError) Error() string {
	return "write stalled: the peer accepted no byte within the write stall limit"
}

// Timeout implements net.Error.
func (stallError) Timeout() bool { return true }

// Temporary implements net.Error (as os.ErrDeadlineExceeded does).
func (stallError) Temporary() bool { return true }

// Is makes a stall match os.ErrDeadlineExceeded.
func (stallError) Is(target error) bool { return target == os.ErrDeadlineExceeded }
