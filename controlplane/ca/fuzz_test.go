package ca

import (
	"testing"
)

// FuzzParseCSR runs ParseCSR, the first thing the CSR service does with untrusted bytes, on
// arbitrary input. Seeds: testdata/fuzz/FuzzParseCSR (valid ECDSA and RSA CSRs, SANs, broken
// signatures, extra blocks, headers, garbage).
func FuzzParseCSR(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		csr, err := ParseCSR(data)
		if err != nil {
			return
		}
		if len(data) > MaxCSRSize {
			t.Fatalf("accepted %d bytes", len(data))
		}
		if err := csr.CheckSignature(); err != nil {
			t.Fatalf("accepted a CSR whose signature does not verify: %v", err)
		}
		_ = checkWorkloadKey(csr.PublicKey) // must not panic on any parsed key
		for _, u := range csr.URIs {
			_, _ = ParseSPIFFEID(u.String())
		}
	})
}

// FuzzParsePEMBundle runs ParsePEMBundle (cacerts files, trust bundles, CSR responses) on
// arbitrary input. Seeds: testdata/fuzz/FuzzParsePEMBundle.
func FuzzParsePEMBundle(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := ParsePEMBundle(data)
		if err != nil {
			return
		}
		if len(certs) == 0 || len(certs) > MaxBundleCertificates || len(data) > MaxPEMBundleSize {
			t.Fatalf("accepted %d certificates from %d bytes", len(certs), len(data))
		}
		again, err := ParsePEMBundle(encodeCerts(certs))
		if err != nil || len(again) != len(certs) {
			t.Fatalf("re-encoded bundle: %d certificates, %v", len(again), err)
		}
		for _, c := range certs {
			_, _ = identityFromSAN(c) // must not panic on any parsed certificate
		}
	})
}
