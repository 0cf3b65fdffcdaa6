package telemetry

// GRPCFrames counts the length-prefixed messages of one direction of a gRPC stream as its
// bytes go by, for istio_request_messages_total and istio_response_messages_total. A gRPC
// message is a 5-byte header (a compressed-flag byte and a 4-byte big-endian length) followed
// by that many bytes; the counter reads the headers and skips the payloads without buffering
// anything, so it needs no memory beyond its fields however large a message claims to be.
//
// A message counts when its first header byte arrives, as Envoy's gRPC frame inspector counts
// frames (a stream cut short in a message still counts it). The zero value is ready; Feed and
// Messages are not safe for concurrent use.
type GRPCFrames struct {
	messages uint64
	skip     uint64 // payload bytes of the current message not yet seen
	length   uint32 // the current header's length, as far as its bytes arrived
	header   uint8  // header bytes of the current message seen (0: between messages)
}

// grpcHeaderLen is the length of a gRPC message's prefix: flag and 4-byte length.
const grpcHeaderLen = 5

// Feed reads the next bytes of the stream, in order. It does not retain p.
func (f *GRPCFrames) Feed(p []byte) {
	for len(p) > 0 {
		if f.skip > 0 {
			n := uint64(len(p))
			if n > f.skip {
				n = f.skip
			}
			f.skip -= n
			p = p[n:]
			continue
		}
		c := p[0]
		p = p[1:]
		if f.header == 0 {
			f.messages++ // the flag byte starts a message
			f.header, f.length = 1, 0
			continue
		}
		f.length = f.length<<8 | uint32(c)
		if f.header++; f.header == grpcHeaderLen {
			f.header, f.skip = 0, uint64(f.length)
		}
	}
}

// Messages returns the number of messages started so far.
func (f *GRPCFrames) Messages() uint64 { return f.messages }
