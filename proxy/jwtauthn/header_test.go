package jwtauthn

import (
	"encoding/base64"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// The rules the header table cites. jwt_verify_lib's Jwt::parseFromString decodes the header
// with C++ protobuf's JsonStringToMessage into a google.protobuf.Struct (default
// JsonParseOptions; JsonStringToMessage itself turns on allow_legacy_syntax), any failure
// being JwtHeaderParseErrorBadJson; then StructUtils::GetString reads "alg" (anything but OK,
// i.e. absent or not a string, is JwtHeaderBadAlg), isImplemented checks it (else
// JwtHeaderNotImplementedAlg), and GetString reads "kid" (WRONG_TYPE, i.e. present and not a
// string, is JwtHeaderBadKid).
const (
	ruleAlgMissing   = "GetString(alg) MISSING is not OK: BadAlg"
	ruleAlgType      = "GetString(alg) WRONG_TYPE (null, number, bool, list, object): BadAlg"
	ruleAlgImpl      = "isImplemented: exact name among the 13 algorithms"
	ruleKidType      = "GetString(kid) WRONG_TYPE (null included): BadKid"
	ruleKidMissing   = "GetString(kid) MISSING is accepted"
	ruleExactName    = "Struct fields are a map: members are found by exact name, after unescaping"
	ruleDuplicate    = "ParseMap refuses a repeated key (keys_seen), at any depth"
	ruleTopLevel     = "a Struct's JSON must be an object (VisitObject expects '{')"
	ruleTopNull      = "ParseMap accepts a top-level null as an empty Struct: alg MISSING"
	ruleTrailing     = "JsonStreamToMessage: only white space may follow the value"
	ruleWhiteSpace   = "SkipToToken: white space is space, tab, CR and LF only"
	ruleUTF8Shape    = "ParseUtf8 checks UTF-8 by shape only (lead byte's leading ones, 10xxxxxx after)"
	ruleUTF8Bad      = "ParseUtf8: a lead byte with 1 or 5+ leading ones, or a short sequence, is invalid"
	ruleControl      = "ParseUtf8: raw control characters are refused only without allow_legacy_syntax"
	ruleEscapes      = "ParseSimpleEscape: \" \\ / b f n r t, and ' with allow_legacy_syntax; \\U as \\u"
	ruleSurrogate    = "ParseUnicodeEscape: a high surrogate needs \\u and a low one (Expect skips white space)"
	ruleQuotes       = "ParseUtf8 accepts ' strings with allow_legacy_syntax, keys and values"
	ruleBareWord     = "VisitObject: an unquoted key is a ParseBareWord with allow_legacy_syntax"
	ruleTrailComma   = "VisitObject/VisitArray accept one trailing comma with allow_legacy_syntax"
	ruleNumber       = "ParseRawNumber: JSON's number grammar; SimpleAtod must give a finite double"
	ruleDepth        = "JsonLexer::Push: at most 100 nested objects and arrays (kDefaultDepth)"
	ruleLiteral      = "PeekKind/Expect: true, false and null exactly; other bare values refused"
	ruleOK           = "a well-formed header"
	withAlg          = `{"alg":"RS256",`
	withAlgEnd       = `}`
	headerDepthLimit = cppJSONDepth
)

// headerRow is a header JSON and the Status Envoy decides it with.
type headerRow struct {
	json string
	want Status
	rule string
	alg  string // when OK
	kid  string // when OK
	meta string // when OK and set: the header_in_metadata Struct, as strict JSON
}

func deepArrays(n int) string {
	return withAlg + `"x":` + strings.Repeat("[", n) + strings.Repeat("]", n) + withAlgEnd
}

func deepObjects(n int) string {
	return withAlg + `"x":` + strings.Repeat(`{"a":`, n-1) + "{}" + strings.Repeat("}", n-1) + withAlgEnd
}

var headerRows = []headerRow{
	{`{"alg":"RS256"}`, OK, ruleOK, "RS256", "", `{"alg":"RS256"}`},
	{`{"alg":"ES256","kid":"k","typ":"JWT"}`, OK, ruleOK, "ES256", "k", `{"alg":"ES256","kid":"k","typ":"JWT"}`},
	{`{"alg":"EdDSA","kid":""}`, OK, ruleOK, "EdDSA", "", ""},
	{`{"typ":"JWT"}`, JwtHeaderBadAlg, ruleAlgMissing, "", "", ""},
	{`{}`, JwtHeaderBadAlg, ruleAlgMissing, "", "", ""},
	{`{"alg":null}`, JwtHeaderBadAlg, ruleAlgType, "", "", ""},
	{`{"alg":1}`, JwtHeaderBadAlg, ruleAlgType, "", "", ""},
	{`{"alg":true}`, JwtHeaderBadAlg, ruleAlgType, "", "", ""},
	{`{"alg":["RS256"]}`, JwtHeaderBadAlg, ruleAlgType, "", "", ""},
	{`{"alg":{"a":"RS256"}}`, JwtHeaderBadAlg, ruleAlgType, "", "", ""},
	{`{"alg":"none"}`, JwtHeaderNotImplementedAlg, ruleAlgImpl, "", "", ""},
	{`{"alg":""}`, JwtHeaderNotImplementedAlg, ruleAlgImpl, "", "", ""},
	{`{"alg":"rs256"}`, JwtHeaderNotImplementedAlg, ruleAlgImpl, "", "", ""},
	{`{"alg":"RS256 "}`, JwtHeaderNotImplementedAlg, ruleAlgImpl, "", "", ""},
	{`{"alg":"RS256","kid":null}`, JwtHeaderBadKid, ruleKidType, "", "", ""},
	{`{"alg":"RS256","kid":1}`, JwtHeaderBadKid, ruleKidType, "", "", ""},
	{`{"alg":"RS256","kid":["a"]}`, JwtHeaderBadKid, ruleKidType, "", "", ""},
	{`{"alg":"RS256","kid":{}}`, JwtHeaderBadKid, ruleKidType, "", "", ""},
	{`{"alg":"none","kid":1}`, JwtHeaderNotImplementedAlg, ruleAlgImpl + " (before kid)", "", "", ""},
	{`{"alg":"RS256","KID":1}`, OK, ruleKidMissing + "; " + ruleExactName, "RS256", "", ""},
	// member names: exact, after unescaping
	{`{"ALG":"RS256"}`, JwtHeaderBadAlg, ruleExactName, "", "", ""},
	{`{"Alg":"RS256","alg":"ES256"}`, OK, ruleExactName, "ES256", "", ""},
	{`{"alg":"RS256","\u212aid":1}`, OK, ruleExactName, "RS256", "", ""},
	{`{"\u0061lg":"R\u0053256","k\u0069d":"\u006b"}`, OK, ruleExactName, "RS256", "k", `{"alg":"RS256","kid":"k"}`},
	// duplicates
	{`{"alg":"RS256","alg":"RS256"}`, JwtHeaderParseErrorBadJSON, ruleDuplicate, "", "", ""},
	{`{"alg":"RS256","kid":"a","kid":"b"}`, JwtHeaderParseErrorBadJSON, ruleDuplicate, "", "", ""},
	{`{"alg":"RS256","\u0061lg":"RS256"}`, JwtHeaderParseErrorBadJSON, ruleDuplicate, "", "", ""},
	{`{"alg":"RS256",alg:"RS256"}`, JwtHeaderParseErrorBadJSON, ruleDuplicate, "", "", ""},
	{`{"alg":"RS256","x":{"a":1,"a":2}}`, JwtHeaderParseErrorBadJSON, ruleDuplicate, "", "", ""},
	{`{"alg":"RS256","x":[{"a":1,"a":2}]}`, JwtHeaderParseErrorBadJSON, ruleDuplicate, "", "", ""},
	{`{"alg":"RS256","x":{"a":1},"a":1}`, OK, ruleDuplicate + " (per object)", "RS256", "", ""},
	// top level
	{``, JwtHeaderParseErrorBadJSON, ruleTopLevel, "", "", ""},
	{` `, JwtHeaderParseErrorBadJSON, ruleTopLevel, "", "", ""},
	{`[]`, JwtHeaderParseErrorBadJSON, ruleTopLevel, "", "", ""},
	{`[{"alg":"RS256"}]`, JwtHeaderParseErrorBadJSON, ruleTopLevel, "", "", ""},
	{`"RS256"`, JwtHeaderParseErrorBadJSON, ruleTopLevel, "", "", ""},
	{`1`, JwtHeaderParseErrorBadJSON, ruleTopLevel, "", "", ""},
	{`true`, JwtHeaderParseErrorBadJSON, ruleTopLevel, "", "", ""},
	{`nope`, JwtHeaderParseErrorBadJSON, ruleTopLevel, "", "", ""},
	{`{`, JwtHeaderParseErrorBadJSON, ruleTopLevel, "", "", ""},
	{`{"alg":"RS256"`, JwtHeaderParseErrorBadJSON, ruleTopLevel, "", "", ""},
	{`null`, JwtHeaderBadAlg, ruleTopNull, "", "", ""},
	{" \t\r\nnull \n", JwtHeaderBadAlg, ruleTopNull, "", "", ""},
	{`nul`, JwtHeaderParseErrorBadJSON, ruleTopNull, "", "", ""},
	{`nullx`, JwtHeaderParseErrorBadJSON, ruleTopNull + "; " + ruleTrailing, "", "", ""},
	{`null null`, JwtHeaderParseErrorBadJSON, ruleTrailing, "", "", ""},
	{`{"alg":"RS256"}x`, JwtHeaderParseErrorBadJSON, ruleTrailing, "", "", ""},
	{`{"alg":"RS256"} {}`, JwtHeaderParseErrorBadJSON, ruleTrailing, "", "", ""},
	{`{"alg":"RS256"},`, JwtHeaderParseErrorBadJSON, ruleTrailing, "", "", ""},
	{"{\"alg\":\"RS256\"}\x00", JwtHeaderParseErrorBadJSON, ruleTrailing, "", "", ""},
	{" \t\r\n{ \"alg\" : \"RS256\" } \t\r\n", OK, ruleWhiteSpace, "RS256", "", `{"alg":"RS256"}`},
	{"\f{\"alg\":\"RS256\"}", JwtHeaderParseErrorBadJSON, ruleWhiteSpace, "", "", ""},
	{"\ufeff{\"alg\":\"RS256\"}", JwtHeaderParseErrorBadJSON, ruleWhiteSpace, "", "", ""},
	{"{\"alg\":\"RS256\"}\u00a0", JwtHeaderParseErrorBadJSON, ruleWhiteSpace, "", "", ""},
	// UTF-8, by shape
	{withAlg + "\"x\":\"\xc0\xaf\"}", OK, ruleUTF8Shape + " (overlong)", "RS256", "", ""},
	{withAlg + "\"x\":\"\xed\xa0\x80\"}", OK, ruleUTF8Shape + " (surrogate)", "RS256", "", ""},
	{withAlg + "\"x\":\"\xf4\x90\x80\x80\"}", OK, ruleUTF8Shape + " (past U+10FFFF)", "RS256", "", ""},
	{withAlg + "\"x\":\"\xf7\xbf\xbf\xbf\"}", OK, ruleUTF8Shape, "RS256", "", ""},
	{"{\"alg\":\"RS256\",\"kid\":\"\xc1\xbf\"}", OK, ruleUTF8Shape, "RS256", "\xc1\xbf", ""},
	{"{\"\xe0\x80\x80\":1,\"alg\":\"RS256\"}", OK, ruleUTF8Shape + " (names too)", "RS256", "", ""},
	{withAlg + "\"x\":\"\xff\"}", JwtHeaderParseErrorBadJSON, ruleUTF8Bad, "", "", ""},
	{withAlg + "\"x\":\"\x80\"}", JwtHeaderParseErrorBadJSON, ruleUTF8Bad, "", "", ""},
	{withAlg + "\"x\":\"\xc3\"}", JwtHeaderParseErrorBadJSON, ruleUTF8Bad, "", "", ""},
	{withAlg + "\"x\":\"\xe2\x82\"}", JwtHeaderParseErrorBadJSON, ruleUTF8Bad, "", "", ""},
	{withAlg + "\"x\":\"\xf8\x88\x80\x80\x80\"}", JwtHeaderParseErrorBadJSON, ruleUTF8Bad, "", "", ""},
	{withAlg + "\"x\":\"\xc3", JwtHeaderParseErrorBadJSON, ruleUTF8Bad, "", "", ""},
	{"{\"alg\":\"RS256\",\"\xfe\":1}", JwtHeaderParseErrorBadJSON, ruleUTF8Bad, "", "", ""},
	// control characters
	{withAlg + "\"x\":\"a\tb\nc\x00d\x1f\x7f\"}", OK, ruleControl, "RS256", "", ""},
	{"{\"alg\":\"RS256\",\"kid\":\"\x01\"}", OK, ruleControl, "RS256", "\x01", ""},
	// escapes
	{withAlg + `"x":"\"\\\/\b\f\n\r\t"}`, OK, ruleEscapes, "RS256", "", `{"alg":"RS256","x":"\"\\/\b\f\n\r\t"}`},
	{withAlg + `"x":"\'"}`, OK, ruleEscapes, "RS256", "", `{"alg":"RS256","x":"'"}`},
	{withAlg + `"x":"\U00e9"}`, OK, ruleEscapes, "RS256", "", `{"alg":"RS256","x":"é"}`},
	{`{"alg":"\U0052S256"}`, OK, ruleEscapes, "RS256", "", ""},
	{withAlg + `"x":"\a"}`, JwtHeaderParseErrorBadJSON, ruleEscapes, "", "", ""},
	{withAlg + `"x":"\x41"}`, JwtHeaderParseErrorBadJSON, ruleEscapes, "", "", ""},
	{withAlg + `"x":"\u12"}`, JwtHeaderParseErrorBadJSON, ruleEscapes, "", "", ""},
	{withAlg + `"x":"\u12g4"}`, JwtHeaderParseErrorBadJSON, ruleEscapes, "", "", ""},
	{withAlg + `"x":"\`, JwtHeaderParseErrorBadJSON, ruleEscapes, "", "", ""},
	{withAlg + `"x":"\ud83d\ude00"}`, OK, ruleSurrogate, "RS256", "", `{"alg":"RS256","x":"😀"}`},
	{withAlg + `"x":"\udbff\udfff"}`, OK, ruleSurrogate + " (U+10FFFF)", "RS256", "", `{"alg":"RS256","x":"\udbff\udfff"}`},
	{withAlg + `"x":"\ud83d \ude00"}`, OK, ruleSurrogate, "RS256", "", `{"alg":"RS256","x":"😀"}`},
	{withAlg + "\"x\":\"\\ud83d\r\n\t \\ude00\"}", OK, ruleSurrogate, "RS256", "", `{"alg":"RS256","x":"😀"}`},
	{withAlg + `"x":"\ud83d\Ude00"}`, JwtHeaderParseErrorBadJSON, ruleSurrogate + " (lower-case u only)", "", "", ""},
	{withAlg + `"x":"\ud83d"}`, JwtHeaderParseErrorBadJSON, ruleSurrogate, "", "", ""},
	{withAlg + `"x":"\ud83dx"}`, JwtHeaderParseErrorBadJSON, ruleSurrogate, "", "", ""},
	{withAlg + `"x":"\ud83d\u0041"}`, JwtHeaderParseErrorBadJSON, ruleSurrogate, "", "", ""},
	{withAlg + `"x":"\ude00"}`, JwtHeaderParseErrorBadJSON, ruleSurrogate + " (lone low)", "", "", ""},
	{withAlg + `"x":"\ud83d\ud83d"}`, JwtHeaderParseErrorBadJSON, ruleSurrogate, "", "", ""},
	// single quotes
	{`{'alg':'RS256'}`, OK, ruleQuotes, "RS256", "", `{"alg":"RS256"}`},
	{`{"alg":'RS256',"x":'a"b',"y":"a'b"}`, OK, ruleQuotes, "RS256", "", `{"alg":"RS256","x":"a\"b","y":"a'b"}`},
	{`{'alg":"RS256'}`, JwtHeaderParseErrorBadJSON, ruleQuotes, "", "", ""},
	{`{"alg":"RS256'}`, JwtHeaderParseErrorBadJSON, ruleQuotes, "", "", ""},
	// bare-word names
	{`{alg:"RS256",kid:"k"}`, OK, ruleBareWord, "RS256", "k", `{"alg":"RS256","kid":"k"}`},
	{`{ alg : "RS256" , _x1:1, nullx:2, X:3 }`, OK, ruleBareWord, "RS256", "", `{"alg":"RS256","_x1":1,"nullx":2,"X":3}`},
	{`{1a:1,"alg":"RS256"}`, JwtHeaderParseErrorBadJSON, ruleBareWord + " (no leading digit)", "", "", ""},
	{`{null:1,"alg":"RS256"}`, JwtHeaderParseErrorBadJSON, ruleBareWord + " (not null/true/false)", "", "", ""},
	{`{true:1,"alg":"RS256"}`, JwtHeaderParseErrorBadJSON, ruleBareWord, "", "", ""},
	{`{a-b:1,"alg":"RS256"}`, JwtHeaderParseErrorBadJSON, ruleBareWord, "", "", ""},
	{`{"alg":"RS256",é:1}`, JwtHeaderParseErrorBadJSON, ruleBareWord + " (ASCII only)", "", "", ""},
	{`{alg:RS256}`, JwtHeaderParseErrorBadJSON, ruleBareWord + " (names only; " + ruleLiteral + ")", "", "", ""},
	// trailing commas
	{`{"alg":"RS256",}`, OK, ruleTrailComma, "RS256", "", `{"alg":"RS256"}`},
	{withAlg + `"x":[1,2,],"y":{"a":1 , } , }`, OK, ruleTrailComma, "RS256", "", `{"alg":"RS256","x":[1,2],"y":{"a":1}}`},
	{`{"alg":"RS256",,}`, JwtHeaderParseErrorBadJSON, ruleTrailComma + " (one)", "", "", ""},
	{`{,"alg":"RS256"}`, JwtHeaderParseErrorBadJSON, ruleTrailComma + " (trailing only)", "", "", ""},
	{`{,}`, JwtHeaderParseErrorBadJSON, ruleTrailComma, "", "", ""},
	{withAlg + `"x":[,]}`, JwtHeaderParseErrorBadJSON, ruleTrailComma, "", "", ""},
	{withAlg + `"x":[1,,2]}`, JwtHeaderParseErrorBadJSON, ruleTrailComma, "", "", ""},
	{withAlg + `"x":[1 2]}`, JwtHeaderParseErrorBadJSON, ruleTrailComma, "", "", ""},
	// numbers
	{withAlg + `"x":-0,"y":1.5e+3,"z":1E-2,"w":0.25}`, OK, ruleNumber, "RS256", "", `{"alg":"RS256","x":-0,"y":1500,"z":0.01,"w":0.25}`},
	{withAlg + `"x":1e-400}`, OK, ruleNumber + " (underflow is 0)", "RS256", "", `{"alg":"RS256","x":0}`},
	{withAlg + `"x":18446744073709551616}`, OK, ruleNumber, "RS256", "", ""},
	{withAlg + `"x":1e400}`, JwtHeaderParseErrorBadJSON, ruleNumber + " (infinite)", "", "", ""},
	{withAlg + `"x":-1.8e308}`, JwtHeaderParseErrorBadJSON, ruleNumber + " (infinite)", "", "", ""},
	{withAlg + `"x":01}`, JwtHeaderParseErrorBadJSON, ruleNumber, "", "", ""},
	{withAlg + `"x":1.}`, JwtHeaderParseErrorBadJSON, ruleNumber, "", "", ""},
	{withAlg + `"x":.5}`, JwtHeaderParseErrorBadJSON, ruleNumber, "", "", ""},
	{withAlg + `"x":-}`, JwtHeaderParseErrorBadJSON, ruleNumber, "", "", ""},
	{withAlg + `"x":+1}`, JwtHeaderParseErrorBadJSON, ruleNumber, "", "", ""},
	{withAlg + `"x":1e}`, JwtHeaderParseErrorBadJSON, ruleNumber, "", "", ""},
	{withAlg + `"x":0x10}`, JwtHeaderParseErrorBadJSON, ruleNumber, "", "", ""},
	{withAlg + `"x":NaN}`, JwtHeaderParseErrorBadJSON, ruleNumber, "", "", ""},
	{withAlg + `"x":"NaN"}`, OK, ruleNumber + " (a string stays one)", "RS256", "", ""},
	// literals
	{withAlg + `"x":true,"y":false,"z":null}`, OK, ruleLiteral, "RS256", "", `{"alg":"RS256","x":true,"y":false,"z":null}`},
	{withAlg + `"x":tru}`, JwtHeaderParseErrorBadJSON, ruleLiteral, "", "", ""},
	{withAlg + `"x":truex}`, JwtHeaderParseErrorBadJSON, ruleLiteral, "", "", ""},
	{withAlg + `"x":True}`, JwtHeaderParseErrorBadJSON, ruleLiteral, "", "", ""},
	// depth
	{deepArrays(headerDepthLimit - 1), OK, ruleDepth, "RS256", "", ""},
	{deepArrays(headerDepthLimit), JwtHeaderParseErrorBadJSON, ruleDepth, "", "", ""},
	{deepObjects(headerDepthLimit - 1), OK, ruleDepth, "RS256", "", ""},
	{deepObjects(headerDepthLimit), JwtHeaderParseErrorBadJSON, ruleDepth, "", "", ""},
	{deepArrays(100000), JwtHeaderParseErrorBadJSON, ruleDepth, "", "", ""},
}

// TestParseHeaderTable checks each header's Status, alg, kid and metadata Struct against
// jwt_verify_lib's rules (each row cites the one that decides it).
func TestParseHeaderTable(t *testing.T) {
	for _, r := range headerRows {
		var got jwt
		d := newStructDecoder(r.json)
		st := got.parseHeader(d, r.json)
		d.release()
		name := r.json
		if len(name) > 80 {
			name = name[:80] + "..."
		}
		if st != r.want {
			t.Errorf("parseHeader(%q) = %v, want %v (%s)", name, st, r.want, r.rule)
			continue
		}
		if st != OK {
			continue
		}
		if got.alg != r.alg || got.kid != r.kid {
			t.Errorf("parseHeader(%q): alg %q kid %q, want %q %q (%s)", name, got.alg, got.kid, r.alg, r.kid, r.rule)
		}
		h := got.headerStruct()
		if h == nil {
			t.Errorf("parseHeader(%q): no header Struct", name)
			continue
		}
		if r.meta != "" {
			want, ok := oracleStruct(r.meta)
			if !ok {
				t.Fatalf("bad meta %q", r.meta)
			}
			if !proto.Equal(h, want) {
				t.Errorf("parseHeader(%q): header Struct %v, want %v", name, h, want)
			}
		}
	}
}

// TestParseHeaderToken checks the header rules through whole tokens: the Status and its order
// against the payload's and signature's faults.
func TestParseHeaderToken(t *testing.T) {
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, c := range []struct {
		token string
		want  Status
	}{
		{enc(`{alg:'RS256',}`) + "." + enc(`{}`) + ".c2ln", OK},
		{enc(`null`) + "." + enc(`{}`) + ".c2ln", JwtHeaderBadAlg},
		{enc(`{"alg":"RS256","alg":"RS256"}`) + ".!!.c2ln", JwtHeaderParseErrorBadJSON},
		{enc(`{"alg":"RS256"}`) + ".!!.c2ln", JwtPayloadParseErrorBadBase64},
		{enc(`{"ALG":"RS256"}`) + "." + enc(`{"iss":1}`) + ".c2ln", JwtHeaderBadAlg},
	} {
		_, st := parseJWT(c.token)
		if st != c.want {
			t.Errorf("parseJWT(%q) = %v, want %v", c.token, st, c.want)
		}
	}
}

// containerDepth returns the deepest nesting of objects and arrays in data, valid JSON.
func containerDepth(data string) int {
	depth, deepest := 0, 0
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '"':
			for i++; i < len(data) && data[i] != '"'; i++ {
				if data[i] == '\\' {
					i++
				}
			}
		case '{', '[':
			depth++
			deepest = max(deepest, depth)
		case '}', ']':
			depth--
		}
	}
	return deepest
}

// checkHeader checks parseHeader on data against what is known of C++ protobuf's parser without
// running it: the same decision and Struct as cppJSON, its re-statement; strict JSON within its
// depth accepted as protojson decodes it; and what it accepts that is plainly strict JSON (no
// escapes, UTF-8) accepted by protojson too. Any verdict must be a header one, and an accepted
// header's Struct holds the alg and kid read. The payload is parsed by the same decoder and
// rules (parsePayload), so this checks it too.
func checkHeader(t *testing.T, data string) {
	t.Helper()
	var got jwt
	d := newStructDecoder(data)
	st := got.parseHeader(d, data)
	d.release()
	cs, cok := decodeStructAs(data, cppJSONDepth, true)
	if (st != JwtHeaderParseErrorBadJSON) != cok {
		t.Fatalf("parseHeader(%q) = %v but decodeStructAs ok = %v", data, st, cok)
	}
	switch st {
	case OK:
		f := cs.GetFields()
		if !algs[got.alg] || f["alg"].GetStringValue() != got.alg || got.kid != f["kid"].GetStringValue() {
			t.Fatalf("parseHeader(%q): alg %q kid %q, Struct %v", data, got.alg, got.kid, cs)
		}
		if h := got.headerStruct(); !proto.Equal(h, cs) {
			t.Fatalf("parseHeader(%q): headerStruct %v, want %v", data, h, cs)
		}
	case JwtHeaderParseErrorBadJSON, JwtHeaderBadAlg, JwtHeaderNotImplementedAlg, JwtHeaderBadKid:
	default:
		t.Fatalf("parseHeader(%q) = %v: not a header status", data, st)
	}
	ref, rok := cppJSON(data)
	if rok != cok || rok && !reflect.DeepEqual(ref, cs.AsMap()) {
		t.Fatalf("decodeStructAs(%q, cpp) = %v, %v; cppJSON %v, %v", data, cs, cok, ref, rok)
	}
	ps, pok := oracleStruct(data)
	if pok && containerDepth(data) <= cppJSONDepth {
		if !cok || !proto.Equal(cs, ps) || !sameBits(structpb.NewStructValue(cs), structpb.NewStructValue(ps)) {
			t.Fatalf("decodeStructAs(%q, cpp) = %v, %v; protojson %v", data, cs, cok, ps)
		}
	}
	if cok && !pok && json.Valid([]byte(data)) && utf8.ValidString(data) && !strings.Contains(data, `\`) &&
		strings.HasPrefix(strings.TrimLeft(data, " \t\r\n"), "{") {
		t.Fatalf("decodeStructAs(%q, cpp) accepts strict JSON that protojson refuses", data)
	}
	if cok {
		// The decoder flags exactly the Structs Go's proto.Marshal refuses, and metadataUTF8
		// makes them encodable.
		if _, err := proto.Marshal(cs); (err != nil) != got.headerNotUTF8 {
			t.Fatalf("parseHeader(%q): headerNotUTF8 %v, proto.Marshal: %v", data, got.headerNotUTF8, err)
		}
		metadataUTF8(cs)
		if _, err := proto.Marshal(cs); err != nil {
			t.Fatalf("decodeStructAs(%q, cpp) after metadataUTF8: proto.Marshal: %v", data, err)
		}
	}
}

func TestParseHeaderChecks(t *testing.T) {
	for _, r := range headerRows {
		checkHeader(t, r.json)
	}
	for _, c := range append(append([]string{}, structCases...), depthCases()...) {
		checkHeader(t, c)
	}
}

// FuzzParseHeader checks parseHeader's invariants (checkHeader) on arbitrary headers.
func FuzzParseHeader(f *testing.F) {
	for _, r := range headerRows {
		if len(r.json) < 4096 { // large seeds cost minutes of minimizing
			f.Add(r.json)
		}
	}
	for _, c := range structCases {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, data string) {
		checkHeader(t, data)
	})
}
