package jwtauthn

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
)

// MaxTokenBytes bounds the size of one token. Envoy has no limit of its own beyond the request
// header limit (max_request_headers_kb, 60 KiB by default), which this equals, so no token that
// fits in a default-sized request is refused. A longer one fails with "Jwt verification fails"
// without being decoded.
const MaxTokenBytes = 60 << 10

// maxJSONDepth bounds the nesting of a token's header and payload objects (hostile input):
// protobuf's recursion limit, counted in messages (an object and a value are one level each).
const maxJSONDepth = 200

var jsonOpts = protojson.UnmarshalOptions{RecursionLimit: maxJSONDepth}

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
	header     []byte // decoded header JSON (header_in_metadata)
	payload    *structpb.Struct
	iss        string
	aud        []string
	nbf, exp   uint64
	sig        []byte
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

	// One buffer for the three decoded segments.
	buf := make([]byte, 0, base64.RawURLEncoding.DecodedLen(len(h))+base64.RawURLEncoding.DecodedLen(len(p))+base64.RawURLEncoding.DecodedLen(len(s)))
	var ok bool
	if buf, t.header, ok = decodeSegment(buf, h); !ok {
		return nil, JwtHeaderParseErrorBadBase64
	}
	if st := t.parseHeader(); st != OK {
		return nil, st
	}
	var payload []byte
	if buf, payload, ok = decodeSegment(buf, p); !ok {
		return nil, JwtPayloadParseErrorBadBase64
	}
	if st := t.parsePayload(payload); st != OK {
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

// header holds the header members jwt_verify_lib reads.
type header struct {
	Alg json.RawMessage `json:"alg"`
	Kid json.RawMessage `json:"kid"`
}

func (t *jwt) parseHeader() Status {
	if !isObject(t.header) {
		return JwtHeaderParseErrorBadJSON
	}
	var h header
	if json.Unmarshal(t.header, &h) != nil {
		return JwtHeaderParseErrorBadJSON
	}
	alg, ok := jsonString(h.Alg)
	if !ok {
		return JwtHeaderBadAlg
	}
	if !algs[alg] {
		return JwtHeaderNotImplementedAlg
	}
	t.alg = alg
	if len(h.Kid) > 0 {
		if t.kid, ok = jsonString(h.Kid); !ok {
			return JwtHeaderBadKid
		}
	}
	return OK
}

// isObject reports whether data, after leading white space, starts a JSON object.
func isObject(data []byte) bool {
	for _, c := range data {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		case '{':
			return true
		}
		return false
	}
	return false
}

func (t *jwt) parsePayload(data []byte) Status {
	if !isObject(data) {
		return JwtPayloadParseErrorBadJSON
	}
	t.payload = new(structpb.Struct)
	if jsonOpts.Unmarshal(data, t.payload) != nil {
		return JwtPayloadParseErrorBadJSON
	}
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
			t.aud = []string{k.StringValue}
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

// headerStruct returns the decoded header as a Struct (header_in_metadata).
func (t *jwt) headerStruct() *structpb.Struct {
	s := new(structpb.Struct)
	if jsonOpts.Unmarshal(t.header, s) != nil {
		return nil
	}
	return s
}
