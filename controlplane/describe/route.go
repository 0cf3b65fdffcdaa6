package describe

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/registry"
)

// routing returns the VirtualServices that route svc (oldest first) and the Gateways those bound
// to gateways expose it on.
func routing(snap *mesh.Snapshot, svc *registry.Service, _ *DestinationRuleInfo) ([]VirtualServiceInfo, []GatewayInfo) {
	vss := []VirtualServiceInfo{}
	gws := []GatewayInfo{}
	gwSeen := map[string]bool{}
	meshOwner := map[string]string{} // VirtualService host on the mesh gateway -> oldest VS "ns/name"
	for _, o := range snap.Configs[config.VirtualService] {
		vs, ok := o.Spec.(*networking.VirtualService)
		if !ok {
			continue
		}
		hosts := mesh.VirtualServiceHosts(o)
		gateways := []string{}
		if len(hosts) > 0 {
			gateways = mesh.VirtualServiceGateways(vs, o.Namespace)
		}
		// A host matters on the mesh gateway only (traffic addressed to the service); on a
		// Gateway, hosts are what clients ask the gateway for, and only the destinations count.
		matchedHost := ""
		for _, h := range hosts {
			if !slices.Contains(gateways, mesh.GatewayMesh) {
				break
			}
			if mesh.HostMatches(h, svc.Hostname) {
				matchedHost = h
				break
			}
		}
		routes := describeRoutes(vs, o.Namespace, svc.Hostname)
		if matchedHost == "" {
			// Only the routes that send traffic to the service.
			kept := routes[:0]
			for _, rt := range routes {
				for _, d := range rt.Destinations {
					if d.ThisService {
						kept = append(kept, rt)
						break
					}
				}
			}
			routes = kept
			if len(routes) == 0 {
				continue
			}
		}
		info := VirtualServiceInfo{Name: o.Name, Namespace: o.Namespace, Origin: o.Origin, Hosts: hosts, Gateways: gateways,
			Reason: "destination", Routes: routes}
		if info.Hosts == nil {
			info.Hosts = []string{}
		}
		if matchedHost != "" {
			info.Reason = "host"
			for _, g := range gateways {
				if g != mesh.GatewayMesh {
					continue
				}
				key := matchedHost
				if prev, ok := meshOwner[key]; ok {
					info.Shadowed = prev
				} else {
					meshOwner[key] = o.Namespace + "/" + o.Name
				}
			}
		}
		vss = append(vss, info)
		for _, g := range gateways {
			if g == mesh.GatewayMesh || gwSeen[g+"|"+info.Namespace+"/"+info.Name] {
				continue
			}
			gwSeen[g+"|"+info.Namespace+"/"+info.Name] = true
			gws = append(gws, gatewayInfo(snap, g, info.Namespace+"/"+info.Name))
		}
	}
	return vss, gws
}

// gatewayInfo describes the Gateway ref ("ns/name") that the VirtualService vs binds to.
func gatewayInfo(snap *mesh.Snapshot, ref, vs string) GatewayInfo {
	ns, name, _ := strings.Cut(ref, "/")
	info := GatewayInfo{Name: name, Namespace: ns, VirtualService: vs, Servers: []string{}}
	for _, o := range snap.Configs[config.Gateway] {
		if o.Namespace != ns || o.Name != name {
			continue
		}
		gw, ok := o.Spec.(*networking.Gateway)
		if !ok {
			continue
		}
		info.Origin, info.Selector = o.Origin, gw.GetSelector()
		for _, s := range gw.GetServers() {
			p := s.GetPort()
			line := fmt.Sprintf("%s %d/%s hosts %s", p.GetName(), p.GetNumber(), p.GetProtocol(), strings.Join(s.GetHosts(), ","))
			if m := s.GetTls().GetMode(); s.GetTls() != nil {
				line += " tls " + m.String()
				if c := s.GetTls().GetCredentialName(); c != "" {
					line += " credentialName " + c
				}
			}
			info.Servers = append(info.Servers, strings.TrimSpace(line))
		}
		return info
	}
	info.Missing = true
	return info
}

// describeRoutes describes every HTTP, TLS and TCP route of vs (in namespace ns), marking the
// destinations that are host.
func describeRoutes(vs *networking.VirtualService, ns, host string) []RouteInfo {
	var out []RouteInfo
	for _, r := range vs.GetHttp() {
		ri := RouteInfo{Protocol: "HTTP", Name: r.GetName()}
		for _, m := range r.GetMatch() {
			ri.Match = append(ri.Match, httpMatch(m))
		}
		ri.Destinations = destinations(r.GetRoute(), ns, host)
		ri.Other = httpExtras(r)
		out = append(out, ri)
	}
	for _, r := range vs.GetTls() {
		out = append(out, l4Route("TLS", r.GetMatch(), r.GetRoute(), ns, host))
	}
	for _, r := range vs.GetTcp() {
		out = append(out, l4Route("TCP", r.GetMatch(), r.GetRoute(), ns, host))
	}
	return out
}

// l4Route describes one TLS or TCP route: each match block flattened, and its destinations.
func l4Route[M proto.Message](protocol string, matches []M, routes []*networking.RouteDestination, ns, host string) RouteInfo {
	ri := RouteInfo{Protocol: protocol}
	for _, m := range matches {
		ri.Match = append(ri.Match, strings.Join(flatten("", m), " "))
	}
	ri.Destinations = destinations(routes, ns, host)
	return ri
}

// destinations describes a route's weighted destinations (in namespace ns), marking those that
// are host; a lone destination without a weight takes all the traffic.
func destinations[D interface {
	GetDestination() *networking.Destination
	GetWeight() int32
}](routes []D, ns, host string) []DestinationInfo {
	var out []DestinationInfo
	for _, rd := range routes {
		d := rd.GetDestination()
		di := DestinationInfo{Host: d.GetHost(), Subset: d.GetSubset(), Port: d.GetPort().GetNumber(), Weight: rd.GetWeight()}
		if len(routes) == 1 && di.Weight == 0 {
			di.Weight = 100
		}
		di.ThisService = mesh.HostMatches(mesh.ResolveShortName(d.GetHost(), ns), host)
		out = append(out, di)
	}
	return out
}

// httpMatch renders one HTTP match block: its URI as istioctl does ("/exact", "/prefix*",
// "regex:^/r"), then every other condition as field=value.
func httpMatch(m *networking.HTTPMatchRequest) string {
	var parts []string
	if u := m.GetUri(); u != nil {
		parts = append(parts, stringMatch(u))
	}
	rest := proto.Clone(m).(*networking.HTTPMatchRequest)
	rest.Uri, rest.Name = nil, ""
	parts = append(parts, flatten("", rest)...)
	if len(parts) == 0 {
		return "*"
	}
	return strings.Join(parts, " ")
}

func stringMatch(s *networking.StringMatch) string {
	switch v := s.GetMatchType().(type) {
	case *networking.StringMatch_Exact:
		return v.Exact
	case *networking.StringMatch_Prefix:
		return v.Prefix + "*"
	case *networking.StringMatch_Regex:
		return "regex:" + v.Regex
	}
	return "*"
}

// httpExtras lists what an HTTP route does besides forwarding.
func httpExtras(r *networking.HTTPRoute) []string {
	var out []string
	add := func(name string, m proto.Message) {
		if m == nil || !m.ProtoReflect().IsValid() {
			return
		}
		out = append(out, name+": "+strings.Join(flatten("", m), " "))
	}
	if r.GetRedirect() != nil {
		add("redirect", r.GetRedirect())
	}
	if r.GetDirectResponse() != nil {
		add("directResponse", r.GetDirectResponse())
	}
	if r.GetDelegate() != nil {
		add("delegate", r.GetDelegate())
	}
	if r.GetRewrite() != nil {
		add("rewrite", r.GetRewrite())
	}
	if t := r.GetTimeout(); t != nil {
		out = append(out, "timeout: "+t.AsDuration().String())
	}
	if r.GetRetries() != nil {
		add("retries", r.GetRetries())
	}
	if r.GetFault() != nil {
		add("fault", r.GetFault())
	}
	if r.GetMirror() != nil {
		add("mirror", r.GetMirror())
	}
	for _, m := range r.GetMirrors() {
		add("mirror", m)
	}
	if r.GetHeaders() != nil {
		add("headers", r.GetHeaders())
	}
	if r.GetCorsPolicy() != nil {
		add("cors", r.GetCorsPolicy())
	}
	return out
}

// trafficPolicy summarises a DestinationRule traffic policy (nil for none).
func trafficPolicy(tp *networking.TrafficPolicy) *TrafficPolicy {
	if tp == nil {
		return nil
	}
	out := &TrafficPolicy{}
	if tls := tp.GetTls(); tls != nil {
		out.TLSMode = tls.GetMode().String()
		rest := proto.Clone(tls).(*networking.ClientTLSSettings)
		rest.Mode = networking.ClientTLSSettings_DISABLE // the zero value: left out
		out.TLS = flatten("", rest)
	}
	if lb := tp.GetLoadBalancer(); lb != nil {
		out.LoadBalancer = flatten("", lb)
	}
	if cp := tp.GetConnectionPool(); cp != nil {
		out.ConnectionPool = flatten("", cp)
	}
	if od := tp.GetOutlierDetection(); od != nil {
		out.OutlierDetection = flatten("", od)
	}
	rest := proto.Clone(tp).(*networking.TrafficPolicy)
	rest.Tls, rest.LoadBalancer, rest.ConnectionPool, rest.OutlierDetection, rest.PortLevelSettings = nil, nil, nil, nil, nil
	out.Other = flatten("", rest)
	for _, pl := range tp.GetPortLevelSettings() {
		sub := trafficPolicy(&networking.TrafficPolicy{Tls: pl.GetTls(), LoadBalancer: pl.GetLoadBalancer(),
			ConnectionPool: pl.GetConnectionPool(), OutlierDetection: pl.GetOutlierDetection()})
		out.PortLevel = append(out.PortLevel, PortPolicy{Port: pl.GetPort().GetNumber(), Policy: *sub})
	}
	return out
}
