package jwtauthn

import (
	"testing"

	"google.golang.org/protobuf/proto"
)

// checkHeaderParity fails t unless parseHeader decides data as the encoding/json path
// (parseHeaderJSON, the implementation before the Struct decoder) does, with the same alg and
// kid, and keeps the header Struct exactly when protojson decodes it.
func checkHeaderParity(t *testing.T, data string) {
	t.Helper()
	var got, want jwt
	d := newStructDecoder(data)
	defer d.release()
	gst := got.parseHeader(d, data)
	wst := want.parseHeaderJSON([]byte(data))
	if gst != wst || got.alg != want.alg || got.kid != want.kid {
		t.Fatalf("parseHeader(%q) = %v alg %q kid %q, encoding/json: %v alg %q kid %q", data, gst, got.alg, got.kid, wst, want.alg, want.kid)
	}
	if gst != OK {
		return
	}
	ws, wok := oracleStruct(data)
	if hs := got.headerStruct(); (hs != nil) != wok || wok && !proto.Equal(hs, ws) {
		t.Fatalf("parseHeader(%q) header %v, protojson %v (ok %v)", data, hs, ws, wok)
	}
}

var headerCases = []string{
	`{"alg":"RS256"}`, `{"alg":"RS256","kid":"k"}`, `{"alg":"RS256","kid":null}`, `{"alg":null}`, `{"alg":1}`,
	`{"alg":"none"}`, `{"typ":"JWT"}`, `{"alg":"ES256","kid":1}`, `{"alg":"ES256","kid":["a"]}`, `{"alg":"ES256","kid":""}`,
	`{"ALG":"RS256"}`, `{"Alg":"RS256","kid":"k"}`, `{"alg":"x","ALG":"RS256"}`, `{"alg":"RS256","KID":1}`,
	`{"alg":"RS256","\u212aid":1}`, `{"alg":"RS256","alg":"x"}`, `{"alg":"RS256","kid":"a","kid":"b"}`,
	`{"alg":"RS256","x":"` + "\xff" + `"}`, `{"alg":"RS256","kid":"` + "\xff" + `"}`, `{"alg":"RS256","kid":"\ud800"}`,
	`{"alg":"RS256","x":1e400}`, `{"alg":"R\u0053256"}`, `{"alg":"RS256"} `, `{"alg":"RS256"}x`, ` {"alg":"RS256"}`,
	`[]`, ``, `{`, `nope`, `{"alg":"RS256","x":` + nested(300, "1")[5:],
}

func TestParseHeaderParity(t *testing.T) {
	for _, c := range append(append([]string{}, headerCases...), structCases...) {
		checkHeaderParity(t, c)
	}
}

// FuzzParseHeader checks parseHeader against the encoding/json path on arbitrary headers.
func FuzzParseHeader(f *testing.F) {
	for _, c := range headerCases {
		f.Add(c)
	}
	for _, c := range structCases {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, data string) {
		checkHeaderParity(t, data)
	})
}
