package listener

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/translate/cluster"
	"github.com/strait-mesh/strait/internal/vocab"
)

// DownstreamTLS builds the TLS transport socket of a server (Gateway server or Sidecar ingress)
// from ServerTLSSettings, or nil when the mode does not terminate TLS (PASSTHROUGH,
// AUTO_PASSTHROUGH). where names the field for errors.
//
//	SIMPLE          -> certificate from credentialName(s) (SDS "kubernetes://NAME"), tlsCertificates
//	                   or serverCertificate/privateKey files
//	MUTUAL          -> SIMPLE + required client certificates verified against caCertificates,
//	                   caCertCredentialName or "NAME-cacert", subjectAltNames, verifyCertificateSpki,
//	                   verifyCertificateHash, caCrl
//	OPTIONAL_MUTUAL -> MUTUAL with the client certificate optional
//	ISTIO_MUTUAL    -> mesh certificate "default" and root "ROOTCA" over SDS, client cert required
//	minProtocolVersion/maxProtocolVersion/cipherSuites -> tls_params
func DownstreamTLS(t *networking.ServerTLSSettings, where string) (*corev3.TransportSocket, error) {
	mode := t.GetMode()
	if mode == networking.ServerTLSSettings_PASSTHROUGH || mode == networking.ServerTLSSettings_AUTO_PASSTHROUGH {
		return nil, nil
	}
	ctx := &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{AlpnProtocols: vocab.HTTPALPN()}}
	common := ctx.CommonTlsContext
	params := &tlsv3.TlsParameters{
		TlsMinimumProtocolVersion: tlsVersion(t.GetMinProtocolVersion()),
		TlsMaximumProtocolVersion: tlsVersion(t.GetMaxProtocolVersion()),
		CipherSuites:              t.GetCipherSuites(),
	}
	if params.TlsMinimumProtocolVersion != tlsv3.TlsParameters_TLS_AUTO || params.TlsMaximumProtocolVersion != tlsv3.TlsParameters_TLS_AUTO || len(params.CipherSuites) > 0 {
		common.TlsParams = params
	}
	if mode == networking.ServerTLSSettings_ISTIO_MUTUAL {
		common.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{cluster.SDSConfig(vocab.SecretDefault)}
		common.ValidationContextType = &tlsv3.CommonTlsContext_CombinedValidationContext{
			CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext:         validation(t),
				ValidationContextSdsSecretConfig: cluster.SDSConfig(vocab.SecretRootCA),
			}}
		ctx.RequireClientCertificate = wrapperspb.Bool(true)
		return wrap(ctx)
	}
	names := t.GetCredentialNames()
	if t.GetCredentialName() != "" {
		names = append([]string{t.GetCredentialName()}, names...)
	}
	for _, n := range names {
		common.TlsCertificateSdsSecretConfigs = append(common.TlsCertificateSdsSecretConfigs, cluster.SDSConfig(cluster.CredentialSecret(n)))
	}
	for _, c := range t.GetTlsCertificates() {
		common.TlsCertificates = append(common.TlsCertificates, &tlsv3.TlsCertificate{
			CertificateChain: file(c.GetServerCertificate()), PrivateKey: file(c.GetPrivateKey())})
	}
	if t.GetServerCertificate() != "" {
		common.TlsCertificates = append(common.TlsCertificates, &tlsv3.TlsCertificate{
			CertificateChain: file(t.GetServerCertificate()), PrivateKey: file(t.GetPrivateKey())})
	}
	if len(common.TlsCertificates) == 0 && len(common.TlsCertificateSdsSecretConfigs) == 0 {
		return nil, fmt.Errorf("%s: mode %s needs credentialName, credentialNames, tlsCertificates or serverCertificate", where, mode)
	}
	switch mode {
	case networking.ServerTLSSettings_SIMPLE:
		return wrap(ctx)
	case networking.ServerTLSSettings_MUTUAL, networking.ServerTLSSettings_OPTIONAL_MUTUAL:
	default:
		return nil, fmt.Errorf("%s: unsupported mode %s", where, mode)
	}
	ctx.RequireClientCertificate = wrapperspb.Bool(mode == networking.ServerTLSSettings_MUTUAL)
	vc := validation(t)
	caSecret := t.GetCaCertCredentialName()
	if caSecret == "" && len(names) > 0 {
		caSecret = cluster.CredentialCASecret(names[0])
	} else if caSecret != "" {
		caSecret = cluster.CredentialSecret(caSecret)
	}
	switch {
	case t.GetCaCertificates() != "":
		vc.TrustedCa = file(t.GetCaCertificates())
		common.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: vc}
	case caSecret != "":
		common.ValidationContextType = &tlsv3.CommonTlsContext_CombinedValidationContext{
			CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext: vc, ValidationContextSdsSecretConfig: cluster.SDSConfig(caSecret)}}
	default:
		return nil, fmt.Errorf("%s: mode %s needs caCertificates, caCertCredentialName or credentialName", where, mode)
	}
	return wrap(ctx)
}

func validation(t *networking.ServerTLSSettings) *tlsv3.CertificateValidationContext {
	vc := &tlsv3.CertificateValidationContext{
		VerifyCertificateSpki: t.GetVerifyCertificateSpki(),
		VerifyCertificateHash: t.GetVerifyCertificateHash(),
	}
	for _, s := range t.GetSubjectAltNames() {
		vc.MatchTypedSubjectAltNames = append(vc.MatchTypedSubjectAltNames, &tlsv3.SubjectAltNameMatcher{
			SanType: tlsv3.SubjectAltNameMatcher_DNS, Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}})
	}
	if t.GetCaCrl() != "" {
		vc.Crl = file(t.GetCaCrl())
	}
	if t.GetInsecureSkipVerify().GetValue() {
		vc.TrustChainVerification = tlsv3.CertificateValidationContext_ACCEPT_UNTRUSTED
	}
	return vc
}

func tlsVersion(v networking.ServerTLSSettings_TLSProtocol) tlsv3.TlsParameters_TlsProtocol {
	switch v {
	case networking.ServerTLSSettings_TLSV1_0:
		return tlsv3.TlsParameters_TLSv1_0
	case networking.ServerTLSSettings_TLSV1_1:
		return tlsv3.TlsParameters_TLSv1_1
	case networking.ServerTLSSettings_TLSV1_2:
		return tlsv3.TlsParameters_TLSv1_2
	case networking.ServerTLSSettings_TLSV1_3:
		return tlsv3.TlsParameters_TLSv1_3
	}
	return tlsv3.TlsParameters_TLS_AUTO
}

func file(path string) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: path}}
}

func wrap(ctx *tlsv3.DownstreamTlsContext) (*corev3.TransportSocket, error) {
	return &corev3.TransportSocket{Name: "envoy.transport_sockets.tls",
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(ctx)}}, nil
}
