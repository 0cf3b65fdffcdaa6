package l7

import (
	"net/netip"
	"strings"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strait-mesh/strait/proxy/authz"
	"github.com/strait-mesh/strait/proxy/stats"
	rbachttpv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/http/rbac/v3"
)

// typeRBAC is the type URL of the HTTP RBAC filter (AuthorizationPolicy).
const typeRBAC = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"

// rbacFilter enforces envoy.filters.http.rbac with Envoy's semantics: the enforced engine's
// denial is a local 403 "RBAC: access denied" with the matched policy in the response code
// details. The shadow engine never denies: it counts, and writes its decision to the dynamic
// metadata namespace envoy.filters.http.rbac, as <shadow_rules_stat_prefix>shadow_engine_result
// ("allowed" or "denied") and, when a policy matched, the policy's name as
// <shadow_rules_stat_prefix>shadow_effective_policy_id. The counters are
// http.<prefix>.rbac.<rules_stat_prefix>(allowed|denied) and
// http.<prefix>.rbac.<shadow_rules_stat_prefix>shadow_(allowed|denied). Decisions are made on
// the request as normalized by the connection manager, before routing's rewrites, so
// authorization and routing see the same path.
func (h *Handler) rbacFilter(field string, cfg *rbachttpv3.RBAC, disabled bool) (Filter, error) {
	f, err := authz.CompileHTTPFilter(cfg, h.statPrefix, field+".typed_config")
	if err != nil {
		return nil, err
	}
	counter := func(name string) *stats.Counter { // name is the full http.<prefix>.rbac... name
		if name == "" {
			return nil
		}
		return h.httpCounter(strings.TrimPrefix(name, "http."+h.statPrefix+"."))
	}
	allowed, denied := counter(f.Stats.Allowed), counter(f.Stats.Denied)
	var shadowAllowed, shadowDenied *stats.Counter
	if f.Shadow != nil {
		shadowAllowed, shadowDenied = counter(f.Stats.ShadowAllowed), counter(f.Stats.ShadowDenied)
	}
	return func(next StreamHandler) StreamHandler {
		return func(s *Stream) {
			if disabled {
				next(s)
				return
			}
			req := rbacRequest{s: s}
			res := f.Check(&req)
			if res.HasShadow {
				if res.Shadow.Allowed {
					shadowAllowed.Inc()
				} else {
					shadowDenied.Inc()
				}
				// Later filters read the shadow decision (Istio's CUSTOM action: ext_authz's
				// filter_enabled_metadata on <prefix>shadow_effective_policy_id).
				s.SetDynamicMetadata(authz.HTTPFilterName, f.ShadowMetadataStruct(res.Shadow))
			}
			if f.Rules == nil {
				next(s)
				return
			}
			if !res.Allowed() {
				denied.Inc()
				s.localReply(403, 0, authz.ResponseDetail(res.Enforced), authz.DeniedBody, -1)
				return
			}
			allowed.Inc()
			next(s)
		}
	}, nil
}

// rbacRequest is what the RBAC engine sees of a Stream (authz.Request).
type rbacRequest struct{ s *Stream }

func (r *rbacRequest) conn() *ConnInfo { return r.s.Info.Conn }

func (r *rbacRequest) DestinationIP() netip.Addr {
	if c := r.conn(); c != nil && c.OriginalDst.IsValid() {
		return c.OriginalDst.Addr().Unmap()
	}
	return netip.Addr{}
}

func (r *rbacRequest) DestinationPort() uint16 {
	if c := r.conn(); c != nil {
		return c.OriginalDst.Port()
	}
	return 0
}

func (r *rbacRequest) DirectRemoteIP() netip.Addr {
	if c := r.conn(); c != nil && c.Source.IsValid() {
		return c.Source.Addr().Unmap()
	}
	if ap := r.s.remoteAddr(); ap.IsValid() {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

func (r *rbacRequest) RemoteIP() netip.Addr {
	if r.s.Info.Remote.IsValid() {
		return r.s.Info.Remote.Addr().Unmap()
	}
	return r.DirectRemoteIP()
}

func (r *rbacRequest) RequestedServerName() string {
	if c := r.conn(); c != nil {
		return c.SNI
	}
	return ""
}

// Peer is the connection's TLS peer, built once per connection (ServeConn), not per request.
func (r *rbacRequest) Peer() *authz.Peer {
	if c := r.conn(); c != nil {
		return c.authzPeer
	}
	return nil
}

// rbacPeer is what RBAC sees of a connection's TLS peer: nil without TLS, empty without a client
// certificate.
func rbacPeer(info *ConnInfo) *authz.Peer {
	if !info.TLS {
		return nil
	}
	if len(info.PeerCertificates) == 0 {
		return authz.PeerFromCertificate(nil)
	}
	return authz.PeerFromCertificate(info.PeerCertificates[0])
}

// Metadata is the request's dynamic metadata (e.g. envoy.filters.http.jwt_authn's payload).
func (r *rbacRequest) Metadata(ns string) *structpb.Struct { return r.s.metadata[ns] }

func (r *rbacRequest) FilterState(string) (string, bool) { return "", false }

func (r *rbacRequest) Method() string { return r.s.Method() }

func (r *rbacRequest) Path() string { return r.s.Path() }

func (r *rbacRequest) Host() string { return r.s.Authority() }

func (r *rbacRequest) Scheme() string {
	if c := r.conn(); c != nil && c.TLS {
		return "https"
	}
	return "http"
}

func (r *rbacRequest) Header(name string) []string { return r.s.HeaderValues(name) }
