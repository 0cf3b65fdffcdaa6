package jwtauthn

import (
	"encoding/base64"
	"math"
	"strings"
	"testing"
	"unicode/utf8"

	jose "github.com/go-jose/go-jose/v4"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strait-mesh/strait/internal/testenv/jwttest"
)

// oracleStruct is the reference decodeStruct must match.
func oracleStruct(data string) (*structpb.Struct, bool) {
	s := new(structpb.Struct)
	if err := (protojson.UnmarshalOptions{RecursionLimit: maxJSONDepth}).Unmarshal([]byte(data), s); err != nil {
		return nil, false
	}
	return s, true
}

// checkStructParity fails t unless decodeStruct and protojson agree on data: the same decision
// and, when accepted, proto.Equal Structs whose numbers have the same bits.
func checkStructParity(t *testing.T, data string) {
	t.Helper()
	want, wantOK := oracleStruct(data)
	got, gotOK := decodeStruct(data, maxJSONDepth)
	if gotOK != wantOK {
		t.Fatalf("decodeStruct(%q) ok = %v, protojson ok = %v", data, gotOK, wantOK)
	}
	d := newStructDecoder(data)
	ms, membersOK := d.decodeMembers(data, maxJSONDepth, false)
	if membersOK != wantOK || wantOK && len(ms) != len(want.GetFields()) {
		t.Fatalf("decodeMembers(%q) = %d members, ok %v; protojson: %d, ok %v", data, len(ms), membersOK, len(want.GetFields()), wantOK)
	}
	d.release()
	if !wantOK {
		return
	}
	if !proto.Equal(got, want) {
		t.Fatalf("decodeStruct(%q) = %v, protojson = %v", data, got, want)
	}
	if !sameBits(structpb.NewStructValue(got), structpb.NewStructValue(want)) {
		t.Fatalf("decodeStruct(%q) = %v, protojson = %v: numbers differ in bits", data, got, want)
	}
}

// sameBits compares two proto.Equal values' numbers bit for bit (-0 against 0).
func sameBits(a, b *structpb.Value) bool {
	switch a := a.GetKind().(type) {
	case *structpb.Value_NumberValue:
		return math.Float64bits(a.NumberValue) == math.Float64bits(b.GetNumberValue())
	case *structpb.Value_StructValue:
		bf := b.GetStructValue().GetFields()
		for k, v := range a.StructValue.GetFields() {
			if !sameBits(v, bf[k]) {
				return false
			}
		}
	case *structpb.Value_ListValue:
		bl := b.GetListValue().GetValues()
		for i, v := range a.ListValue.GetValues() {
			if !sameBits(v, bl[i]) {
				return false
			}
		}
	}
	return true
}

// structCases are the tricky inputs, checked against protojson by TestDecodeStruct and seeds
// of FuzzStructJSON.
var structCases = []string{
	// empty input, white space, top level
	"", " ", "{}", " \t\r\n{ \t\r\n} \t\r\n", "\f{}", "{}\f", "\u00a0{}", "\ufeff{}", "[]", `"a"`, "1", "null",
	"{", "}", "{}}", "{} {}", "{}x", "{}\x00", "{},", "{}]",
	// members
	`{"a":1}`, `{"a" : 1 , "b" : 2}`, `{"a":1,}`, `{,"a":1}`, `{"a":1,,"b":2}`, `{"a"}`, `{"a":}`,
	`{"a" 1}`, `{a:1}`, `{'a':1}`, `{"a":1 "b":2}`, `{"":1}`, `{"a":1}{`, `{"a":[1,]}`, `{"a":[,1]}`,
	`{"a":[1 2]}`, `{"a":[]}`, `{"a":[ ]}`, `{"a":{}}`, `{"a":[[],{},[{}]]}`, `{"a":[1}`, `{"a":{]}`,
	// duplicate names, also after unescaping
	`{"a":1,"a":2}`, `{"a":1,"\u0061":2}`, `{"a":{"b":1,"b":1}}`, `{"a":{"b":1},"b":1}`, `{"a":[{"b":1},{"b":1}]}`,
	`{"A":1,"a":2}`,
	// literals
	`{"a":true,"b":false,"c":null}`, `{"a":tru}`, `{"a":truex}`, `{"a":True}`, `{"a":nul}`, `{"a":nulll}`,
	`{"a":[true,false,null]}`, `{"a":true1}`, `{"a":-true}`,
	// numbers
	`{"a":0}`, `{"a":-0}`, `{"a":-0.0}`, `{"a":0e0}`, `{"a":-0e-0}`, `{"a":01}`, `{"a":-01}`, `{"a":00}`,
	`{"a":1.}`, `{"a":.1}`, `{"a":1.e1}`, `{"a":1e}`, `{"a":1e+}`, `{"a":1e-}`, `{"a":1E+2}`, `{"a":1e+2}`,
	`{"a":+1}`, `{"a":-}`, `{"a":--1}`, `{"a":1.5e308}`, `{"a":1.8e308}`, `{"a":-1.8e308}`, `{"a":1e309}`,
	`{"a":1e999999999999}`, `{"a":1e-400}`, `{"a":-1e-400}`, `{"a":1e-999999999999}`, `{"a":4.9e-324}`,
	`{"a":2.4e-324}`, `{"a":1.7976931348623157e308}`, `{"a":1.7976931348623158e308}`,
	`{"a":1.7976931348623159e308}`, `{"a":18446744073709551616}`, `{"a":9007199254740993}`,
	`{"a":0x10}`, `{"a":1_0}`, `{"a":Infinity}`, `{"a":NaN}`, `{"a":"NaN"}`, `{"a":"Infinity"}`,
	`{"a":1,"b":-1.25e-3}`, `{"a":[1,2.5,-3e2]}`, `{"a":123456789012345678901234567890}`,
	`{"a":0.` + strings.Repeat("0", 400) + `1}`, `{"a":1` + strings.Repeat("0", 400) + `}`,
	`{"a":1.0E}`, `{"a":1e1.5}`, `{"a":1ee1}`,
	// strings and escapes
	`{"a":"b"}`, `{"a":"\"\\\/\b\f\n\r\t"}`, `{"a":"\a"}`, `{"a":"\x41"}`, `{"a":"\'"}`, `{"a":"\u0041"}`,
	`{"a":"\u00e9\u00E9"}`, `{"a":"\u0000"}`, `{"a":"\u12"}`, `{"a":"\u12g4"}`, `{"a":"\u+123"}`,
	`{"a":"\U0041"}`, `{"a":"\ud83d\ude00"}`, `{"a":"\uD83D\uDE00"}`, `{"a":"\ud83d"}`, `{"a":"\ud83dx"}`,
	`{"a":"\ud83d\u0041"}`, `{"a":"\ude00\ud83d"}`, `{"a":"\ude00"}`, `{"a":"\ud83d\ud83d"}`, `{"a":"\ud83d\\ude00"}`,
	`{"a":"\ud83d\ude0"}`, `{"a":"\ud83d\"}`, `{"a":"\ufffd"}`, `{"a":"\uffff"}`, `{"a":"\ufeff"}`,
	`{"a":"` + "\x00" + `"}`, `{"a":"` + "\x1f" + `"}`, `{"a":"` + "\t" + `"}`, `{"a":"` + "\n" + `"}`,
	`{"a":"` + "\x7f" + `"}`, `{"a":"` + "\xff" + `"}`, `{"a":"` + "\xc3" + `"}`, `{"a":"` + "\xc3\xa9" + `"}`,
	`{"a":"` + "\xed\xa0\x80" + `"}`, `{"a":"` + "\xef\xbf\xbd" + `"}`, `{"a":"` + "\xf4\x90\x80\x80" + `"}`,
	`{"a":"` + "\xc0\xaf" + `"}`, `{"` + "\xff" + `":1}`, `{"\u00e9":1,"` + "\xc3\xa9" + `":2}`,
	`{"a":"x\u0041` + "\xff" + `"}`, `{"a":"x\n` + "\x01" + `"}`, `{"a":"\`, `{"a":"\u`, `{"a":"abc`, `{"a":"abc\"}`,
	`{"a":"日本語"}`, `{"日本":"語\u8a9e"}`, `{"a":"` + strings.Repeat(`\\`, 100) + `"}`,
	// a real payload
	`{"iss":"https://example.com","sub":"user@example.com","aud":["bookinfo","x"],"exp":4102444800,"iat":1700000000,"nbf":1700000000,"scope":"read write","nested":{"a":[1,{"b":null}]}}`,
	`{"alg":"ES256","kid":"ec1","typ":"JWT"}`,
	// more members than the decoder's first array holds, with and without a duplicate
	`{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17}`,
	`{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"a":17}`,
	`{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"o":16}`,
	// more values than the first chunks hold
	`{"a":[` + strings.Repeat(`1,"x",{"b":[true]},`, 300) + `null]}`, `{"u":"` + strings.Repeat(`:,[{`, 100) + `"}`,
}

// nested returns an object whose member "a" holds n nested arrays around v.
func nested(n int, v string) string {
	return `{"a":` + strings.Repeat("[", n) + v + strings.Repeat("]", n) + `}`
}

// nestedObjects returns n objects nested through member "a" around v.
func nestedObjects(n int, v string) string {
	return strings.Repeat(`{"a":`, n) + v + strings.Repeat(`}`, n)
}

func depthCases() []string {
	var cs []string
	for _, n := range []int{0, 1, 196, 197, 198, 199, 200, 201, 1000} {
		cs = append(cs, nested(n, "1"), nested(n, ""), nested(n, "{}"), nested(n, `{"b":1}`),
			nestedObjects(n, "1"), nestedObjects(n, "{}"), nestedObjects(n, "[]"), nestedObjects(n, "[1]"))
	}
	return cs
}

func TestDecodeStruct(t *testing.T) {
	for _, c := range append(append([]string{}, structCases...), depthCases()...) {
		checkStructParity(t, c)
	}
	// The depth limit is where protojson puts it: a value at level 200 passes, at 201 fails.
	if _, ok := decodeStruct(nested(198, "1"), maxJSONDepth); !ok {
		t.Error("198 nested lists refused")
	}
	if _, ok := decodeStruct(nested(199, "1"), maxJSONDepth); ok {
		t.Error("199 nested lists accepted")
	}
}

// TestDecodeStructShares checks that unescaped strings share the input and escaped ones do not
// alias one another.
func TestDecodeStructStrings(t *testing.T) {
	s, ok := decodeStruct(`{"a":"x\ny","b":"p\tq","c":["\u00e9",""]}`, maxJSONDepth)
	if !ok {
		t.Fatal("refused")
	}
	f := s.GetFields()
	if a, b := f["a"].GetStringValue(), f["b"].GetStringValue(); a != "x\ny" || b != "p\tq" {
		t.Errorf("a=%q b=%q", a, b)
	}
	if l := f["c"].GetListValue().GetValues(); len(l) != 2 || l[0].GetStringValue() != "é" || l[1].GetStringValue() != "" {
		t.Errorf("c=%v", f["c"])
	}
}

// FuzzStructJSON checks decodeStruct against protojson on arbitrary input: the same decision,
// equal results, no panic.
func FuzzStructJSON(f *testing.F) {
	for _, c := range structCases {
		f.Add(c)
	}
	for _, c := range depthCases() {
		f.Add(c)
	}
	k := mustKeys(f)
	for _, tok := range []string{
		jwttest.Sign(f, jose.RS256, k.rsa, "rsa1", claims(map[string]any{"scope": "read write", "groups": []any{"a", "b"}, "n": map[string]any{"x": 1.5, "y": nil, "z": true}})),
		jwttest.Sign(f, jose.ES256, k.ec, "ec1", claims(nil)),
		jwttest.Sign(f, jose.EdDSA, k.ed, "", claims(map[string]any{"aud": "x", "exp": -1})),
	} {
		for _, seg := range strings.Split(tok, ".")[:2] {
			b, err := base64.RawURLEncoding.DecodeString(seg)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(string(b))
		}
	}
	f.Fuzz(func(t *testing.T, data string) {
		checkStructParity(t, data)
		if utf8.ValidString(data) && len(data) < 1000 {
			checkStructParity(t, "{\"k\":"+data+"}")
		}
	})
}

// BenchmarkStructJSON compares decodeStruct with protojson on a typical payload.
func BenchmarkStructJSON(b *testing.B) {
	payload := `{"iss":"https://accounts.example.com","sub":"user-1","aud":["bookinfo","reviews"],"exp":4102444800,"iat":1700000000,"scope":"read write","email":"a@example.com","groups":["dev","ops"],"extra":{"tier":"gold","n":3}}`
	b.Run("decodeStruct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := decodeStruct(payload, maxJSONDepth); !ok {
				b.Fatal("refused")
			}
		}
	})
	b.Run("protojson", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := oracleStruct(payload); !ok {
				b.Fatal("refused")
			}
		}
	})
}
