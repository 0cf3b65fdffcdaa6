package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
	security "istio.io/api/security/v1beta1"
)

// Limits of the RequestAuthentication CRD schema (istio.io/api security/v1beta1).
const (
	maxJWTRules             = 4096 // jwtRules
	maxJWKSURILength        = 2048 // jwtRules[].jwksUri
	maxSpaceDelimitedClaims = 64   // jwtRules[].spaceDelimitedClaims
)

// claimHeaderRE is the header name of outputClaimToHeaders, as Istio's webhook checks it.
var claimHeaderRE = regexp.MustCompile(`^[-A-Za-z0-9]+$`)

// validateRequestAuthentication checks a RequestAuthentication with the rules of Istio's
// validation webhook (pkg/config/validation ValidateRequestAuthentication, validateJwtRule) and
// of its CRD schema, https://istio.io/latest/docs/reference/config/security/request_authentication/:
//   - at most one of selector, targetRef and targetRefs, as for AuthorizationPolicy;
//   - each JWT rule has an issuer or a jwksUri; audiences, fromParams, fromCookies and
//     spaceDelimitedClaims are non-empty strings; at most one of jwks and jwksUri; jwksUri an
//     http:// or https:// URL with a host; jwks a JSON Web Key Set (or a single key) that parses;
//     fromHeaders have a name; outputClaimToHeaders have a claim and a header of letters, digits
//     and '-'; timeout at least 1ms with millisecond precision.
//
// Strait also requires header and cookie names to be HTTP tokens, outputClaimToHeaders headers to
// be distinct (the API says they must be), and jwksUri ports in 1-65535. Two rules may have the
// same issuer, as in Istio: each is a separate provider.
func validateRequestAuthentication(fe *fieldErrs, ra *security.RequestAuthentication) {
	validatePolicyTarget(fe, ra.GetSelector(), ra.GetTargetRef(), ra.GetTargetRefs())
	rules := ra.GetJwtRules()
	if len(rules) > maxJWTRules {
		fe.add("spec.jwtRules", "%d JWT rules, more than the limit of %d", len(rules), maxJWTRules)
		return
	}
	eachItem(fe, "spec.jwtRules", rules, "JWT rule", func(_ int, p string, r *security.JWTRule) {
		validateJWTRule(fe, p, r)
	})
}

// validateJWTRule checks one JWT rule.
func validateJWTRule(fe *fieldErrs, p string, r *security.JWTRule) {
	if r.GetIssuer() == "" && r.GetJwksUri() == "" {
		fe.add(p+".issuer", "issuer is required (or, without it, jwksUri)")
	}
	checkValues(fe, p+".audiences", r.GetAudiences(), func(*fieldErrs, string, string) {})
	if u := r.GetJwksUri(); u != "" {
		if len(u) > maxJWKSURILength {
			fe.add(p+".jwksUri", "jwksUri is %d bytes, more than the limit of %d", len(u), maxJWKSURILength)
		} else if _, err := ParseJWKSURI(u); err != nil {
			fe.add(p+".jwksUri", "%v", err)
		}
		if r.GetJwks() != "" {
			fe.add(p, "only one of jwks and jwksUri may be set")
		}
	}
	if j := r.GetJwks(); j != "" {
		if msg := jwksErr(j); msg != "" {
			fe.add(p+".jwks", "%s", msg)
		}
	}
	eachItem(fe, p+".fromHeaders", r.GetFromHeaders(), "header location", func(_ int, hp string, h *security.JWTHeader) {
		if h.GetName() == "" {
			fe.add(hp+".name", "name is required")
			return
		}
		validateHeaderName(fe, hp+".name", h.GetName())
	})
	checkValues(fe, p+".fromParams", r.GetFromParams(), func(*fieldErrs, string, string) {})
	checkValues(fe, p+".fromCookies", r.GetFromCookies(), func(fe *fieldErrs, vp, v string) {
		if !httpTokenRE.MatchString(v) {
			fe.add(vp, "invalid cookie name %s", quoteShort(v))
		}
	})
	if h := r.GetOutputPayloadToHeader(); h != "" && !httpTokenRE.MatchString(h) {
		fe.add(p+".outputPayloadToHeader", "invalid header name %s", quoteShort(h))
	}
	seen := map[string]int{}
	eachItem(fe, p+".outputClaimToHeaders", r.GetOutputClaimToHeaders(), "claim to header", func(i int, cp string, c *security.ClaimToHeader) {
		if c.GetClaim() == "" {
			fe.add(cp+".claim", "claim is required")
		}
		h := c.GetHeader()
		switch {
		case h == "":
			fe.add(cp+".header", "header is required")
		case !claimHeaderRE.MatchString(h):
			fe.add(cp+".header", "invalid header name %s: want letters, digits and '-'", quoteShort(h))
		default:
			if j, dup := seen[strings.ToLower(h)]; dup {
				fe.add(cp+".header", "header %s is already set by outputClaimToHeaders[%d]", quoteShort(h), j)
			}
			seen[strings.ToLower(h)] = i
		}
	})
	validateDuration(fe, p+".timeout", r.GetTimeout())
	if n := len(r.GetSpaceDelimitedClaims()); n > maxSpaceDelimitedClaims {
		fe.add(p+".spaceDelimitedClaims", "%d claims, more than the limit of %d", n, maxSpaceDelimitedClaims)
	} else {
		checkValues(fe, p+".spaceDelimitedClaims", r.GetSpaceDelimitedClaims(), func(*fieldErrs, string, string) {})
	}
}

// jwksErr returns why an inline jwks is not a JSON Web Key Set, or a single JSON Web Key, whose
// keys all parse, or "".
func jwksErr(j string) string {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal([]byte(j), &probe); err != nil {
		return "jwks is not a JSON object: " + jsonErrMsg(err)
	}
	if _, isSet := probe["keys"]; !isSet {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON([]byte(j)); err != nil {
			return "jwks is neither a JSON Web Key Set ({\"keys\": [...]}) nor a valid JSON Web Key: " + jsonErrMsg(err)
		}
		return ""
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal([]byte(j), &set); err != nil {
		return "jwks: keys must be an array of JSON Web Keys"
	}
	for i, raw := range set.Keys {
		var k jose.JSONWebKey
		if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			return fmt.Sprintf("jwks: keys[%d] is null", i)
		}
		if err := k.UnmarshalJSON(raw); err != nil {
			return fmt.Sprintf("jwks: keys[%d]: %s", i, jsonErrMsg(err))
		}
	}
	return ""
}

// jsonErrMsg shortens a JSON or JOSE error for a message: no library prefix, bounded length.
func jsonErrMsg(err error) string {
	msg := strings.TrimPrefix(err.Error(), "go-jose/go-jose: ")
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	return msg
}
