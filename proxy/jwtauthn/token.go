package jwtauthn

import (
	"encoding/base64"
	"math"
	"strings"
	"unsafe"

	"google.golang.org/protobuf/types/known/structpb"
)

// MaxTokenBytes bounds the size of one token. Envoy has no limit of its own beyond the request
// header limit (max_request_headers_kb, 60 KiB by default), which this equals, so no token that
// fits in a default-sized request is refused. A longer one fails with "Jwt verification fails"
// without being decoded.
const MaxTokenBytes = 60 << 10

// maxJSONDepth is protobuf's recursion limit, counted in messages (an object and a value are
// one level each), as protojson.UnmarshalOptions{RecursionLimit: maxJSONDepth} counts them: the
// bound of decodeStruct's protojson rules, which no token or JWKS is parsed with any more.
const maxJSONDepth = 200

// cppJSONDepth bounds the nesting of what jwt_verify_lib decodes with C++ protobuf's
// JsonStringToMessage (a token's header and payload, a JWKS): its JSON lexer refuses more than
// 100 nested objects and arrays (ParseOptions::kDefaultDepth), the top object included (see
// decodeMembers).
const cppJSONDepth = 100

// algs are the JWS algorithms Envoy implements ("none" is not one of them).
var algs = map[string]bool{
	"RS256": true, "RS384": true, "RS512": true,
	"PS256": true, "PS384": true, "PS512": true,
	"ES256": true, "ES384": true, "ES512": true,
	"HS256": true, "HS384": true, "HS512": true,
	"EdDSA": true,
}

// jwt is a parsed, not yet verified, JWS compact token.
type jwt struct {
	alg, kid   string
	signed     string // header.payload: the signing input
	payloadB64 string // the payload segment as received (forward_payload_header)
	header     string // the header JSON once accepted, for headerStruct
	payload    *structpb.Struct
	iss        string
	aud        []string
	nbf, exp   uint64
	sig        []byte

	// headerNotUTF8 and payloadNotUTF8 report strings that C++ protobuf's parser accepts but
	// that are not valid UTF-8 in the header's and the payload's Structs (see metadataUTF8).
	headerNotUTF8, payloadNotUTF8 bool

	payloadS structpb.Struct // what payload points to
	aud1     [1]string       // aud's array for a single audience
}

// parseJWT parses token with jwt_verify_lib's Jwt::parseFromString rules and order, so that a
// token with several faults is refused with the status Envoy would report.
func parseJWT(token string) (*jwt, Status) {
	if len(token) > MaxTokenBytes {
		return nil, JwtVerificationFail
	}
	if strings.Count(token, ".") != 2 {
		return nil, JwtBadFormat
	}
	h, rest, _ := strings.Cut(token, ".")
	p, s, _ := strings.Cut(rest, ".")
	if h == "" || p == "" || s == "" {
		return nil, JwtBadFormat
	}
	t := &jwt{signed: token[:len(h)+1+len(p)], payloadB64: p}

	// One buffer for the three decoded segments. The header and payload are decoded first (the
	// payload's base64 verdict is reported after the header's JSON one, as Envoy orders them)
	// and read as one string over the buffer, which is never written again: the Structs'
	// unescaped strings share it.
	buf := make([]byte, 0, base64.RawURLEncoding.DecodedLen(len(h))+base64.RawURLEncoding.DecodedLen(len(p))+base64.RawURLEncoding.DecodedLen(len(s)))
	buf, header, ok := decodeSegment(buf, h)
	if !ok {
		return nil, JwtHeaderParseErrorBadBase64
	}
	buf, payload, payloadOK := decodeSegment(buf, p)
	var text string
	if len(buf) > 0 {
		text = unsafe.String(&buf[0], len(buf))
	}
	d := newStructDecoder(text)
	defer d.release()
	if st := t.parseHeader(d, text[:len(header)]); st != OK {
		return nil, st
	}
	if !payloadOK {
		return nil, JwtPayloadParseErrorBadBase64
	}
	if st := t.parsePayload(d, text[len(header):len(header)+len(payload)]); st != OK {
		return nil, st
	}
	if _, t.sig, ok = decodeSegment(buf, s); !ok {
		return nil, JwtSignatureParseErrorBadBase64
	}
	return t, OK
}

// decodeSegment appends the base64url decoding of seg (padding optional, as absl's
// WebSafeBase64Unescape) to buf and returns the grown buffer and the decoded part.
func decodeSegment(buf []byte, seg string) ([]byte, []byte, bool) {
	if n := len(seg); n > 0 && seg[n-1] == '=' {
		seg = seg[:n-1]
		if n > 1 && seg[n-2] == '=' {
			seg = seg[:n-2]
		}
	}
	for i := 0; i < len(seg); i++ {
		if c := seg[i]; !isTokenChar(c) || c == '.' {
			return buf, nil, false // also refuses the CR and LF the decoder would skip
		}
	}
	start := len(buf)
	out := buf[start : start+base64.RawURLEncoding.DecodedLen(len(seg))]
	n, err := base64.RawURLEncoding.Decode(out, []byte(seg))
	if err != nil {
		return buf, nil, false
	}
	buf = buf[:start+n]
	return buf, buf[start:], true
}

// parseHeader parses the header JSON as jwt_verify_lib does, keeping it for headerStruct
// (header_in_metadata), and reads alg and kid. jwt_verify_lib decodes the header with C++
// protobuf's JsonStringToMessage into a Struct, any refusal being
// JwtHeaderParseErrorBadJSON; the decoder follows that parser's rules, not protojson's (see
// decodeMembers), as the verdict is Envoy's. Then the Struct's "alg" member, matched exactly
// (after unescaping), must be a string (else JwtHeaderBadAlg, absent included) naming an
// implemented algorithm (else JwtHeaderNotImplementedAlg), and a "kid" member, when present,
// must be a string (else JwtHeaderBadKid, null included).
func (t *jwt) parseHeader(d *structDecoder, data string) Status {
	ms, ok := d.decodeMembers(data, cppJSONDepth, true)
	if !ok {
		return JwtHeaderParseErrorBadJSON
	}
	t.header, t.headerNotUTF8 = data, d.notUTF8
	var alg, kid *structpb.Value
	for _, m := range ms {
		switch m.name {
		case "alg":
			alg = m.v
		case "kid":
			kid = m.v
		}
	}
	name, ok := stringValue(alg)
	if !ok {
		return JwtHeaderBadAlg
	}
	if !algs[name] {
		return JwtHeaderNotImplementedAlg
	}
	t.alg = name
	if kid != nil {
		if t.kid, ok = stringValue(kid); !ok {
			return JwtHeaderBadKid
		}
	}
	return OK
}

// parsePayload parses the payload JSON as jwt_verify_lib does: with C++ protobuf's
// JsonStringToMessage into a Struct (see decodeMembers: a top-level null is an empty Struct,
// legacy syntax, raw control characters and UTF-8 of the right shape are accepted), any refusal
// being JwtPayloadParseErrorBadJSON; then the registered claims' types are checked.
func (t *jwt) parsePayload(d *structDecoder, data string) Status {
	if !d.decode(data, cppJSONDepth, true, &t.payloadS) {
		return JwtPayloadParseErrorBadJSON
	}
	t.payload, t.payloadNotUTF8 = &t.payloadS, d.notUTF8
	f := t.payload.GetFields()
	var ok bool
	if v := f["iss"]; v != nil {
		if t.iss, ok = stringValue(v); !ok {
			return JwtPayloadParseErrorIssNotString
		}
	}
	if v := f["sub"]; v != nil {
		if _, ok = stringValue(v); !ok {
			return JwtPayloadParseErrorSubNotString
		}
	}
	if st := uintClaim(f["iat"], nil, JwtPayloadParseErrorIatNotInteger, JwtPayloadParseErrorIatOutOfRange); st != OK {
		return st
	}
	if st := uintClaim(f["nbf"], &t.nbf, JwtPayloadParseErrorNbfNotInteger, JwtPayloadParseErrorNbfOutOfRange); st != OK {
		return st
	}
	if st := uintClaim(f["exp"], &t.exp, JwtPayloadParseErrorExpNotInteger, JwtPayloadParseErrorExpOutOfRange); st != OK {
		return st
	}
	if v := f["jti"]; v != nil {
		if _, ok = stringValue(v); !ok {
			return JwtPayloadParseErrorJtiNotString
		}
	}
	if v := f["aud"]; v != nil {
		switch k := v.GetKind().(type) {
		case *structpb.Value_StringValue:
			t.aud1[0] = k.StringValue
			t.aud = t.aud1[:]
		case *structpb.Value_ListValue:
			for _, e := range k.ListValue.GetValues() {
				s, ok := stringValue(e)
				if !ok {
					return JwtPayloadParseErrorAudNotString
				}
				t.aud = append(t.aud, s)
			}
		default:
			return JwtPayloadParseErrorAudNotString
		}
	}
	return OK
}

func stringValue(v *structpb.Value) (string, bool) {
	s, ok := v.GetKind().(*structpb.Value_StringValue)
	if !ok {
		return "", false
	}
	return s.StringValue, true
}

// uintClaim reads a NumericDate claim as jwt_verify_lib's GetUInt64: a number in [0, 2^64),
// truncated; absent leaves *dst zero.
func uintClaim(v *structpb.Value, dst *uint64, notInt, outOfRange Status) Status {
	if v == nil {
		return OK
	}
	n, ok := v.GetKind().(*structpb.Value_NumberValue)
	if !ok {
		return notInt
	}
	if n.NumberValue < 0 || n.NumberValue >= math.MaxUint64 || math.IsNaN(n.NumberValue) {
		return outOfRange
	}
	if dst != nil {
		*dst = uint64(n.NumberValue)
	}
	return OK
}

// headerStruct decodes the header as a Struct (header_in_metadata), with the rules parseHeader
// accepted it by. It is called once per verified token, when the provider wants it.
func (t *jwt) headerStruct() *structpb.Struct {
	if t.header == "" {
		return nil
	}
	s, _ := decodeStructAs(t.header, cppJSONDepth, true) // accepted by parseHeader already
	return s
}
