package jwtauthn

// JWKSJSON parses data as strait-proxy and Envoy parse a key set's JSON (jwt_verify_lib's
// Jwks::createFrom: C++ protobuf's JsonStringToMessage into a Struct, see decodeMembers) and
// returns the same Struct as strict JSON, member names sorted; ok is false when they refuse it
// (the provider then fails with "Jwks is an invalid JSON"), or when data is over MaxJWKSBytes,
// which the proxy refuses as a whole too. It says nothing of the keys: see
// CheckJWKS. The control plane uses it to read a fetched or inline key set as the proxy will.
func JWKSJSON(data []byte) (strict []byte, ok bool) {
	if len(data) > MaxJWKSBytes {
		return nil, false
	}
	return normalizeJWKS(data)
}

// CheckJWKS returns nil when data, as a provider's local_jwks, gives strait-proxy at least one
// usable key, and otherwise why not: an error whose text starts with the status Envoy reports
// for it (e.g. "Jwks is an invalid JSON", "Jwks doesn't have any valid public key"). Keys that
// are not valid are skipped, as jwt_verify_lib skips them.
func CheckJWKS(data []byte) error {
	_, _, err := parseJWKS(data)
	return err
}
