// Package sniff inspects the first bytes of a downstream connection without consuming them, as
// Envoy's tls_inspector and http_inspector listener filters do: it parses a TLS ClientHello (server
// name, ALPN, supported versions) and recognises HTTP/1.x request lines and the HTTP/2 connection
// preface. Inspected bytes are replayed to whoever reads the connection next (see Conn).
//
// Every parser here reads untrusted bytes: lengths are checked before use, sizes and counts are
// bounded, and no input makes them allocate more than a small multiple of the input size.
package sniff

import (
	"errors"
	"strings"
)

// Errors returned by ParseClientHello.
var (
	// ErrShort means the bytes are a valid prefix of a ClientHello; read more and call again.
	ErrShort = errors.New("sniff: need more data")
	// ErrNotTLS means the bytes are not a TLS handshake record carrying a ClientHello.
	ErrNotTLS = errors.New("sniff: not a TLS ClientHello")
	// ErrNotHTTP means the bytes are neither an HTTP/1.x request line nor the HTTP/2 preface.
	ErrNotHTTP = errors.New("sniff: not HTTP")
	// ErrTooLarge means the ClientHello exceeds the configured maximum size.
	ErrTooLarge = errors.New("sniff: ClientHello too large")
)

const (
	recordHeaderLen = 5
	// maxRecordLen is the largest TLSPlaintext fragment (RFC 8446 §5.1).
	maxRecordLen = 1 << 14
	// DefaultMaxClientHelloSize bounds the handshake message, as Envoy's tls_inspector default
	// (TLS_MAX_CLIENT_HELLO). Real ClientHellos are 0.5-2 KiB.
	DefaultMaxClientHelloSize = 64 * 1024
	// maxExtensions bounds how many extensions are walked; real clients send fewer than 30.
	maxExtensions = 128
	// maxALPN bounds the number of ALPN protocols kept.
	maxALPN = 16
	// maxVersions bounds the number of supported_versions entries kept.
	maxVersions = 16
)

// ClientHello holds what listener filter-chain matching needs from a TLS ClientHello.
type ClientHello struct {
	// ServerName is the SNI host_name, lower-cased, without a trailing dot; empty if absent.
	ServerName string
	// ALPN lists the protocols offered in the application_layer_protocol_negotiation extension.
	ALPN []string
	// Versions lists supported_versions (TLS 1.3 clients); empty when the extension is absent.
	Versions []uint16
	// LegacyVersion is the client_version field of the ClientHello body.
	LegacyVersion uint16
}

// ParseClientHello parses a ClientHello from the first bytes a client sent. The handshake message
// may span several TLS records. maxSize bounds the handshake message length (0 means
// DefaultMaxClientHelloSize). It returns ErrShort when b is a valid but incomplete prefix, ErrNotTLS
// when b does not start a TLS handshake, ErrTooLarge when the message is larger than maxSize, and
// another error (wrapping ErrNotTLS) when the ClientHello is malformed.
func ParseClientHello(b []byte, maxSize int) (*ClientHello, error) {
	if maxSize <= 0 {
		maxSize = DefaultMaxClientHelloSize
	}
	msg, err := handshakeMessage(b, maxSize)
	if err != nil {
		return nil, err
	}
	return parseHello(msg)
}

// handshakeMessage reassembles the first handshake message from consecutive handshake records.
// It only allocates when the message spans more than one record.
func handshakeMessage(b []byte, maxSize int) ([]byte, error) {
	var joined []byte
	var single []byte
	need := -1 // handshake message length including its 4-byte header, once known
	records := 0
	for {
		if len(b) < 1 {
			return nil, ErrShort
		}
		if b[0] != 0x16 { // handshake content type
			return nil, ErrNotTLS
		}
		if len(b) >= 2 && b[1] != 0x03 { // SSL 3.0 / TLS major version
			return nil, ErrNotTLS
		}
		if len(b) >= 3 && b[2] > 0x04 {
			return nil, ErrNotTLS
		}
		if len(b) < recordHeaderLen {
			return nil, ErrShort
		}
		n := int(b[3])<<8 | int(b[4])
		if n == 0 || n > maxRecordLen {
			return nil, ErrNotTLS
		}
		records++
		if records == 1 && len(b) >= recordHeaderLen+4 {
			if b[recordHeaderLen] != 0x01 { // client_hello
				return nil, ErrNotTLS
			}
		}
		frag := b[recordHeaderLen:]
		if len(frag) > n {
			frag = frag[:n]
		}
		if records == 1 && len(frag) >= 4 {
			need = 4 + (int(frag[1])<<16 | int(frag[2])<<8 | int(frag[3]))
			if need-4 > maxSize {
				return nil, ErrTooLarge
			}
		}
		complete := len(b) >= recordHeaderLen+n
		if records == 1 {
			single = frag
		} else {
			if joined == nil {
				joined = make([]byte, 0, need)
				joined = append(joined, single...)
			}
			joined = append(joined, frag...)
		}
		have := single
		if joined != nil {
			have = joined
		}
		if need < 0 && len(have) >= 4 {
			if have[0] != 0x01 {
				return nil, ErrNotTLS
			}
			need = 4 + (int(have[1])<<16 | int(have[2])<<8 | int(have[3]))
			if need-4 > maxSize {
				return nil, ErrTooLarge
			}
		}
		if need >= 0 && len(have) >= need {
			return have[:need], nil
		}
		if !complete {
			return nil, ErrShort
		}
		b = b[recordHeaderLen+n:]
		if records > maxSize/64+2 { // a ClientHello split into absurdly many tiny records
			return nil, ErrTooLarge
		}
	}
}

// reader is a bounds-checked cursor over a byte slice.
type reader struct {
	b  []byte
	ok bool
}

func (r *reader) u8() int {
	if len(r.b) < 1 {
		r.ok = false
		return 0
	}
	v := int(r.b[0])
	r.b = r.b[1:]
	return v
}

func (r *reader) u16() int {
	if len(r.b) < 2 {
		r.ok = false
		return 0
	}
	v := int(r.b[0])<<8 | int(r.b[1])
	r.b = r.b[2:]
	return v
}

func (r *reader) bytes(n int) []byte {
	if n < 0 || len(r.b) < n {
		r.ok = false
		r.b = nil
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

var errMalformed = errors.New("sniff: malformed ClientHello")

func malformed(what string) error {
	return &malformedError{what: what}
}

type malformedError struct{ what string }

func (e *malformedError) Error() string { return "sniff: malformed ClientHello: " + e.what }

// Unwrap makes a malformed ClientHello also match ErrNotTLS and errMalformed.
func (e *malformedError) Unwrap() []error { return []error{ErrNotTLS, errMalformed} }

func parseHello(msg []byte) (*ClientHello, error) {
	r := reader{b: msg[4:], ok: true}
	ch := &ClientHello{LegacyVersion: uint16(r.u16())}
	r.bytes(32) // random
	if sid := r.u8(); sid > 32 {
		return nil, malformed("session_id longer than 32 bytes")
	} else {
		r.bytes(sid)
	}
	cs := r.u16()
	if cs < 2 || cs%2 != 0 {
		return nil, malformed("cipher_suites length")
	}
	r.bytes(cs)
	comp := r.u8()
	if comp < 1 {
		return nil, malformed("compression_methods length")
	}
	r.bytes(comp)
	if !r.ok {
		return nil, malformed("truncated body")
	}
	if len(r.b) == 0 { // no extensions (pre-TLS 1.2 clients)
		return ch, nil
	}
	extLen := r.u16()
	exts := reader{b: r.bytes(extLen), ok: r.ok}
	if !r.ok || len(r.b) != 0 {
		return nil, malformed("extensions length")
	}
	var seen [3]bool
	for i := 0; len(exts.b) > 0; i++ {
		if i >= maxExtensions {
			return nil, malformed("too many extensions")
		}
		typ := exts.u16()
		data := exts.bytes(exts.u16())
		if !exts.ok {
			return nil, malformed("extension length")
		}
		var err error
		switch typ {
		case 0: // server_name
			if seen[0] {
				return nil, malformed("duplicate server_name")
			}
			seen[0] = true
			ch.ServerName, err = parseSNI(data)
		case 16: // application_layer_protocol_negotiation
			if seen[1] {
				return nil, malformed("duplicate ALPN")
			}
			seen[1] = true
			ch.ALPN, err = parseALPN(data)
		case 43: // supported_versions
			if seen[2] {
				return nil, malformed("duplicate supported_versions")
			}
			seen[2] = true
			ch.Versions, err = parseVersions(data)
		}
		if err != nil {
			return nil, err
		}
	}
	return ch, nil
}

func parseSNI(data []byte) (string, error) {
	r := reader{b: data, ok: true}
	list := reader{b: r.bytes(r.u16()), ok: true}
	if !r.ok || len(r.b) != 0 {
		return "", malformed("server_name list length")
	}
	name := ""
	for len(list.b) > 0 {
		typ := list.u8()
		v := list.bytes(list.u16())
		if !list.ok {
			return "", malformed("server_name entry length")
		}
		if typ != 0 || name != "" { // only the first host_name counts
			continue
		}
		if len(v) == 0 || len(v) > 255 {
			return "", malformed("host_name length")
		}
		for _, c := range v {
			if c <= ' ' || c >= 0x7f {
				return "", malformed("host_name has invalid characters")
			}
		}
		name = strings.ToLower(strings.TrimSuffix(string(v), "."))
	}
	return name, nil
}

func parseALPN(data []byte) ([]string, error) {
	r := reader{b: data, ok: true}
	list := reader{b: r.bytes(r.u16()), ok: true}
	if !r.ok || len(r.b) != 0 || len(list.b) == 0 {
		return nil, malformed("ALPN list length")
	}
	var out []string
	for len(list.b) > 0 {
		p := list.bytes(list.u8())
		if !list.ok || len(p) == 0 {
			return nil, malformed("ALPN protocol length")
		}
		if len(out) < maxALPN {
			out = append(out, string(p))
		}
	}
	return out, nil
}

func parseVersions(data []byte) ([]uint16, error) {
	r := reader{b: data, ok: true}
	n := r.u8()
	v := r.bytes(n)
	if !r.ok || len(r.b) != 0 || n < 2 || n%2 != 0 {
		return nil, malformed("supported_versions length")
	}
	out := make([]uint16, 0, min(n/2, maxVersions))
	for i := 0; i+1 < len(v) && len(out) < maxVersions; i += 2 {
		out = append(out, uint16(v[i])<<8|uint16(v[i+1]))
	}
	return out, nil
}
