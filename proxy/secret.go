package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	tlsv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/transport_sockets/tls/v3"
)

// validateSecret rejects an SDS secret whose inline material does not parse, so a broken
// certificate is NACKed instead of failing every later handshake. File and environment sources
// are read by tlsx when used.
func validateSecret(s *tlsv3.Secret) error {
	switch t := s.GetType().(type) {
	case *tlsv3.Secret_TlsCertificate:
		cert, key := inlineBytes(t.TlsCertificate.GetCertificateChain()), inlineBytes(t.TlsCertificate.GetPrivateKey())
		if cert == nil || key == nil {
			return nil
		}
		if _, err := tls.X509KeyPair(cert, key); err != nil {
			return fmt.Errorf("field tls_certificate: parsing key pair: %w", err)
		}
	case *tlsv3.Secret_ValidationContext:
		if ca := inlineBytes(t.ValidationContext.GetTrustedCa()); ca != nil {
			if !x509.NewCertPool().AppendCertsFromPEM(ca) {
				return errors.New("field validation_context.trusted_ca: no PEM certificates")
			}
		}
	case *tlsv3.Secret_GenericSecret:
	case *tlsv3.Secret_SessionTicketKeys:
		return errors.New("field session_ticket_keys: unsupported")
	case nil:
		return errors.New("no secret type set")
	default:
		return fmt.Errorf("secret type %T: unsupported", t)
	}
	return nil
}

// inlineBytes returns inline DataSource content, or nil for other sources.
func inlineBytes(ds *corev3.DataSource) []byte {
	switch v := ds.GetSpecifier().(type) {
	case *corev3.DataSource_InlineBytes:
		return v.InlineBytes
	case *corev3.DataSource_InlineString:
		return []byte(v.InlineString)
	}
	return nil
}
