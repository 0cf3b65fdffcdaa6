package jwtauthn

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math"
	"math/big"
	"strconv"
	"strings"

	_ "crypto/sha256" // hashes of the JWS algorithms
	_ "crypto/sha512"

	"google.golang.org/protobuf/types/known/structpb"
)

// Request is the HTTP request as the filter sees it (the connection manager adapts its own
// request type). Header names are given in canonical MIME form ("Authorization"); Header must
// return nil for an absent header. The filter reads the request and, on success, edits it:
// it removes the token, adds the payload and claim headers.
type Request interface {
	// Method is the :method.
	Method() string
	// Path is the :path, query included.
	Path() string
	// SetPath replaces the :path (a token taken out of the query).
	SetPath(path string)
	// Header returns the values of the header name.
	Header(name string) []string
	// DelHeader removes every value of the header name.
	DelHeader(name string)
	// AddHeader appends a value to the header name.
	AddHeader(name, value string)
}

// Result is the outcome of Verify.
type Result struct {
	// Status is OK when the request may continue; otherwise the reason it is refused.
	Status Status
	// Metadata is what to set in the dynamic metadata namespace MetadataNamespace: each
	// verified provider's payload_in_metadata (and header_in_metadata) key holding the token's
	// payload (header) as a Struct. Nil when no token was verified.
	Metadata *structpb.Struct
	// ClearRouteCache reports that claim headers were added by a provider with
	// clear_route_cache: the route must be chosen again.
	ClearRouteCache bool
	// CORSBypassed reports a CORS preflight let through by bypass_cors_preflight.
	CORSBypassed bool
}

// Verify applies the filter to req: it finds the first rule that matches the :path and checks
// its requirement, editing req as Envoy does on success. A request no rule matches passes.
func (f *Filter) Verify(req Request) Result {
	if f.bypassCORS && req.Method() == "OPTIONS" && nonEmpty(req.Header("Origin")) &&
		nonEmpty(req.Header("Access-Control-Request-Method")) {
		return Result{CORSBypassed: true}
	}
	path := req.Path()
	for i := range f.rules {
		r := &f.rules[i]
		if !r.matches(path) {
			continue
		}
		if r.req.kind == reqAllowAll {
			return Result{}
		}
		v := verifier{f: f, req: req, now: f.clock()}
		st := v.eval(r.req)
		res := Result{Status: st, ClearRouteCache: v.clearRoute}
		if st == OK && v.data != nil {
			res.Metadata = v.data
		}
		return res
	}
	return Result{}
}

func nonEmpty(vs []string) bool {
	for _, v := range vs {
		if v != "" {
			return true
		}
	}
	return false
}

func (f *Filter) clock() uint64 {
	if s := f.now().Unix(); s > 0 {
		return uint64(s)
	}
	return 0
}

// verifier is one request's walk of the requirement tree (Envoy's verifier.cc, which is
// asynchronous there and sequential here since the keys are local).
type verifier struct {
	f          *Filter
	req        Request
	now        uint64
	data       *structpb.Struct // payloads of verified tokens, by metadata key
	clearRoute bool
	locs       [2]location // extract's first array (one requirement is walked at a time)
}

func (v *verifier) eval(q *requirement) Status {
	switch q.kind {
	case reqProvider:
		e := q.provider.extractor
		e.sanitizeHeaders(v.req)
		return v.authenticate(e.extract(v.req, v.locs[:0]), q.provider, q.audiences, false, false)
	case reqAllowMissing, reqAllowFailed:
		q.extractor.sanitizeHeaders(v.req)
		return v.authenticate(q.extractor.extract(v.req, v.locs[:0]), nil, nil, q.kind == reqAllowFailed, true)
	case reqAny:
		// Envoy's AnyVerifierImpl: the first child that passes decides; when none does, the
		// most telling failure is reported: one that is neither "missing" nor "unknown
		// issuer", else "unknown issuer", else "missing", which allow_missing turns into OK.
		final := JwtMissed
		for _, c := range q.children {
			st := v.eval(c)
			if st == OK {
				return OK
			}
			if st != JwtMissed && st != JwtUnknownIssuer || final == JwtMissed {
				final = st
			}
		}
		if q.allowFailed || q.allowMissing && final == JwtMissed {
			return OK
		}
		return final
	case reqAll:
		for _, c := range q.children {
			if st := v.eval(c); st != OK {
				return st
			}
		}
		return OK
	}
	return OK
}

// authenticate is Envoy's AuthenticatorImpl: the tokens are verified last found first; without
// allow_missing / allow_missing_or_failed every one must pass and the first failure ends the
// walk; with them every token is tried and the last one's status stands (allow_missing turns
// "missing" into OK, allow_missing_or_failed turns everything into OK). p nil means any
// provider, found by the token's issuer.
func (v *verifier) authenticate(tokens []location, p *provider, aud *audiences, allowFailed, allowMissing bool) Status {
	st := JwtMissed
	for i := len(tokens) - 1; i >= 0; i-- {
		st = v.verifyToken(&tokens[i], p, aud)
		if st != OK && !allowFailed && !allowMissing {
			break
		}
	}
	switch {
	case allowFailed:
		return OK
	case allowMissing && st == JwtMissed:
		return OK
	}
	return st
}

func (v *verifier) verifyToken(loc *location, p *provider, aud *audiences) Status {
	t, st := parseJWT(loc.token)
	if st != OK {
		return st
	}
	if !loc.issuers.allows(t.iss) {
		return JwtUnknownIssuer
	}
	if p == nil {
		if p = v.f.findByIssuer(t.iss); p == nil {
			return JwtUnknownIssuer
		}
	}
	if v.now+p.clockSkew < t.nbf {
		return JwtNotYetValid
	}
	if t.exp != 0 && v.now > t.exp+p.clockSkew {
		return JwtExpired
	}
	if aud == nil {
		aud = p.audiences
	}
	if !aud.allows(t.aud) {
		return JwtAudienceNotAllowed
	}
	if p.keys == nil {
		return JwksNoValidKeys
	}
	if !p.sigs.has(loc.token) {
		if st := verifySignature(t, p.keys); st != OK {
			return st
		}
		p.sigs.add(loc.token)
	}
	v.accept(loc, p, t)
	return OK
}

// findByIssuer is Envoy's JwksCache::findByIssuer: the first provider with that issuer, else the
// first provider without issuer.
func (f *Filter) findByIssuer(iss string) *provider {
	for _, p := range f.byIssuer {
		if p.issuer == iss {
			return p
		}
	}
	if iss != "" {
		for _, p := range f.byIssuer {
			if p.issuer == "" {
				return p
			}
		}
	}
	return nil
}

// accept applies a verified token's outputs (Envoy's handleGoodJwt): payload header, claim
// headers, token removal unless forward, metadata.
func (v *verifier) accept(loc *location, p *provider, t *jwt) {
	if p.payloadHeader != "" {
		val := t.payloadB64
		if p.padPayload {
			val = strings.TrimRight(val, "=")
			if n := len(val) % 4; n != 0 {
				val += "==="[:4-n]
			}
		}
		v.req.AddHeader(p.payloadHeader, val)
	}
	added := false
	for _, ch := range p.claimHeaders {
		if s := claimString(t.payload, ch.claim); s != "" && headerValueOK(s) {
			v.req.AddHeader(ch.header, s)
			added = true
		}
	}
	if p.clearRoute && added {
		v.clearRoute = true
	}
	if !p.forward {
		loc.remove(v.req)
	}
	if p.headerMeta != "" {
		if h := t.headerStruct(); h != nil {
			if t.headerNotUTF8 {
				metadataUTF8(h)
			}
			v.setData(p.headerMeta, h)
		}
	}
	if p.payloadMeta != "" {
		normalize(t.payload, p.spaceClaims)
		if t.payloadNotUTF8 {
			metadataUTF8(t.payload)
		}
		v.setData(p.payloadMeta, t.payload)
	}
}

// structValue is a Value holding a Struct, in one allocation.
type structValue struct {
	v  structpb.Value
	sv structpb.Value_StructValue
}

// dataCell is the metadata Struct with its first value.
type dataCell struct {
	data  structpb.Struct
	first structValue
}

// setData sets the metadata key to s.
func (v *verifier) setData(key string, s *structpb.Struct) {
	var sv *structValue
	if v.data == nil {
		c := new(dataCell)
		c.data.Fields = make(map[string]*structpb.Value, 2)
		v.data, sv = &c.data, &c.first
	} else {
		sv = new(structValue)
	}
	sv.sv.StructValue = s
	sv.v.Kind = &sv.sv
	v.data.Fields[key] = &sv.v
}

// stringCell is a Value holding a string, in one allocation.
type stringCell struct {
	v structpb.Value
	s structpb.Value_StringValue
}

// listCell is a Value holding a ListValue, in one allocation.
type listCell struct {
	v  structpb.Value
	lv structpb.Value_ListValue
	l  structpb.ListValue
}

// smallList is a list of up to smallListLen words in one allocation.
type smallList struct {
	lc    listCell
	words [smallListLen]stringCell
	vals  [smallListLen]*structpb.Value
}

const smallListLen = 4

// normalize splits the space-delimited string claims of payload into lists, in place
// (normalize_payload_in_metadata); a claim with no word is left as it is.
func normalize(payload *structpb.Struct, claims []string) {
	for _, c := range claims {
		s, ok := stringValue(payload.GetFields()[c])
		if !ok {
			continue
		}
		n := 0
		for w := range strings.SplitSeq(s, " ") {
			if w != "" {
				n++
			}
		}
		if n == 0 {
			continue
		}
		var words []stringCell
		var lc *listCell
		if n <= smallListLen {
			sl := new(smallList)
			words, lc = sl.words[:n], &sl.lc
			lc.l.Values = sl.vals[:0:n]
		} else {
			words = make([]stringCell, n)
			lc = &listCell{l: structpb.ListValue{Values: make([]*structpb.Value, 0, n)}}
		}
		for w := range strings.SplitSeq(s, " ") {
			if w != "" {
				wc := &words[len(lc.l.Values)]
				wc.s.StringValue = w
				wc.v.Kind = &wc.s
				lc.l.Values = append(lc.l.Values, &wc.v)
			}
		}
		lc.lv.ListValue = &lc.l
		lc.v.Kind = &lc.lv
		payload.Fields[c] = &lc.v
	}
}

// claimString renders the claim at path (a dotted claim_name, split) for a header as Envoy's
// addJWTClaimToHeader: strings as they are, numbers as integers when integral and in uint64
// range (else printf("%f")), booleans as true/false, objects and lists as base64 of their
// JSON. "" means no header.
func claimString(payload *structpb.Struct, path []string) string {
	var val *structpb.Value
	s := payload
	for i, k := range path {
		val = s.GetFields()[k]
		if val == nil {
			return ""
		}
		if i < len(path)-1 {
			if s = val.GetStructValue(); s == nil {
				return ""
			}
		}
	}
	switch k := val.GetKind().(type) {
	case *structpb.Value_StringValue:
		return k.StringValue
	case *structpb.Value_NumberValue:
		n := k.NumberValue
		if n < 0 || n >= math.MaxUint64 || n != math.Trunc(n) {
			return strconv.FormatFloat(n, 'f', 6, 64)
		}
		return strconv.FormatUint(uint64(n), 10)
	case *structpb.Value_BoolValue:
		return strconv.FormatBool(k.BoolValue)
	case *structpb.Value_StructValue, *structpb.Value_ListValue:
		b, err := json.Marshal(val.AsInterface())
		if err != nil {
			return ""
		}
		return base64.StdEncoding.EncodeToString(b)
	}
	return ""
}

// hashOf maps a JWS algorithm to its hash.
func hashOf(alg string) crypto.Hash {
	switch alg[len(alg)-3:] {
	case "384":
		return crypto.SHA384
	case "512":
		return crypto.SHA512
	}
	return crypto.SHA256
}

// verifySignature is jwt_verify_lib's verifyJwtWithoutTimeChecking: every key whose kid (when
// both have one) and alg (when the key has one) match the token's is tried. No key tried:
// JwksKidAlgMismatch; keys tried but none verified: JwtVerificationFail. Unlike there, the
// algorithm must belong to the key's type (an RS256 token is never checked as an HMAC or an
// ECDSA signature), and ES256/384/512 must use P-256/384/521 keys.
func verifySignature(t *jwt, keys []*key) Status {
	var digest []byte
	matched := false
	for _, k := range keys {
		if t.kid != "" && k.kid != "" && k.kid != t.kid {
			continue
		}
		if k.alg != "" && k.alg != t.alg {
			continue
		}
		matched = true
		family := t.alg[:2]
		switch k.kty {
		case "RSA":
			if family != "RS" && family != "PS" {
				continue
			}
			if digest == nil {
				digest = sum(t)
			}
			var err error
			if family == "RS" {
				err = rsa.VerifyPKCS1v15(k.rsa, hashOf(t.alg), digest, t.sig)
			} else {
				err = rsa.VerifyPSS(k.rsa, hashOf(t.alg), digest, t.sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
			}
			if err == nil {
				return OK
			}
		case "EC":
			if family != "ES" || ecAlgCurve[t.alg] != curveOf(k.ec) {
				continue
			}
			size := (k.ec.Curve.Params().BitSize + 7) / 8
			if len(t.sig) != 2*size {
				continue
			}
			if digest == nil {
				digest = sum(t)
			}
			r := new(big.Int).SetBytes(t.sig[:size])
			s := new(big.Int).SetBytes(t.sig[size:])
			if ecdsa.Verify(k.ec, digest, r, s) {
				return OK
			}
		case "OKP":
			// jwt_verify_lib checks the length first and stops there.
			if len(t.sig) != ed25519.SignatureSize {
				return JwtEd25519SignatureWrongLength
			}
			if t.alg == "EdDSA" && ed25519.Verify(k.ed, []byte(t.signed), t.sig) {
				return OK
			}
		case "oct":
			if family != "HS" {
				continue
			}
			m := hmac.New(hashOf(t.alg).New, k.oct)
			m.Write([]byte(t.signed))
			if hmac.Equal(m.Sum(nil), t.sig) {
				return OK
			}
		}
	}
	if matched {
		return JwtVerificationFail
	}
	return JwksKidAlgMismatch
}

func sum(t *jwt) []byte {
	if t.alg == "EdDSA" {
		return nil
	}
	h := hashOf(t.alg).New()
	h.Write([]byte(t.signed))
	return h.Sum(nil)
}
