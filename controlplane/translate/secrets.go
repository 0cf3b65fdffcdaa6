package translate

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/config/corev1"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/translate/cluster"
	"github.com/strait-mesh/strait/internal/vocab"
)

// Gateway credentials over SDS.
//
// A Gateway server's tls.credentialName names a Kubernetes Secret; the listener refers to it by
// SDS name, as Istio's gateways do (cluster.CredentialSecret):
//
//	kubernetes://NAME         tls_certificate: NAME's certificate chain and key
//	                          (cert and key, else tls.crt and tls.key)
//	kubernetes://NAME-cacert  validation_context: trusted_ca from the Secret NAME-cacert if it
//	                          exists, else from NAME (cacert, else ca.crt)
//
// A router gets, beside its listeners, the SDS Secrets its listeners and clusters name, built from
// the Secrets in the snapshot. As in Istio, a gateway reads Secrets of its own namespace only: a
// name of the form kubernetes://NAMESPACE/NAME for another namespace, a Secret that does not
// exist, or one without the keys needed is reported (Options.Report) and not served; the TLS
// handshakes that need it then fail, as Envoy's do while it waits for the secret. Sidecars get no
// Secrets: their own certificate and roots ("default", "ROOTCA") come from their agent.
//
// The Secrets are carried over between snapshots (memo.go) while their source Secret is
// unchanged, so that a change to one Secret sends that Secret alone.

// credentialPrefix is the scheme of SDS names served from Secrets in the snapshot
// ("kubernetes://"), and caSuffix marks the SDS name of a credential's CA bundle ("-cacert",
// Istio's SdsCaSuffix). The cluster package owns both names.
var (
	credentialPrefix = cluster.CredentialSecret("")
	caSuffix         = strings.TrimPrefix(cluster.CredentialCASecret("x"), cluster.CredentialSecret("x"))
)

// secretUse says what a listener or cluster expects an SDS secret to be.
type secretUse uint8

const (
	useCertificate secretUse = 1 << iota // tls_certificate_sds_secret_configs
	useCA                                // validation_context_sds_secret_config
)

// secretRefs collects the SDS names a router's TLS contexts refer to, and how each is used.
type secretRefs map[string]secretUse

// addCommon records the SDS secrets of a CommonTlsContext.
func (r secretRefs) addCommon(c *tlsv3.CommonTlsContext) {
	for _, s := range c.GetTlsCertificateSdsSecretConfigs() {
		r.add(s.GetName(), useCertificate)
	}
	r.add(c.GetValidationContextSdsSecretConfig().GetName(), useCA)
	r.add(c.GetCombinedValidationContext().GetValidationContextSdsSecretConfig().GetName(), useCA)
}

func (r secretRefs) add(name string, use secretUse) {
	if name == "" || name == vocab.SecretDefault || name == vocab.SecretRootCA {
		return // none, or the agent's own
	}
	r[name] |= use
}

// addSocket records the SDS secrets of a TLS transport socket (downstream or upstream). Sockets
// whose config names no credential ("://") are not decoded.
func (r secretRefs) addSocket(ts *corev3.TransportSocket) {
	cfg := ts.GetTypedConfig()
	if cfg == nil || !bytes.Contains(cfg.GetValue(), []byte("://")) {
		return
	}
	switch {
	case cfg.MessageIs((*tlsv3.DownstreamTlsContext)(nil)):
		var ctx tlsv3.DownstreamTlsContext
		if cfg.UnmarshalTo(&ctx) == nil {
			r.addCommon(ctx.GetCommonTlsContext())
		}
	case cfg.MessageIs((*tlsv3.UpstreamTlsContext)(nil)):
		var ctx tlsv3.UpstreamTlsContext
		if cfg.UnmarshalTo(&ctx) == nil {
			r.addCommon(ctx.GetCommonTlsContext())
		}
	}
}

// routerSecrets returns the SDS Secrets that listeners and clusters name, built from the Secrets
// of the snapshot in the router's namespace, sorted by name, and the problems with the names it
// could not serve (nil when none).
func (g *generator) routerSecrets(snap *mesh.Snapshot, p *Proxy, gateways []*config.Object, listeners []*listenerv3.Listener, clusters []types.Resource) ([]types.Resource, error) {
	refs := secretRefs{}
	for _, l := range listeners {
		for _, fc := range l.GetFilterChains() {
			refs.addSocket(fc.GetTransportSocket())
		}
		refs.addSocket(l.GetDefaultFilterChain().GetTransportSocket())
	}
	for _, r := range clusters {
		c, ok := r.(*clusterv3.Cluster)
		if !ok {
			continue
		}
		refs.addSocket(c.GetTransportSocket())
		for _, m := range c.GetTransportSocketMatches() {
			refs.addSocket(m.GetTransportSocket())
		}
	}
	if len(refs) == 0 {
		return nil, nil
	}
	names := make([]string, 0, len(refs))
	for n := range refs {
		names = append(names, n)
	}
	sort.Strings(names)
	origins := credentialOrigins(gateways)
	var out []types.Resource
	var errs []error
	for _, name := range names {
		s, err := g.credential(snap, p.Namespace, name, refs[name])
		if err != nil {
			where := origins[name]
			if where == "" {
				where = fmt.Sprintf("SDS secret %q", name)
			}
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			continue
		}
		out = append(out, s)
	}
	return out, errors.Join(errs...)
}

// credentialOrigins maps the SDS names of the gateways' credentials to the field that names
// them, for messages: "Gateway istio-system/edge: servers[0].tls.credentialName".
func credentialOrigins(gateways []*config.Object) map[string]string {
	out := map[string]string{}
	add := func(name, where string) {
		if _, ok := out[name]; !ok {
			out[name] = where
		}
	}
	for _, gw := range gateways {
		for i, s := range gw.Spec.(*networking.Gateway).GetServers() {
			t := s.GetTls()
			if t == nil {
				continue
			}
			where := fmt.Sprintf("Gateway %s/%s: servers[%d].tls", gw.Namespace, gw.Name, i)
			mutual := t.GetMode() == networking.ServerTLSSettings_MUTUAL || t.GetMode() == networking.ServerTLSSettings_OPTIONAL_MUTUAL
			names := t.GetCredentialNames()
			field := func(j int) string { return fmt.Sprintf("%s.credentialNames[%d]", where, j) }
			if n := t.GetCredentialName(); n != "" {
				names = append([]string{n}, names...)
				field = func(j int) string {
					if j == 0 {
						return where + ".credentialName"
					}
					return fmt.Sprintf("%s.credentialNames[%d]", where, j-1)
				}
			}
			for j, n := range names {
				add(cluster.CredentialSecret(n), field(j))
				if mutual && j == 0 { // the CA of the first credential, as listener.DownstreamTLS names it
					add(cluster.CredentialCASecret(n), fmt.Sprintf("%s (its CA certificates, for %s)", field(j), t.GetMode()))
				}
			}
			if n := t.GetCaCertCredentialName(); n != "" {
				add(cluster.CredentialSecret(n), where+".caCertCredentialName")
			}
		}
	}
	return out
}

// credentialKey identifies one served credential: its SDS name, the router's namespace and the
// use the listeners make of it.
type credentialKey struct {
	name, namespace string
	use             secretUse
}

// credentialBuild is a memoized credential: the Secret, or why it cannot be served.
type credentialBuild struct {
	secret *tlsv3.Secret
	err    error
}

// credential returns the SDS Secret for name, used as use by a router in namespace ns. It is the
// same object as for the previous snapshot while its source Secrets are unchanged.
func (g *generator) credential(snap *mesh.Snapshot, ns, name string, use secretUse) (*tlsv3.Secret, error) {
	if use == useCertificate|useCA {
		return nil, fmt.Errorf("SDS secret %q is named both as a certificate and as CA certificates; name a separate Secret for the CA", name)
	}
	ref, ok := strings.CutPrefix(name, credentialPrefix)
	if !ok {
		return nil, fmt.Errorf("SDS secret %q: only %sNAME credentials, from Secrets in the gateway's namespace, are served", name, credentialPrefix)
	}
	secretNS, secretName := ns, ref
	if before, after, found := strings.Cut(ref, "/"); found {
		secretNS, secretName = before, after
	}
	if secretNS != ns {
		return nil, fmt.Errorf("Secret %s/%s is in another namespace than the gateway (%s): a gateway reads Secrets of its own namespace only", secretNS, secretName, ns)
	}
	if secretName == "" || strings.Contains(secretName, "/") {
		return nil, fmt.Errorf("SDS secret %q: malformed credential name", name)
	}
	// The Secrets the credential is built from: NAME, or for a CA bundle named NAME-cacert the
	// Secret NAME-cacert if it exists, else NAME.
	candidates := []string{secretName}
	if use == useCA {
		if base, found := strings.CutSuffix(secretName, caSuffix); found && base != "" {
			candidates = append(candidates, base)
		}
	}
	var src *config.Object
	for _, c := range candidates {
		if src = findSecret(snap, ns, c); src != nil {
			break
		}
	}
	if src == nil {
		return nil, fmt.Errorf("Secret %s/%s not found", ns, strings.Join(candidates, " or "+ns+"/"))
	}
	key := credentialKey{name: name, namespace: ns, use: use}
	b := g.c.credentials.Get(snap.Version, key, snap.ObjectHash(src), func() *credentialBuild { return buildCredential(name, src, use) })
	return b.secret, b.err
}

// findSecret returns the Secret ns/name of the snapshot, or nil.
func findSecret(snap *mesh.Snapshot, ns, name string) *config.Object {
	idx := secretIndexSlot.Get(snap.Cache(), struct{}{}, func() map[[2]string]*config.Object {
		m := make(map[[2]string]*config.Object, len(snap.Configs[config.Secret]))
		for _, o := range snap.Configs[config.Secret] {
			m[[2]string{o.Namespace, o.Name}] = o
		}
		return m
	})
	return idx[[2]string{ns, name}]
}

// buildCredential builds the SDS Secret name from the Secret src. Errors name src and its keys,
// never its data.
func buildCredential(name string, src *config.Object, use secretUse) *credentialBuild {
	s, ok := src.Spec.(*corev1.Secret)
	if !ok {
		return &credentialBuild{err: fmt.Errorf("Secret %s/%s: spec is %T", src.Namespace, src.Name, src.Spec)}
	}
	inline := func(b []byte) *corev3.DataSource {
		return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
	}
	if use == useCA {
		ca, err := config.SecretCABundle(s)
		if err == nil {
			err = config.ValidCABundle(ca)
		}
		if err != nil {
			return &credentialBuild{err: fmt.Errorf("Secret %s/%s: %w", src.Namespace, src.Name, err)}
		}
		return &credentialBuild{secret: &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_ValidationContext{
			ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: inline(ca)}}}}
	}
	chain, key, err := config.SecretKeyPair(s)
	if err == nil {
		err = config.ValidKeyPair(chain, key)
	}
	if err != nil {
		return &credentialBuild{err: fmt.Errorf("Secret %s/%s: %w", src.Namespace, src.Name, err)}
	}
	return &credentialBuild{secret: &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_TlsCertificate{
		TlsCertificate: &tlsv3.TlsCertificate{CertificateChain: inline(chain), PrivateKey: inline(key)}}}}
}
