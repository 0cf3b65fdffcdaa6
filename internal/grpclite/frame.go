package grpclite

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"
)

// DefaultMaxReceive bounds a received message unless Options.MaxReceive is set: gRPC's default
// of 4 MiB.
const DefaultMaxReceive = 4 << 20

// frame marshals m into one length-prefixed gRPC message (uncompressed).
func frame(m proto.Message) ([]byte, error) {
	size := proto.Size(m)
	b := make([]byte, 5, 5+size)
	b, err := proto.MarshalOptions{}.MarshalAppend(b, m)
	if err != nil {
		return nil, statusf(Internal, "encoding the %s: %v", messageName(m), err)
	}
	return prefix(b, messageName(m))
}

// frameBytes frames the encoded message msg (uncompressed).
func frameBytes(msg []byte) ([]byte, error) {
	b := make([]byte, 5, 5+len(msg))
	return prefix(append(b, msg...), "request")
}

// prefix fills the 5-byte prefix of b, whose message (named name in errors) follows it.
func prefix(b []byte, name string) ([]byte, error) {
	if uint64(len(b)-5) > 1<<32-1 {
		return nil, statusf(ResourceExhausted, "the %s is %d bytes: too large for one gRPC message", name, len(b)-5)
	}
	binary.BigEndian.PutUint32(b[1:5], uint32(len(b)-5))
	return b, nil
}

// frameReader reads length-prefixed gRPC messages from an untrusted stream.
type frameReader struct {
	r   io.Reader
	max int // largest message accepted
	hdr [5]byte
}

// next returns the next message. It returns io.EOF when the stream ends between messages, and a
// *Status otherwise: Internal for a truncated or compressed message (the client never asks for
// compression), ResourceExhausted for one larger than max, refused before it is read.
func (f *frameReader) next() ([]byte, error) {
	if _, err := io.ReadFull(f.r, f.hdr[:]); err != nil {
		if err == io.EOF {
			return nil, io.EOF
		}
		return nil, readErr(err)
	}
	switch f.hdr[0] {
	case 0:
	case 1:
		return nil, statusf(Internal, "received a compressed message, but the client asked for no compression")
	default:
		return nil, statusf(Internal, "received a message with the unknown flags %#x", f.hdr[0])
	}
	n := binary.BigEndian.Uint32(f.hdr[1:])
	if uint64(n) > uint64(f.max) {
		return nil, statusf(ResourceExhausted, "received a message of %d bytes, larger than the limit of %d", n, f.max)
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(f.r, msg); err != nil {
		if err == io.EOF { // the stream ended right after the prefix
			err = io.ErrUnexpectedEOF
		}
		return nil, readErr(err)
	}
	return msg, nil
}

// readErr is a failure to read a message: truncation is Internal, other errors pass through
// (the caller maps transport failures).
func readErr(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return statusf(Internal, "the stream ended inside a message")
	}
	return err
}

// timeoutHeader renders d as a grpc-timeout value: at most 8 digits and a unit, rounded up so
// the server never sees less time than the client allows.
func timeoutHeader(d time.Duration) string {
	if d <= 0 {
		return "1n"
	}
	const maxDigits = 99_999_999
	units := []struct {
		unit time.Duration
		name string
	}{{time.Nanosecond, "n"}, {time.Microsecond, "u"}, {time.Millisecond, "m"}, {time.Second, "S"}, {time.Minute, "M"}, {time.Hour, "H"}}
	for _, u := range units {
		n := d / u.unit
		if d%u.unit != 0 {
			n++ // no overflow: d/u.unit is far below the maximum
		}
		if n <= maxDigits {
			return strconv.FormatInt(int64(n), 10) + u.name
		}
	}
	return fmt.Sprintf("%dH", maxDigits)
}

// messageName is m's message name for errors ("DiscoveryRequest").
func messageName(m proto.Message) string {
	return string(m.ProtoReflect().Descriptor().Name())
}
