package listener

import (
	"crypto/x509"
	"net/netip"

	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strait-mesh/strait/proxy/authz"
	"github.com/strait-mesh/strait/proxy/stats"
)

// typeNetworkRBAC is the type URL of the network RBAC filter (AuthorizationPolicy on TCP).
const typeNetworkRBAC = "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC"

// connRBAC is a compiled envoy.filters.network.rbac with its counters.
type connRBAC struct {
	f                           *authz.Filter
	allowed, denied             *stats.Counter
	shadowAllowed, shadowDenied *stats.Counter
}

func compileNetworkRBAC(a *anypb.Any, env Env, path string) (*connRBAC, error) {
	f, err := compileTyped(a, path, authz.CompileNetworkFilter)
	if err != nil {
		return nil, err
	}
	s := envStats(env)
	counter := func(name string) *stats.Counter {
		if name == "" {
			return nil
		}
		return untaggedCounter(s, name)
	}
	r := &connRBAC{f: f, allowed: counter(f.Stats.Allowed), denied: counter(f.Stats.Denied)}
	if f.Shadow != nil {
		r.shadowAllowed, r.shadowDenied = counter(f.Stats.ShadowAllowed), counter(f.Stats.ShadowDenied)
	}
	return r, nil
}

// onConnection evaluates the connection. Envoy checks on the connection's first byte
// (ONE_TIME_ON_FIRST_BYTE); strait-proxy checks as soon as the connection's facts are known
// (after TLS), which denies a server-first protocol before its greeting reaches the client.
// With shadow rules, the shadow decision is written to the connection's dynamic metadata in
// the envoy.filters.network.rbac namespace, as Envoy does: <shadow_rules_stat_prefix>
// shadow_engine_result, and <shadow_rules_stat_prefix>shadow_effective_policy_id when a shadow
// policy matched (Istio's CUSTOM action enables the ext_authz filter from it).
func (r *connRBAC) onConnection(cs *connState) bool {
	res := r.f.CheckConnection(cs.rbac)
	if res.HasShadow {
		if res.Shadow.Allowed {
			r.shadowAllowed.Inc()
		} else {
			r.shadowDenied.Inc()
		}
		cs.md.set(authz.NetworkFilterName, r.f.ShadowMetadataStruct(res.Shadow))
	}
	if r.f.Rules == nil {
		return true
	}
	if !res.Allowed() {
		r.denied.Inc()
		return false
	}
	r.allowed.Inc()
	return true
}

// rbacConn is what the RBAC engine sees of a connection (authz.Connection).
type rbacConn struct {
	info *ConnInfo
	peer *authz.Peer
	md   *connMetadata
}

// newRBACConn builds the connection's view once for all of its chain's RBAC filters; md is the
// connection's dynamic metadata, which metadata principals read.
func newRBACConn(info *ConnInfo, md *connMetadata) rbacConn {
	c := rbacConn{info: info, md: md}
	if info.TLS {
		var leaf *x509.Certificate
		if len(info.PeerCertificates) > 0 {
			leaf = info.PeerCertificates[0]
		}
		c.peer = authz.PeerFromCertificate(leaf)
	}
	return c
}

func (c rbacConn) DestinationIP() netip.Addr   { return c.info.OriginalDst.Addr().Unmap() }
func (c rbacConn) DestinationPort() uint16     { return c.info.OriginalDst.Port() }
func (c rbacConn) DirectRemoteIP() netip.Addr  { return c.info.Source.Addr().Unmap() }
func (c rbacConn) RemoteIP() netip.Addr        { return c.info.Source.Addr().Unmap() }
func (c rbacConn) RequestedServerName() string { return c.info.ServerName }

func (c rbacConn) Peer() *authz.Peer { return c.peer }

func (c rbacConn) Metadata(ns string) *structpb.Struct { return c.md.get(ns) }
func (c rbacConn) FilterState(string) (string, bool)   { return "", false }
