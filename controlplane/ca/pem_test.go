package ca

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseCSR(t *testing.T) {
	good := makeCSR(t, testP256(), []string{"spiffe://cluster.local/ns/a/sa/b"})
	block, _ := pem.Decode([]byte(good))
	tampered := append([]byte(nil), block.Bytes...)
	tampered[len(tampered)-5] ^= 0xff // inside the signature
	withHeader := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: block.Bytes}))
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"good", good, true},
		{"surrounding whitespace", "\n\n" + good + "\n \t\n", true},
		{"legacy type", strings.ReplaceAll(good, "CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"), true},
		{"empty", "", false},
		{"not PEM", "hello", false},
		{"two CSRs", good + good, false},
		{"leading text", "subject=CN\n" + good, false},
		{"trailing text", good + "junk", false},
		{"broken block before", "-----BEGIN X-----\nnope\n" + good, false},
		{"certificate type", strings.ReplaceAll(good, "CERTIFICATE REQUEST", "CERTIFICATE"), false},
		{"headers", withHeader, false},
		{"bad DER", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{0x30, 0x03, 1, 2, 3}})), false},
		{"bad signature", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: tampered})), false},
		{"too large", good + strings.Repeat(" ", MaxCSRSize), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseCSR([]byte(tc.in))
			if tc.ok != (err == nil) {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrMalformed) {
				t.Fatalf("err %v does not wrap ErrMalformed", err)
			}
		})
	}
}

func TestParsePEMBundle(t *testing.T) {
	now := time.Now()
	c1 := issue(t, caTemplate("one", now), nil, testP256().Public(), testP256())
	c2 := issue(t, caTemplate("two", now), nil, testP256b().Public(), testP256b())
	two := string(encodeCert(c1)) + "Subject: two\n" + string(encodeCert(c2))
	keyPEM, _ := encodeKey(testP256())
	tests := []struct {
		name  string
		in    string
		count int // 0: error
	}{
		{"one", string(encodeCert(c1)), 1},
		{"two with text between", two, 2},
		{"openssl text before", "Bag Attributes\n" + string(encodeCert(c1)), 1},
		{"empty", "", 0},
		{"text only", "no certificates here", 0},
		{"key block", string(encodeCert(c1)) + string(keyPEM), 0},
		{"broken second block", string(encodeCert(c1)) + "-----BEGIN CERTIFICATE-----\n!!!\n", 0},
		{"bad DER", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}})), 0},
		{"headers", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Headers: map[string]string{"a": "b"}, Bytes: c1.Raw})), 0},
		{"too many", strings.Repeat(string(encodeCert(c1)), MaxBundleCertificates+1), 0},
		{"too large", strings.Repeat(" ", MaxPEMBundleSize+1), 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			certs, err := ParsePEMBundle([]byte(tc.in))
			if tc.count == 0 {
				if err == nil || !errors.Is(err, ErrMalformed) {
					t.Fatalf("err = %v, want an ErrMalformed", err)
				}
				return
			}
			if err != nil || len(certs) != tc.count {
				t.Fatalf("got %d certs, err %v; want %d", len(certs), err, tc.count)
			}
		})
	}
}

func TestParsePrivateKey(t *testing.T) {
	ec := testP256().(*ecdsa.PrivateKey)
	rk := testRSA2048().(*rsa.PrivateKey)
	pkcs8, _ := encodeKey(ec)
	sec1DER, _ := x509.MarshalECPrivateKey(ec)
	sec1 := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1DER})
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)})
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	edDER, _ := x509.MarshalPKCS8PrivateKey(edKey)
	ed := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: edDER})
	params := "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"pkcs8", string(pkcs8), true},
		{"sec1", string(sec1), true},
		{"sec1 with EC PARAMETERS", params + string(sec1), true},
		{"pkcs1", string(pkcs1), true},
		{"ed25519", string(ed), false},
		{"two keys", string(pkcs8) + string(sec1), false},
		{"encrypted", string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: []byte{1}})), false},
		{"certificate", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", false},
		{"empty", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parsePrivateKey([]byte(tc.in))
			if tc.ok != (err == nil) {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
