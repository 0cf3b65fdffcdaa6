package agent

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	pb "istio.io/api/security/v1alpha1"
)

// TestCSREncoding: the hand encoding is istio.io/api's generated one, byte for byte, and the
// decoder reads what the generated package writes (the test may link the generated package;
// strait-proxy does not).
func TestCSREncoding(t *testing.T) {
	for _, tc := range []struct {
		csr      string
		validity int64
	}{{"", 0}, {"-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n", 86400}, {"x", -1}, {strings.Repeat("c", 5000), 1 << 40}} {
		want, err := proto.Marshal(&pb.IstioCertificateRequest{Csr: tc.csr, ValidityDuration: tc.validity})
		if err != nil {
			t.Fatal(err)
		}
		if got := encodeCSRRequest([]byte(tc.csr), tc.validity); !bytes.Equal(got, want) {
			t.Errorf("request %.20q/%d: % x, want % x", tc.csr, tc.validity, got, want)
		}
	}
	for _, chain := range [][]string{nil, {"leaf"}, {"leaf", "", "root ünï"}} {
		b, err := proto.Marshal(&pb.IstioCertificateResponse{CertChain: chain})
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeCSRResponse(b)
		if err != nil || len(got) != len(chain) {
			t.Fatalf("response %q: %q, %v", chain, got, err)
		}
		for i := range chain {
			if got[i] != chain[i] {
				t.Errorf("response %q: %q", chain, got)
			}
		}
	}
	// Unknown fields and a cert_chain of another wire type are skipped.
	b := protowire.AppendTag(nil, 7, protowire.VarintType)
	b = protowire.AppendVarint(b, 99)
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, "a")
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, 5)
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, "b")
	if got, err := decodeCSRResponse(b); err != nil || strings.Join(got, ",") != "a,b" {
		t.Errorf("mixed: %q, %v", got, err)
	}
	many := []byte{}
	for range maxCertChainEntries + 1 {
		many = protowire.AppendTag(many, 1, protowire.BytesType)
		many = protowire.AppendString(many, "c")
	}
	for name, bad := range map[string][]byte{
		"truncated tag":       {0x80},
		"truncated entry":     {0x0a, 0x05, 'a'},
		"not UTF-8":           {0x0a, 0x02, 0xff, 0xfe},
		"field 0":             {0x02, 0x00},
		"field number > max":  {0xd8, 0xc4, 0xc4, 0xd8, 0x30, 0x30},
		"unmatched end group": {0x0c},
		"too many entries":    many,
	} {
		if _, err := decodeCSRResponse(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

// FuzzCSRResponse: on any bytes the decoder does not panic and agrees with the generated
// package, but for the bound on entries that only it enforces.
func FuzzCSRResponse(f *testing.F) {
	for _, chain := range [][]string{nil, {"leaf"}, {"leaf", "inter", "root"}} {
		b, _ := proto.Marshal(&pb.IstioCertificateResponse{CertChain: chain})
		f.Add(b)
	}
	f.Add([]byte{0x0a, 0x01, 'a', 0x08, 0x05, 0x0a, 0x01, 'b'})
	f.Add([]byte{0x0b, 0x0a, 0x01, 'a', 0x0c, 0x0a, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeCSRResponse(b)
		var want pb.IstioCertificateResponse
		werr := proto.Unmarshal(b, &want)
		if err != nil && werr == nil && len(want.GetCertChain()) > maxCertChainEntries {
			return
		}
		if (err == nil) != (werr == nil) {
			t.Fatalf("% x: error %v, generated package %v", b, err, werr)
		}
		if err != nil {
			return
		}
		if len(got) != len(want.GetCertChain()) {
			t.Fatalf("% x: %q, generated package %q", b, got, want.GetCertChain())
		}
		for i, c := range want.GetCertChain() {
			if got[i] != c {
				t.Fatalf("% x: %q, generated package %q", b, got, want.GetCertChain())
			}
		}
	})
}
