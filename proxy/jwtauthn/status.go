package jwtauthn

import "strings"

// Status is the outcome of verifying a request, with Envoy's meaning (jwt_verify_lib's
// google::jwt_verify::Status). Its String is the exact message Envoy sends as the body of the
// 401 / 403 reply.
type Status uint8

// Statuses that can reach a client, in jwt_verify_lib's order.
const (
	OK Status = iota
	JwtMissed
	JwtNotYetValid
	JwtExpired
	JwtBadFormat
	JwtHeaderParseErrorBadBase64
	JwtHeaderParseErrorBadJSON
	JwtHeaderBadAlg
	JwtHeaderNotImplementedAlg
	JwtHeaderBadKid
	JwtPayloadParseErrorBadBase64
	JwtEd25519SignatureWrongLength
	JwtPayloadParseErrorBadJSON
	JwtPayloadParseErrorIssNotString
	JwtPayloadParseErrorSubNotString
	JwtPayloadParseErrorIatNotInteger
	JwtPayloadParseErrorIatOutOfRange
	JwtPayloadParseErrorNbfNotInteger
	JwtPayloadParseErrorNbfOutOfRange
	JwtPayloadParseErrorExpNotInteger
	JwtPayloadParseErrorExpOutOfRange
	JwtPayloadParseErrorJtiNotString
	JwtPayloadParseErrorAudNotString
	JwtSignatureParseErrorBadBase64
	JwtUnknownIssuer
	JwtAudienceNotAllowed
	JwtVerificationFail
	JwksParseError
	JwksNoKeys
	JwksBadKeys
	JwksNoValidKeys
	JwksKidAlgMismatch
	statusCount
)

// statusText holds jwt_verify_lib's getStatusString messages, byte for byte.
var statusText = [statusCount]string{
	OK:                                "OK",
	JwtMissed:                         "Jwt is missing",
	JwtNotYetValid:                    "Jwt not yet valid",
	JwtExpired:                        "Jwt is expired",
	JwtBadFormat:                      "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
	JwtHeaderParseErrorBadBase64:      "Jwt header is an invalid Base64url encoded",
	JwtHeaderParseErrorBadJSON:        "Jwt header is an invalid JSON",
	JwtHeaderBadAlg:                   "Jwt header [alg] field is required and must be a string",
	JwtHeaderNotImplementedAlg:        "Jwt header [alg] is not supported",
	JwtHeaderBadKid:                   "Jwt header [kid] field is not a string",
	JwtPayloadParseErrorBadBase64:     "Jwt payload is an invalid Base64url encoded",
	JwtEd25519SignatureWrongLength:    "Jwt ED25519 signature is wrong length",
	JwtPayloadParseErrorBadJSON:       "Jwt payload is an invalid JSON",
	JwtPayloadParseErrorIssNotString:  "Jwt payload [iss] field is not a string",
	JwtPayloadParseErrorSubNotString:  "Jwt payload [sub] field is not a string",
	JwtPayloadParseErrorIatNotInteger: "Jwt payload [iat] field is not an integer",
	JwtPayloadParseErrorIatOutOfRange: "Jwt payload [iat] field is not a positive 64 bit integer",
	JwtPayloadParseErrorNbfNotInteger: "Jwt payload [nbf] field is not an integer",
	JwtPayloadParseErrorNbfOutOfRange: "Jwt payload [nbf] field is not a positive 64 bit integer",
	JwtPayloadParseErrorExpNotInteger: "Jwt payload [exp] field is not an integer",
	JwtPayloadParseErrorExpOutOfRange: "Jwt payload [exp] field is not a positive 64 bit integer",
	JwtPayloadParseErrorJtiNotString:  "Jwt payload [jti] field is not a string",
	JwtPayloadParseErrorAudNotString:  "Jwt payload [aud] field is not a string or string list",
	JwtSignatureParseErrorBadBase64:   "Jwt signature is an invalid Base64url encoded",
	JwtUnknownIssuer:                  "Jwt issuer is not configured",
	JwtAudienceNotAllowed:             "Audiences in Jwt are not allowed",
	JwtVerificationFail:               "Jwt verification fails",
	JwksParseError:                    "Jwks is an invalid JSON",
	JwksNoKeys:                        "Jwks does not have [keys] field",
	JwksBadKeys:                       "[keys] in Jwks is not an array",
	JwksNoValidKeys:                   "Jwks doesn't have any valid public key",
	JwksKidAlgMismatch:                "Jwks doesn't have key to match kid or alg from Jwt",
}

// details holds the response code details of each status, computed once.
var details [statusCount]string

func init() {
	for i, t := range statusText {
		// Envoy's generateRcDetails: spaces become underscores so that access logs split cleanly.
		details[i] = "jwt_authn_access_denied{" + strings.ReplaceAll(t, " ", "_") + "}"
	}
}

// String returns Envoy's message for s: the body of the rejection.
func (s Status) String() string {
	if s < statusCount {
		return statusText[s]
	}
	return "unknown status"
}

// HTTPCode is the status code of the rejection: 403 when the audience is not allowed, 401
// otherwise (Envoy's jwt_authn filter.cc).
func (s Status) HTTPCode() int {
	if s == JwtAudienceNotAllowed {
		return 403
	}
	return 401
}

// Details is the response code details of the rejection (%RESPONSE_CODE_DETAILS%), e.g.
// "jwt_authn_access_denied{Jwt_is_expired}".
func (s Status) Details() string {
	if s < statusCount {
		return details[s]
	}
	return "jwt_authn_access_denied"
}

// maxRealmPath is Envoy's MaximumUriLength: the path in the realm is cut to this many bytes.
const maxRealmPath = 256

// Challenge returns the www-authenticate value Envoy sends with a rejection:
// `Bearer realm="<scheme>://<host><path>"`, with `, error="invalid_token"` appended unless the
// token was missing. path is the request's :path (query included), cut to 256 bytes.
func Challenge(scheme, host, path string, s Status) string {
	if len(path) > maxRealmPath {
		path = path[:maxRealmPath]
	}
	var b strings.Builder
	b.Grow(len(`Bearer realm="://"`) + len(scheme) + len(host) + len(path) + len(`, error="invalid_token"`))
	b.WriteString(`Bearer realm="`)
	b.WriteString(scheme)
	b.WriteString("://")
	b.WriteString(host)
	b.WriteString(path)
	b.WriteByte('"')
	if s != JwtMissed {
		b.WriteString(`, error="invalid_token"`)
	}
	return b.String()
}
