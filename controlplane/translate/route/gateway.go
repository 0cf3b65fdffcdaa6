package route

import (
	"errors"
	"sort"
	"strconv"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
)

// GatewayRouteName is the name of a router's route configuration for the plaintext HTTP servers
// on port: "http.8080".
func GatewayRouteName(port uint32) string { return "http." + strconv.FormatUint(uint64(port), 10) }

// GatewayTLSRouteName is the name of the route configuration of one TLS-terminating (HTTPS)
// server, which gets its own: "https.443.<server port name>.<gateway name>.<gateway namespace>".
func GatewayTLSRouteName(gw *config.Object, s *networking.Server) string {
	return "https." + strconv.FormatUint(uint64(s.GetPort().GetNumber()), 10) + "." + s.GetPort().GetName() + "." + gw.Name + "." + gw.Namespace
}

// gwServer is one server of one Gateway.
type gwServer struct {
	gw     *config.Object
	key    string // "namespace/name", as VirtualService.gateways names it
	server *networking.Server
}

// isPlainHTTPServer reports whether a server's traffic is plaintext HTTP (routed by http.<port>).
func isPlainHTTPServer(s *networking.Server) bool {
	switch strings.ToUpper(s.GetPort().GetProtocol()) {
	case "HTTP", "HTTP2", "GRPC", "GRPC-WEB":
		return true // tls on an HTTP server only carries httpsRedirect
	}
	return false
}

// Gateway builds a router's route configuration "http.<port>" for the plaintext HTTP servers on
// port of in.Gateways. Virtual hosts are the hosts of VirtualServices bound to one of those
// gateways (VirtualService.gateways "namespace/name", or "name" in the VirtualService's
// namespace), intersected with the servers' hosts ("namespace/host" restricts the
// VirtualService's namespace; the more specific of the two hosts wins), one per host named
// "host:port" with domains host and "host:*". VirtualServices for the same host are merged in
// order (oldest first). A server with tls.httpsRedirect makes its virtual hosts redirect every
// request to https with 301 (what Envoy's require_tls ALL does on a plaintext server, expressed as
// a redirect route). With no virtual host, a "blackhole:port" host with no routes answers 404.
// Errors are as for Outbound.
func (b *Builder) Gateway(port uint32) (*routev3.RouteConfiguration, error) {
	var servers []gwServer
	for _, gw := range b.in.Gateways {
		spec, ok := gw.Spec.(*networking.Gateway)
		if !ok {
			continue
		}
		for _, s := range spec.Servers {
			if s.GetPort().GetNumber() == port && isPlainHTTPServer(s) {
				servers = append(servers, gwServer{gw: gw, key: gw.Namespace + "/" + gw.Name, server: s})
			}
		}
	}
	return b.gatewayRoutes(GatewayRouteName(port), port, servers, false)
}

// GatewayTLS builds the route configuration of one TLS-terminating server (HTTPS, tls.mode
// SIMPLE, MUTUAL or OPTIONAL_MUTUAL) of gw, named by GatewayTLSRouteName; otherwise as Gateway.
func (b *Builder) GatewayTLS(gw *config.Object, s *networking.Server) (*routev3.RouteConfiguration, error) {
	return b.gatewayRoutes(GatewayTLSRouteName(gw, s), s.GetPort().GetNumber(),
		[]gwServer{{gw: gw, key: gw.Namespace + "/" + gw.Name, server: s}}, true)
}

func (b *Builder) gatewayRoutes(name string, port uint32, servers []gwServer, tls bool) (*routev3.RouteConfiguration, error) {
	type vhostAcc struct {
		vs       []*virtualService
		gwKeys   []string // the gateway each VirtualService was bound through
		redirect bool
	}
	hosts := map[string]*vhostAcc{}
	var order []string
	var errs []error
	for _, v := range b.vs {
		for _, srv := range servers {
			if !contains(v.gateways, srv.key) {
				continue
			}
			for _, sh := range srv.server.Hosts {
				nsSel, shost, found := strings.Cut(sh, "/")
				if !found {
					nsSel, shost = "*", sh
				}
				if nsSel == "." {
					nsSel = srv.gw.Namespace
				}
				if nsSel != "*" && nsSel != v.obj.Namespace {
					continue
				}
				for _, vh := range v.hosts {
					h := intersectHost(shost, vh)
					if h == "" {
						continue
					}
					acc := hosts[h]
					if acc == nil {
						acc = &vhostAcc{}
						hosts[h] = acc
						order = append(order, h)
					}
					if !containsVS(acc.vs, v) {
						acc.vs = append(acc.vs, v)
						acc.gwKeys = append(acc.gwKeys, srv.key)
					}
					if srv.server.GetTls().GetHttpsRedirect() {
						acc.redirect = true
					}
				}
			}
		}
	}
	sort.Strings(order)
	type key struct {
		v  *virtualService
		gw string
	}
	cache := map[key][]*routev3.Route{}
	failed := map[key]bool{}
	var vhosts []*routev3.VirtualHost
	for _, h := range order {
		acc := hosts[h]
		var routes []*routev3.Route
		for i, v := range acc.vs {
			k := key{v, acc.gwKeys[i]}
			if failed[k] {
				continue
			}
			rs, ok := cache[k]
			if !ok {
				var err error
				rs, err = b.httpRoutes(v, port, k.gw, false, tls, nil)
				if err != nil {
					errs = append(errs, objectErr(v.obj, err, "VirtualService not applied to gateway "+k.gw))
					failed[k] = true
					continue
				}
				cache[k] = rs
			}
			routes = append(routes, rs...)
		}
		if acc.redirect {
			// tls.httpsRedirect: every request is redirected to https (301), the effect of
			// Envoy's require_tls ALL on a plaintext server; the VirtualService routes are
			// unreachable on this server.
			routes = []*routev3.Route{{
				Name:  "https_redirect",
				Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{
					SchemeRewriteSpecifier: &routev3.RedirectAction_HttpsRedirect{HttpsRedirect: true},
					ResponseCode:           routev3.RedirectAction_MOVED_PERMANENTLY,
				}},
			}}
		}
		if len(routes) == 0 {
			continue
		}
		vhosts = append(vhosts, &routev3.VirtualHost{Name: hostPort(h, port), Domains: gatewayDomains(h), Routes: routes})
	}
	if len(vhosts) == 0 {
		vhosts = []*routev3.VirtualHost{{Name: hostPort("blackhole", port), Domains: []string{"*"}}}
	}
	rc := &routev3.RouteConfiguration{Name: name, VirtualHosts: vhosts, ValidateClusters: wrapperspb.Bool(false)}
	if n := directResponseBodyLimit(vhosts); n > 0 {
		rc.MaxDirectResponseBodySizeBytes = wrapperspb.UInt32(n)
	}
	return rc, errors.Join(errs...)
}

// intersectHost returns the more specific of a server host and a VirtualService host when one
// matches the other, else "".
func intersectHost(serverHost, vsHost string) string {
	switch {
	case hostMatches(serverHost, vsHost):
		return vsHost
	case hostMatches(vsHost, serverHost):
		return serverHost
	}
	return ""
}

// gatewayDomains are a gateway virtual host's domains: the host, and the host with any port.
func gatewayDomains(h string) []string {
	if h == "*" {
		return []string{"*"}
	}
	return []string{h, h + ":*"}
}

func containsVS(list []*virtualService, v *virtualService) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
