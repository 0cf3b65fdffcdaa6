package grpclite

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
)

// Metadata is a call's custom metadata: lower-case keys, each with its values. Values of keys
// ending in "-bin" are binary: base64-encoded on the wire, raw here.
type Metadata map[string][]string

// Get is key's first value, "" when it has none.
func (md Metadata) Get(key string) string {
	if v := md[strings.ToLower(key)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// reservedKey says whether key is one the protocol itself sends, which metadata may not set.
func reservedKey(key string) bool {
	switch key {
	case "content-type", "te", "user-agent", "host", "connection", "transfer-encoding", "content-length":
		return true
	}
	return strings.HasPrefix(key, "grpc-") || strings.HasPrefix(key, ":")
}

// addTo checks md and adds it to h. A key must be lower-case [0-9a-z_.-] and not reserved; a
// value of a key that is not binary must be printable ASCII.
func (md Metadata) addTo(h http.Header) error {
	for k, vs := range md {
		if k == "" || reservedKey(k) {
			return fmt.Errorf("metadata key %q: empty or reserved", k)
		}
		for i := 0; i < len(k); i++ {
			c := k[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
				return fmt.Errorf("metadata key %q: only lower-case letters, digits, '-', '_' and '.' are allowed", k)
			}
		}
		bin := strings.HasSuffix(k, "-bin")
		for _, v := range vs {
			if bin {
				v = base64.RawStdEncoding.EncodeToString([]byte(v))
			} else {
				for i := 0; i < len(v); i++ {
					if v[i] < 0x20 || v[i] > 0x7e {
						return fmt.Errorf("metadata key %q: value has byte %#x, not printable ASCII (use a -bin key)", k, v[i])
					}
				}
			}
			h[k] = append(h[k], v) // not canonicalised: HTTP/2 sends names lower-case anyway
		}
	}
	return nil
}

// metadataOf returns the custom metadata of h (response headers or trailers): every header
// but the protocol's own, -bin values decoded (a value that is not base64 is dropped).
func metadataOf(h http.Header) Metadata {
	md := make(Metadata, len(h))
	for k, vs := range h {
		k = strings.ToLower(k)
		if reservedKey(k) {
			continue
		}
		if !strings.HasSuffix(k, "-bin") {
			md[k] = append(md[k], vs...)
			continue
		}
		for _, v := range vs {
			for _, part := range strings.Split(v, ",") { // intermediaries may join values
				if b, err := decodeBinary(strings.TrimSpace(part)); err == nil {
					md[k] = append(md[k], string(b))
				}
			}
		}
	}
	return md
}

// decodeBinary decodes a -bin header value, padded or not (gRPC accepts both).
func decodeBinary(v string) ([]byte, error) {
	return base64.RawStdEncoding.DecodeString(strings.TrimRight(v, "="))
}
