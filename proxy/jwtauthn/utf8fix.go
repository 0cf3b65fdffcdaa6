package jwtauthn

import (
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strait-mesh/strait/proxy/httpmsg"
)

// Strings that C++ protobuf's JSON parser accepts in a token (see decodeMembers) may hold bytes
// that are not valid UTF-8 (overlong forms, encoded surrogates, code points past U+10FFFF) or
// raw control characters. Envoy keeps them as they are; two places here cannot:
//   - the metadata Structs (payload_in_metadata, header_in_metadata) reach code that encodes
//     them with Go's proto.Marshal or protojson (ext_authz's metadata_context, access logs,
//     tracing), which refuse a string that is not valid UTF-8, where C++ protobuf only logs;
//     metadataUTF8 makes them valid;
//   - a claim_to_headers value goes on the wire as a header field; headerValueOK decides.

// metadataUTF8 makes s valid for Go's proto.Marshal, in place: a member whose name is not
// valid UTF-8 is dropped (no RBAC rule, being valid UTF-8 itself, can name it), and in strings
// each byte that is not part of valid UTF-8 becomes U+FFFD, as Go's regexp and RE2 read such a
// byte, so that an RBAC string or regex match on the claim decides as it would on the raw
// bytes (but for a pattern holding U+FFFD itself). It is called only for a token whose decoder
// saw such bytes (jwt.payloadNotUTF8, jwt.headerNotUTF8).
//
//go:noinline
func metadataUTF8(s *structpb.Struct) {
	for name, v := range s.GetFields() {
		if !utf8.ValidString(name) {
			delete(s.Fields, name)
			continue
		}
		valueUTF8(v)
	}
}

func valueUTF8(v *structpb.Value) {
	switch k := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		if !utf8.ValidString(k.StringValue) {
			b := make([]byte, 0, len(k.StringValue)+8)
			for _, r := range k.StringValue { // an invalid byte is one utf8.RuneError
				b = utf8.AppendRune(b, r)
			}
			k.StringValue = string(b)
		}
	case *structpb.Value_StructValue:
		metadataUTF8(k.StructValue)
	case *structpb.Value_ListValue:
		for _, e := range k.ListValue.GetValues() {
			valueUTF8(e)
		}
	}
}

// headerValueOK reports whether a claim_to_headers value may be added: it must have no control
// character but HTAB, and no DEL. Envoy's header map holds as an invariant that a value has no
// NUL, CR or LF (HeaderString asserts it; a release build would write them and split the
// HTTP/1.1 request), and the other control characters, which Envoy writes as they are, are
// refused by this proxy's HTTP/1.1 encoder (httpmsg's rule), which would fail the request. Such a claim is
// skipped as Envoy skips a claim that renders empty; bytes that are not UTF-8 are kept, as
// Envoy keeps them.
func headerValueOK(s string) bool { return httpmsg.ValidValueString(s) }
