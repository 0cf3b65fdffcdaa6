package tlsx

import (
	"crypto/tls"
	"fmt"
	"strings"

	"github.com/strait-mesh/strait/proxy/xdsfield"
	tlsv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/transport_sockets/tls/v3"
)

// cipherSuites maps BoringSSL/Envoy cipher names to crypto/tls IDs (TLS 1.2 suites; TLS 1.3 suites
// are not configurable in Envoy either).
var cipherSuites = map[string]uint16{
	"ECDHE-ECDSA-AES128-GCM-SHA256": tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	"ECDHE-RSA-AES128-GCM-SHA256":   tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	"ECDHE-ECDSA-AES256-GCM-SHA384": tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	"ECDHE-RSA-AES256-GCM-SHA384":   tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	"ECDHE-ECDSA-CHACHA20-POLY1305": tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	"ECDHE-RSA-CHACHA20-POLY1305":   tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	"ECDHE-ECDSA-AES128-SHA":        tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
	"ECDHE-RSA-AES128-SHA":          tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
	"ECDHE-ECDSA-AES256-SHA":        tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
	"ECDHE-RSA-AES256-SHA":          tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
	"AES128-GCM-SHA256":             tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
	"AES256-GCM-SHA384":             tls.TLS_RSA_WITH_AES_256_GCM_SHA384,
	"AES128-SHA":                    tls.TLS_RSA_WITH_AES_128_CBC_SHA,
	"AES256-SHA":                    tls.TLS_RSA_WITH_AES_256_CBC_SHA,
}

var curves = map[string]tls.CurveID{
	"X25519":         tls.X25519,
	"P-256":          tls.CurveP256,
	"P-384":          tls.CurveP384,
	"P-521":          tls.CurveP521,
	"X25519MLKEM768": tls.X25519MLKEM768,
}

func tlsVersion(v tlsv3.TlsParameters_TlsProtocol, auto uint16) uint16 {
	switch v {
	case tlsv3.TlsParameters_TLSv1_0:
		return tls.VersionTLS10
	case tlsv3.TlsParameters_TLSv1_1:
		return tls.VersionTLS11
	case tlsv3.TlsParameters_TLSv1_2:
		return tls.VersionTLS12
	case tlsv3.TlsParameters_TLSv1_3:
		return tls.VersionTLS13
	}
	return auto
}

// applyParams sets versions, cipher suites and curves. The minimum version is never below TLS 1.2:
// an older minimum in the config is raised (Strait does not speak TLS 1.0/1.1), a maximum below
// 1.2 is an error.
func applyParams(cfg *tls.Config, p *tlsv3.TlsParameters, path string) error {
	cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS13
	if p == nil {
		return nil
	}
	if err := xdsfield.Check(p, path, "tls_minimum_protocol_version", "tls_maximum_protocol_version", "cipher_suites", "ecdh_curves"); err != nil {
		return err
	}
	cfg.MinVersion = max(tlsVersion(p.GetTlsMinimumProtocolVersion(), tls.VersionTLS12), tls.VersionTLS12)
	cfg.MaxVersion = tlsVersion(p.GetTlsMaximumProtocolVersion(), tls.VersionTLS13)
	if cfg.MaxVersion < tls.VersionTLS12 {
		return fmt.Errorf("%s.tls_maximum_protocol_version: below TLS 1.2 is not supported", path)
	}
	if cfg.MaxVersion < cfg.MinVersion {
		return fmt.Errorf("%s: maximum protocol version is below the minimum", path)
	}
	for i, entry := range p.GetCipherSuites() {
		// BoringSSL equal-preference groups: "[A|B]".
		for _, name := range strings.Split(strings.Trim(entry, "[]"), "|") {
			id, ok := cipherSuites[name]
			if !ok {
				return fmt.Errorf("%s.cipher_suites[%d]: cipher %q is not supported", path, i, name)
			}
			cfg.CipherSuites = append(cfg.CipherSuites, id)
		}
	}
	for i, name := range p.GetEcdhCurves() {
		id, ok := curves[name]
		if !ok {
			return fmt.Errorf("%s.ecdh_curves[%d]: curve %q is not supported", path, i, name)
		}
		cfg.CurvePreferences = append(cfg.CurvePreferences, id)
	}
	return nil
}
