package cluster

import (
	"fmt"
	"sort"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	proxyprotocolv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/proxy_protocol/v3"
	rawbufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/registry"
	"github.com/strait-mesh/strait/internal/vocab"
)

// istioALPN is shared by the clusters that offer it; protos built from it are never modified.
var istioALPN = vocab.IstioALPN()

// SDSConfig is the config source for SDS secrets: the ADS stream.
func SDSConfig(name string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}}
}

// CredentialSecret names the SDS secret of a Kubernetes-style credentialName: Istio's agents serve
// it as "kubernetes://NAME".
func CredentialSecret(name string) string {
	if strings.Contains(name, "://") {
		return name
	}
	return "kubernetes://" + name
}

// CredentialCASecret names the CA bundle of a credentialName ("kubernetes://NAME-cacert").
func CredentialCASecret(name string) string { return CredentialSecret(name) + "-cacert" }

// SNI returns Istio's SNI for mesh mTLS to a cluster: outbound_.PORT_.SUBSET_.HOST.
func SNI(port uint32, subset, host string) string {
	return fmt.Sprintf("outbound_.%d_.%s_.%s", port, subset, host)
}

// upstreamTLS builds the UpstreamTlsContext of a ClientTLSSettings:
//
//	DISABLE      -> no TLS (nil)
//	SIMPLE       -> TLS with server verification: caCertificates (file) or credentialName (SDS
//	                "<name>-cacert"), subjectAltNames (else the ServiceEntry's), caCrl, sni
//	                (default: the service host), insecureSkipVerify drops verification
//	MUTUAL       -> SIMPLE plus a client certificate: clientCertificate/privateKey files or
//	                credentialName (SDS "kubernetes://<name>")
//	ISTIO_MUTUAL -> the workload certificate "default" and root "ROOTCA" over SDS, Istio's ALPN, SNI
//	                outbound_.PORT_.SUBSET_.HOST and the service's subject alt names, else the SPIFFE
//	                identities of the endpoints' service accounts (trustDomain from MeshConfig)
func upstreamTLS(t *networking.ClientTLSSettings, svc *registry.Service, port uint32, subset string, eps []*registry.Endpoint, trustDomain string, r *Rule) (*tlsv3.UpstreamTlsContext, error) {
	if t == nil || t.GetMode() == networking.ClientTLSSettings_DISABLE {
		return nil, nil
	}
	ctx := &tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{}}
	common := ctx.CommonTlsContext
	sans := t.GetSubjectAltNames()
	if len(sans) == 0 {
		sans = svc.SubjectAltNames
	}
	switch t.GetMode() {
	case networking.ClientTLSSettings_ISTIO_MUTUAL:
		if len(sans) == 0 {
			sans = spiffeIDs(eps, trustDomain)
		}
		common.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{SDSConfig(vocab.SecretDefault)}
		common.ValidationContextType = &tlsv3.CommonTlsContext_CombinedValidationContext{
			CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext:         &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: sanMatchers(sans)},
				ValidationContextSdsSecretConfig: SDSConfig(vocab.SecretRootCA),
			}}
		common.AlpnProtocols = istioALPN
		ctx.Sni = SNI(port, subset, svc.Hostname)
		if t.GetSni() != "" {
			ctx.Sni = t.GetSni()
		}
		return ctx, nil
	case networking.ClientTLSSettings_SIMPLE, networking.ClientTLSSettings_MUTUAL:
	default:
		return nil, r.errf("trafficPolicy.tls.mode", "unknown mode %s", t.GetMode())
	}
	ctx.Sni = t.GetSni()
	if ctx.Sni == "" && !strings.HasPrefix(svc.Hostname, "*") {
		ctx.Sni = svc.Hostname
	}
	if t.GetMode() == networking.ClientTLSSettings_MUTUAL {
		switch {
		case t.GetCredentialName() != "":
			common.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{SDSConfig(CredentialSecret(t.GetCredentialName()))}
		case t.GetClientCertificate() != "" && t.GetPrivateKey() != "":
			common.TlsCertificates = []*tlsv3.TlsCertificate{{
				CertificateChain: fileSource(t.GetClientCertificate()),
				PrivateKey:       fileSource(t.GetPrivateKey()),
			}}
		default:
			return nil, r.errf("trafficPolicy.tls", "MUTUAL needs credentialName or clientCertificate and privateKey")
		}
	}
	if t.GetInsecureSkipVerify().GetValue() {
		return ctx, nil
	}
	vc := &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: sanMatchers(sans)}
	if crl := t.GetCaCrl(); crl != "" {
		vc.Crl = fileSource(crl)
	}
	switch {
	case t.GetCaCertificates() != "":
		vc.TrustedCa = fileSource(t.GetCaCertificates())
		common.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: vc}
	case t.GetCredentialName() != "":
		common.ValidationContextType = &tlsv3.CommonTlsContext_CombinedValidationContext{
			CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext:         vc,
				ValidationContextSdsSecretConfig: SDSConfig(CredentialCASecret(t.GetCredentialName())),
			}}
	default:
		// No CA given: verify against the system roots, as Istio does (the proxy loads them).
		vc.TrustedCa = fileSource(SystemRoots)
		common.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: vc}
	}
	return ctx, nil
}

// SystemRoots is the CA bundle used when a SIMPLE/MUTUAL ClientTLSSettings names no CA.
const SystemRoots = "/etc/ssl/certs/ca-certificates.crt"

func fileSource(path string) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: path}}
}

func sanMatchers(sans []string) []*tlsv3.SubjectAltNameMatcher {
	out := make([]*tlsv3.SubjectAltNameMatcher, 0, len(sans))
	for _, s := range sans {
		typ := tlsv3.SubjectAltNameMatcher_DNS
		if strings.Contains(s, "://") {
			typ = tlsv3.SubjectAltNameMatcher_URI
		}
		out = append(out, &tlsv3.SubjectAltNameMatcher{SanType: typ,
			Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}})
	}
	return out
}

// transportSocket wraps the TLS context (or raw buffer when tlsCtx is nil) in the PROXY protocol
// socket when proxyProtocol is set.
func transportSocket(tlsCtx *tlsv3.UpstreamTlsContext, pp *networking.TrafficPolicy_ProxyProtocol, r *Rule) (*corev3.TransportSocket, error) {
	var inner *corev3.TransportSocket
	if tlsCtx != nil {
		a, err := anypb.New(tlsCtx)
		if err != nil {
			return nil, r.errf("trafficPolicy.tls", "encoding: %v", err)
		}
		inner = &corev3.TransportSocket{Name: vocab.TransportSocketTLS, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a}}
	}
	if pp == nil {
		return inner, nil
	}
	ver := corev3.ProxyProtocolConfig_V1
	if pp.GetVersion() == networking.TrafficPolicy_ProxyProtocol_V2 {
		ver = corev3.ProxyProtocolConfig_V2
	}
	if inner == nil {
		inner = rawBuffer()
	}
	a, err := anypb.New(&proxyprotocolv3.ProxyProtocolUpstreamTransport{
		Config:          &corev3.ProxyProtocolConfig{Version: ver},
		TransportSocket: inner,
	})
	if err != nil {
		return nil, r.errf("trafficPolicy.proxyProtocol", "encoding: %v", err)
	}
	return &corev3.TransportSocket{Name: vocab.TransportSocketUpstreamProxyProtocol,
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a}}, nil
}

func rawBuffer() *corev3.TransportSocket {
	a, _ := anypb.New(&rawbufferv3.RawBuffer{})
	return &corev3.TransportSocket{Name: vocab.TransportSocketRawBuffer, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a}}
}

// spiffeIDs returns the sorted, distinct SPIFFE identities of the endpoints' service accounts.
func spiffeIDs(eps []*registry.Endpoint, trustDomain string) []string {
	if trustDomain == "" {
		trustDomain = "cluster.local"
	}
	seen := map[string]bool{}
	var out []string
	for _, ep := range eps {
		if ep.ServiceAccount == "" {
			continue
		}
		id := "spiffe://" + trustDomain + "/ns/" + ep.Namespace + "/sa/" + ep.ServiceAccount
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}
