package config

import (
	"fmt"
	"strconv"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
)

// validateGateway checks a Gateway: servers with ports, "namespace/host" hosts, unique port names
// and TLS settings that fit the protocol.
func validateGateway(fe *fieldErrs, gw *networking.Gateway) {
	if len(gw.Servers) == 0 {
		fe.add("spec.servers", "at least one server is required")
	}
	validateLabels(fe, "spec.selector", gw.Selector)
	portNames := map[string]int{}
	serverNames := map[string]int{}
	eachItem(fe, "spec.servers", gw.Servers, "server", func(i int, p string, s *networking.Server) {
		validateServer(fe, p, s)
		if s.Port != nil && s.Port.Name != "" {
			if j, dup := portNames[s.Port.Name]; dup {
				fe.add(p+".port.name", "duplicate port name %s (also spec.servers[%d]); port names must be unique across servers", quoteShort(s.Port.Name), j)
			} else {
				portNames[s.Port.Name] = i
			}
		}
		if s.Name != "" {
			if j, dup := serverNames[s.Name]; dup {
				fe.add(p+".name", "duplicate server name %s (also spec.servers[%d])", quoteShort(s.Name), j)
			} else {
				serverNames[s.Name] = i
			}
		}
	})
}

// validateServer checks one gateway server.
func validateServer(fe *fieldErrs, p string, s *networking.Server) {
	if len(s.Hosts) == 0 {
		fe.add(p+".hosts", "at least one host is required")
	}
	for i, h := range s.Hosts {
		if msg := namespacedHostErr(h, false, false); msg != "" {
			fe.add(fmt.Sprintf("%s.hosts[%d]", p, i), "%s", msg)
		}
	}
	proto := ""
	if s.Port == nil {
		fe.add(p+".port", "port is required")
	} else {
		validatePort(fe, p+".port.number", s.Port.Number)
		if s.Port.TargetPort != 0 {
			validatePort(fe, p+".port.targetPort", s.Port.TargetPort)
		}
		validateProtocol(fe, p+".port.protocol", s.Port.Protocol, true)
		if s.Port.Name == "" {
			fe.add(p+".port.name", "port name is required")
		}
		proto = strings.ToUpper(s.Port.Protocol)
	}
	validateBind(fe, p+".bind", s.Bind)
	if s.DefaultEndpoint != "" {
		validateDefaultEndpoint(fe, p+".defaultEndpoint", s.DefaultEndpoint)
	}
	isTLS := proto == "HTTPS" || proto == "TLS"
	switch {
	case s.Tls == nil && isTLS:
		fe.add(p+".tls", "tls settings are required for protocol %s", proto)
	case s.Tls != nil && !isTLS && proto != "" && !s.Tls.HttpsRedirect:
		fe.add(p+".tls", "tls settings are allowed only for HTTPS and TLS servers (or httpsRedirect on HTTP)")
	}
	if s.Tls != nil {
		validateServerTLS(fe, p+".tls", s.Tls, isTLS)
	}
}

// validateServerTLS checks server TLS settings: certificates are required for SIMPLE, MUTUAL and
// OPTIONAL_MUTUAL, either by credentialName(s), tlsCertificates or serverCertificate+privateKey;
// ISTIO_MUTUAL takes none.
func validateServerTLS(fe *fieldErrs, p string, t *networking.ServerTLSSettings, isTLS bool) {
	if !isTLS {
		return // httpsRedirect on a plain HTTP server: the rest is unused
	}
	creds := t.CredentialName != "" || len(t.CredentialNames) > 0
	files := t.ServerCertificate != "" || t.PrivateKey != ""
	sources := 0
	for _, b := range []bool{t.CredentialName != "", len(t.CredentialNames) > 0, len(t.TlsCertificates) > 0, files} {
		if b {
			sources++
		}
	}
	switch t.Mode {
	case networking.ServerTLSSettings_SIMPLE, networking.ServerTLSSettings_MUTUAL, networking.ServerTLSSettings_OPTIONAL_MUTUAL:
		if sources == 0 {
			fe.add(p, "tls mode %s needs credentialName, credentialNames, tlsCertificates or serverCertificate and privateKey", t.Mode)
		}
		if sources > 1 {
			fe.add(p, "only one of credentialName, credentialNames, tlsCertificates and serverCertificate/privateKey may be set")
		}
		if files && !creds {
			if t.ServerCertificate == "" {
				fe.add(p+".serverCertificate", "serverCertificate is required with privateKey")
			}
			if t.PrivateKey == "" {
				fe.add(p+".privateKey", "privateKey is required with serverCertificate")
			}
		}
		if t.Mode != networking.ServerTLSSettings_SIMPLE && !creds && t.CaCertificates == "" && t.CaCertCredentialName == "" {
			fe.add(p+".caCertificates", "tls mode %s needs caCertificates (or credentialName holding a CA)", t.Mode)
		}
		if len(t.CredentialNames) > 2 {
			fe.add(p+".credentialNames", "at most 2 credential names (one RSA, one ECDSA) are allowed")
		}
		if len(t.TlsCertificates) > 2 {
			fe.add(p+".tlsCertificates", "at most 2 certificates (one RSA, one ECDSA) are allowed")
		}
		for i, c := range t.TlsCertificates {
			if c == nil || c.ServerCertificate == "" || c.PrivateKey == "" {
				fe.add(fmt.Sprintf("%s.tlsCertificates[%d]", p, i), "serverCertificate and privateKey are required")
			}
		}
	case networking.ServerTLSSettings_ISTIO_MUTUAL:
		if sources > 0 || t.CaCertificates != "" {
			fe.add(p, "tls mode ISTIO_MUTUAL uses Istio's certificates: no credentials or certificate files may be set")
		}
	case networking.ServerTLSSettings_PASSTHROUGH, networking.ServerTLSSettings_AUTO_PASSTHROUGH:
	}
	if t.MinProtocolVersion != networking.ServerTLSSettings_TLS_AUTO && t.MaxProtocolVersion != networking.ServerTLSSettings_TLS_AUTO &&
		t.MinProtocolVersion > t.MaxProtocolVersion {
		fe.add(p+".minProtocolVersion", "minProtocolVersion %s is above maxProtocolVersion %s", t.MinProtocolVersion, t.MaxProtocolVersion)
	}
	for i, c := range t.CipherSuites {
		if c == "" || strings.ContainsAny(c, " ,") {
			fe.add(fmt.Sprintf("%s.cipherSuites[%d]", p, i), "invalid cipher suite %s", quoteShort(c))
		}
	}
	for i, h := range t.VerifyCertificateHash {
		if !validHexHash(h) {
			fe.add(fmt.Sprintf("%s.verifyCertificateHash[%d]", p, i), "%s is not a SHA-256 hex digest", quoteShort(h))
		}
	}
}

// validHexHash reports whether s is a SHA-256 digest in hex, optionally with ':' separators.
func validHexHash(s string) bool {
	s = strings.ReplaceAll(s, ":", "")
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return false
		}
	}
	return true
}

// validateDefaultEndpoint checks "127.0.0.1:PORT", "0.0.0.0:PORT", "[::1]:PORT", "[::]:PORT" or
// "unix://path".
func validateDefaultEndpoint(fe *fieldErrs, p, ep string) {
	if strings.HasPrefix(ep, "unix://") {
		if len(ep) == len("unix://") {
			fe.add(p, "unix socket path must not be empty")
		}
		return
	}
	i := strings.LastIndexByte(ep, ':')
	if i < 0 {
		fe.add(p, "defaultEndpoint %s must be host:port or unix://path", quoteShort(ep))
		return
	}
	host, port := ep[:i], ep[i+1:]
	switch host {
	case "127.0.0.1", "0.0.0.0", "[::1]", "[::]":
	default:
		fe.add(p, "defaultEndpoint host %s must be 127.0.0.1, 0.0.0.0, [::1] or [::]", quoteShort(host))
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		fe.add(p, "defaultEndpoint port %s must be in 1-65535", quoteShort(port))
	}
}

// validateSidecar checks a Sidecar: egress listeners with "namespace/host" hosts, unique ports
// and binds, ingress listeners with ports and default endpoints.
func validateSidecar(fe *fieldErrs, sc *networking.Sidecar) {
	if sc.WorkloadSelector != nil {
		validateWorkloadSelector(fe, "spec.workloadSelector", sc.WorkloadSelector.Labels)
	}
	ingressPorts := map[uint32]int{}
	eachItem(fe, "spec.ingress", sc.Ingress, "ingress listener", func(i int, p string, in *networking.IstioIngressListener) {
		if in.Port == nil {
			fe.add(p+".port", "port is required")
		} else {
			validatePort(fe, p+".port.number", in.Port.Number)
			validateProtocol(fe, p+".port.protocol", in.Port.Protocol, false)
			validatePortName(fe, p+".port.name", in.Port.Name, false)
			if j, dup := ingressPorts[in.Port.Number]; dup {
				fe.add(p+".port.number", "duplicate ingress port %d (also spec.ingress[%d])", in.Port.Number, j)
			}
			ingressPorts[in.Port.Number] = i
		}
		validateBind(fe, p+".bind", in.Bind)
		if in.DefaultEndpoint != "" {
			validateDefaultEndpoint(fe, p+".defaultEndpoint", in.DefaultEndpoint)
		}
		if in.Tls != nil {
			validateServerTLS(fe, p+".tls", in.Tls, true)
		}
		validateConnectionPool(fe, p+".connectionPool", in.ConnectionPool)
	})
	egressKeys := map[string]int{}
	catchAll := -1
	eachItem(fe, "spec.egress", sc.Egress, "egress listener", func(i int, p string, eg *networking.IstioEgressListener) {
		if len(eg.Hosts) == 0 {
			fe.add(p+".hosts", "at least one host is required")
		}
		for j, h := range eg.Hosts {
			if msg := namespacedHostErr(h, true, true); msg != "" {
				fe.add(fmt.Sprintf("%s.hosts[%d]", p, j), "%s", msg)
			}
		}
		validateBind(fe, p+".bind", eg.Bind)
		key := eg.Bind
		if eg.Port == nil {
			if catchAll >= 0 {
				fe.add(p, "only one egress listener may omit the port (also spec.egress[%d])", catchAll)
			}
			catchAll = i
		} else {
			validatePort(fe, p+".port.number", eg.Port.Number)
			validateProtocol(fe, p+".port.protocol", eg.Port.Protocol, false)
			validatePortName(fe, p+".port.name", eg.Port.Name, false)
			key += ":" + strconv.Itoa(int(eg.Port.Number))
			if j, dup := egressKeys[key]; dup {
				fe.add(p+".port", "duplicate egress listener for bind %s and port %d (also spec.egress[%d])", quoteShort(eg.Bind), eg.Port.Number, j)
			}
			egressKeys[key] = i
		}
	})
	if catchAll >= 0 && catchAll != len(sc.Egress)-1 {
		fe.add(fmt.Sprintf("spec.egress[%d]", catchAll), "the egress listener without a port must be the last one")
	}
	validateConnectionPool(fe, "spec.inboundConnectionPool", sc.InboundConnectionPool)
	if o := sc.OutboundTrafficPolicy; o != nil && o.EgressProxy != nil {
		if o.Mode != networking.OutboundTrafficPolicy_ALLOW_ANY {
			fe.add("spec.outboundTrafficPolicy.egressProxy", "egressProxy needs mode ALLOW_ANY")
		}
		validateDestination(fe, "spec.outboundTrafficPolicy.egressProxy", o.EgressProxy)
		if o.EgressProxy.Port == nil {
			fe.add("spec.outboundTrafficPolicy.egressProxy.port", "port is required")
		}
	}
}
