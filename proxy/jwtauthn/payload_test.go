package jwtauthn

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"reflect"
	"strconv"
	"strings"
	"testing"

	jwtauthnv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	jose "github.com/go-jose/go-jose/v4"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// The rules the payload table cites besides the header's (header_test.go): jwt_verify_lib's
// Jwt::parseFromString decodes the payload as it decodes the header, with C++ protobuf's
// JsonStringToMessage into a Struct (allow_legacy_syntax on), any failure being
// JwtPayloadParseErrorBadJSON; then StructUtils reads the registered claims.
const (
	rulePayloadNull = "ParseMap accepts a top-level null as an empty Struct: no claim, parsing goes on"
	ruleClaimType   = "StructUtils::GetString / GetUInt64 / GetStringList: WRONG_TYPE is the claim's status"
)

// payloadRow is a payload JSON and the Status Envoy decides it with.
type payloadRow struct {
	json    string
	want    Status
	rule    string
	iss     string   // when OK
	aud     []string // when OK
	notUTF8 bool     // when OK: a string holds bytes that are not valid UTF-8
}

func deepPayload(n int) string {
	return `{"x":` + strings.Repeat(`{"a":`, n-2) + "[]" + strings.Repeat("}", n-2) + `}`
}

var payloadRows = []payloadRow{
	{`{"iss":"i","aud":["a","b"]}`, OK, ruleOK, "i", []string{"a", "b"}, false},
	// top level
	{`null`, OK, rulePayloadNull, "", nil, false},
	{" \t\r\nnull\n", OK, rulePayloadNull, "", nil, false},
	{`nul`, JwtPayloadParseErrorBadJSON, ruleTopLevel, "", nil, false},
	{`[]`, JwtPayloadParseErrorBadJSON, ruleTopLevel, "", nil, false},
	{`"x"`, JwtPayloadParseErrorBadJSON, ruleTopLevel, "", nil, false},
	{`{} x`, JwtPayloadParseErrorBadJSON, ruleTrailing, "", nil, false},
	{"\v{}", JwtPayloadParseErrorBadJSON, ruleWhiteSpace, "", nil, false},
	// legacy syntax
	{`{iss:'i',aud:'a',}`, OK, ruleBareWord + "; " + ruleQuotes + "; " + ruleTrailComma, "i", []string{"a"}, false},
	{`{'iss':'a"b'}`, OK, ruleQuotes, `a"b`, nil, false},
	{`{"aud":["a",],}`, OK, ruleTrailComma, "", []string{"a"}, false},
	{`{"aud":["a",,]}`, JwtPayloadParseErrorBadJSON, ruleTrailComma, "", nil, false},
	{`{"a":1,,}`, JwtPayloadParseErrorBadJSON, ruleTrailComma, "", nil, false},
	{`{1a:1}`, JwtPayloadParseErrorBadJSON, ruleBareWord, "", nil, false},
	{`{null:1}`, JwtPayloadParseErrorBadJSON, ruleBareWord, "", nil, false},
	{`{"iss":"\'\U0041"}`, OK, ruleEscapes, "'A", nil, false},
	{`{"iss":"\x"}`, JwtPayloadParseErrorBadJSON, ruleEscapes, "", nil, false},
	{`{"iss":"\ud83d \ude00"}`, OK, ruleSurrogate, "\U0001F600", nil, false},
	{`{"iss":"\ud83d"}`, JwtPayloadParseErrorBadJSON, ruleSurrogate, "", nil, false},
	// strings
	{"{\"iss\":\"a\x01\n\x7fb\"}", OK, ruleControl, "a\x01\n\x7fb", nil, false},
	{"{\"iss\":\"caf\xc3\xa9\"}", OK, ruleUTF8Shape, "café", nil, false},
	{"{\"iss\":\"\xc0\x80\"}", OK, ruleUTF8Shape + " (overlong NUL)", "\xc0\x80", nil, true},
	{"{\"iss\":\"\xed\xa0\x80\"}", OK, ruleUTF8Shape + " (encoded surrogate)", "\xed\xa0\x80", nil, true},
	{"{\"iss\":\"\xf7\xbf\xbf\xbf\"}", OK, ruleUTF8Shape + " (past U+10FFFF)", "\xf7\xbf\xbf\xbf", nil, true},
	{"{\"x\":[\"\xc1\xbf\"],\"iss\":\"i\"}", OK, ruleUTF8Shape + " (in a list)", "i", nil, true},
	{"{\"\xc0\x80\":1}", OK, ruleUTF8Shape + " (a name)", "", nil, true},
	{"{\"iss\":\"\xe2\x82\"}", JwtPayloadParseErrorBadJSON, ruleUTF8Bad, "", nil, false},
	{"{\"iss\":\"\xff\"}", JwtPayloadParseErrorBadJSON, ruleUTF8Bad, "", nil, false},
	{"{\"iss\":\"\x80\"}", JwtPayloadParseErrorBadJSON, ruleUTF8Bad, "", nil, false},
	// duplicates, numbers, depth
	{`{"iss":"a","iss":"a"}`, JwtPayloadParseErrorBadJSON, ruleDuplicate, "", nil, false},
	{`{iss:"a","\u0069ss":"a"}`, JwtPayloadParseErrorBadJSON, ruleDuplicate, "", nil, false},
	{`{"x":{"a":1,'a':1}}`, JwtPayloadParseErrorBadJSON, ruleDuplicate, "", nil, false},
	{`{"exp":1e400}`, JwtPayloadParseErrorBadJSON, ruleNumber, "", nil, false},
	{`{"exp":NaN}`, JwtPayloadParseErrorBadJSON, ruleNumber, "", nil, false},
	{`{"exp":01}`, JwtPayloadParseErrorBadJSON, ruleNumber, "", nil, false},
	{deepPayload(cppJSONDepth), OK, ruleDepth, "", nil, false},
	{deepPayload(cppJSONDepth + 1), JwtPayloadParseErrorBadJSON, ruleDepth, "", nil, false},
	{`{"x":` + strings.Repeat("[", 100000) + `}`, JwtPayloadParseErrorBadJSON, ruleDepth, "", nil, false},
	// claims read after parsing
	{`{iss:1}`, JwtPayloadParseErrorIssNotString, ruleClaimType, "", nil, false},
	{`{sub:null}`, JwtPayloadParseErrorSubNotString, ruleClaimType, "", nil, false},
	{`{exp:-1}`, JwtPayloadParseErrorExpOutOfRange, ruleClaimType, "", nil, false},
	{`{aud:['a',1]}`, JwtPayloadParseErrorAudNotString, ruleClaimType, "", nil, false},
}

// TestParsePayloadTable checks each payload's Status, iss, aud and Struct against
// jwt_verify_lib's rules (each row cites the one that decides it) and against cppJSON, the
// re-statement of C++ protobuf's parser.
func TestParsePayloadTable(t *testing.T) {
	for _, r := range payloadRows {
		var got jwt
		d := newStructDecoder(r.json)
		st := got.parsePayload(d, r.json)
		d.release()
		name := r.json
		if len(name) > 80 {
			name = name[:80] + "..."
		}
		ref, refOK := cppJSON(r.json)
		if (st != JwtPayloadParseErrorBadJSON) != refOK {
			t.Errorf("parsePayload(%q) = %v but cppJSON ok = %v (%s)", name, st, refOK, r.rule)
		}
		if st != r.want {
			t.Errorf("parsePayload(%q) = %v, want %v (%s)", name, st, r.want, r.rule)
			continue
		}
		if st != OK {
			continue
		}
		if got.iss != r.iss || !slicesEqual(got.aud, r.aud) || got.payloadNotUTF8 != r.notUTF8 {
			t.Errorf("parsePayload(%q): iss %q aud %q notUTF8 %v, want %q %q %v (%s)", name, got.iss, got.aud,
				got.payloadNotUTF8, r.iss, r.aud, r.notUTF8, r.rule)
		}
		if !reflect.DeepEqual(got.payload.AsMap(), ref) {
			t.Errorf("parsePayload(%q): Struct %v, cppJSON %v", name, got.payload, ref)
		}
	}
}

func slicesEqual(a, b []string) bool {
	return len(a) == len(b) && (len(a) == 0 || reflect.DeepEqual(a, b))
}

// hmacSecret is the key of hmacToken's tokens (kid "h1", HS256).
var hmacSecret = []byte(strings.Repeat("0123456789abcdef", 4))

// hmacToken signs header and payload, taken as they are (any bytes), with hmacSecret.
func hmacToken(header, payload string) string {
	enc := base64.RawURLEncoding.EncodeToString
	signed := enc([]byte(header)) + "." + enc([]byte(payload))
	m := hmac.New(sha256.New, hmacSecret)
	m.Write([]byte(signed))
	return signed + "." + enc(m.Sum(nil))
}

// TestPayloadDownstream checks what becomes of payload strings that C++ protobuf's parser
// accepts and strict JSON does not, at each place they flow to: the issuer match, claim
// headers, the forwarded payload and the metadata (RBAC's claims, and what ext_authz, access
// logs and tracing encode with proto.Marshal or protojson).
func TestPayloadDownstream(t *testing.T) {
	jwks := mustJSONString(t, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: hmacSecret, KeyID: "h1", Algorithm: "HS256"}}})
	p := istioProvider(testIssuer, jwks)
	p.ForwardPayloadHeader = "x-jwt-payload"
	p.HeaderInMetadata = "header"
	p.ClaimToHeaders = []*jwtauthnv3.JwtClaimToHeader{
		{HeaderName: "x-sub", ClaimName: "sub"},
		{HeaderName: "x-ctl", ClaimName: "ctl"},
		{HeaderName: "x-nl", ClaimName: "nl"},
		{HeaderName: "x-nul", ClaimName: "nul"},
		{HeaderName: "x-del", ClaimName: "del"},
		{HeaderName: "x-tab", ClaimName: "tab"},
		{HeaderName: "x-obj", ClaimName: "obj"},
	}
	f := mustCompile(t, istioConfig(p))
	exp := strconv.FormatInt(testNow.Unix()+3600, 10)
	header := "{alg:'HS256',kid:'h1',x:'\xed\xa0\x80',}"
	payload := "{iss:'" + testIssuer + "',aud:'bookinfo',exp:" + exp + ",sub:'a\xc0\x80b',ctl:'a\x01b'," +
		`nl:"a\nb",nul:"a\u0000b",del:'a` + "\x7f" + `b',tab:'a` + "\t" + `b',` +
		"scope:'r\xc0\x80 w',obj:{'k':'\xed\xa0\x80'},\"n\xc0\x80\":1,'ok':['\xf4\x90\x80\x80'],}"
	tok := hmacToken(header, payload)
	r := newReq("/", "authorization", "Bearer "+tok)
	res := f.Verify(r)
	if res.Status != OK {
		t.Fatalf("status %v", res.Status)
	}

	// Claim headers: the claim's bytes as they are, UTF-8 or not (Envoy's addCopy of
	// string_value), but none with a control character other than HTAB or with DEL. An object
	// claim is base64 of encoding/json's rendering, which writes each invalid byte as \ufffd;
	// Envoy's MessageToJsonString would write this encoded surrogate's bytes as they are (its
	// JsonWriter checks UTF-8 by shape), a known difference of claimString's JSON.
	for h, want := range map[string]string{
		"x-sub": "a\xc0\x80b", "x-tab": "a\tb", "x-ctl": "", "x-nl": "", "x-nul": "", "x-del": "",
		"x-obj":         base64.StdEncoding.EncodeToString([]byte(`{"k":"\ufffd\ufffd\ufffd"}`)),
		"x-jwt-payload": strings.Split(tok, ".")[1],
	} {
		if got := r.h[canonical(h)]; want == "" && len(got) != 0 || want != "" && (len(got) != 1 || got[0] != want) {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}

	// Metadata: valid UTF-8 throughout, each invalid byte one U+FFFD, members with invalid
	// names dropped; Go's encoders take it.
	if _, err := proto.Marshal(res.Metadata); err != nil {
		t.Errorf("proto.Marshal(metadata): %v", err)
	}
	if _, err := protojson.Marshal(res.Metadata); err != nil {
		t.Errorf("protojson.Marshal(metadata): %v", err)
	}
	got := res.Metadata.AsMap()
	want := map[string]any{
		"payload": map[string]any{
			"iss": testIssuer, "aud": "bookinfo", "exp": float64(testNow.Unix() + 3600), "sub": "a\ufffd\ufffdb",
			"ctl": "a\x01b", "nl": "a\nb", "nul": "a\x00b", "del": "a\x7fb", "tab": "a\tb",
			"scope": []any{"r\ufffd\ufffd", "w"}, "obj": map[string]any{"k": "\ufffd\ufffd\ufffd"},
			"ok": []any{"\ufffd\ufffd\ufffd\ufffd"},
		},
		"header": map[string]any{"alg": "HS256", "kid": "h1", "x": "\ufffd\ufffd\ufffd"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("metadata %v\nwant %v", got, want)
	}

	// A null payload is an empty Struct: no iss, so a provider with an issuer does not take it
	// (JwtLocation::isIssuerAllowed), one without does, and its metadata is an empty Struct.
	tok = hmacToken(`{"alg":"HS256"}`, " null ")
	if st := f.Verify(newReq("/", "authorization", "Bearer "+tok)).Status; st != JwtUnknownIssuer {
		t.Errorf("null payload, provider with issuer: %v, want %v", st, JwtUnknownIssuer)
	}
	anyIss := mustCompile(t, istioConfig(istioProvider("", jwks)))
	if res := anyIss.Verify(newReq("/", "authorization", "Bearer "+tok)); res.Status != OK {
		t.Errorf("null payload, provider without issuer: %v", res.Status)
	} else if pl := res.Metadata.GetFields()["payload"].GetStructValue(); pl == nil || len(pl.GetFields()) != 0 {
		t.Errorf("null payload: metadata %v, want an empty payload Struct", res.Metadata)
	}

	// Legacy syntax and a valid payload: nothing rewritten.
	tok = hmacToken(`{"alg":"HS256"}`, "{iss:'"+testIssuer+"',aud:'bookinfo',sub:'caf\xc3\xa9',}")
	r = newReq("/", "authorization", "Bearer "+tok)
	if res := f.Verify(r); res.Status != OK {
		t.Fatalf("legacy payload: status %v", res.Status)
	} else if sub := res.Metadata.GetFields()["payload"].GetStructValue().GetFields()["sub"].GetStringValue(); sub != "café" || r.get("x-sub") != "café" {
		t.Errorf("legacy payload: sub %q, header %q", sub, r.get("x-sub"))
	}
}

// TestMetadataUTF8 checks that metadataUTF8 leaves any Struct the payload decoder builds
// encodable by proto.Marshal, and valid strings as they were.
func TestMetadataUTF8(t *testing.T) {
	for _, r := range payloadRows {
		s, ok := decodeStructAs(r.json, cppJSONDepth, true)
		if !ok {
			continue
		}
		before := proto.Clone(s).(*structpb.Struct)
		metadataUTF8(s)
		if _, err := proto.Marshal(s); err != nil {
			t.Errorf("%q: proto.Marshal after metadataUTF8: %v", r.json, err)
		}
		if _, err := proto.Marshal(before); (err == nil) != proto.Equal(s, before) {
			t.Errorf("%q: metadataUTF8 changed a valid Struct, or left an invalid one", r.json)
		}
	}
}
