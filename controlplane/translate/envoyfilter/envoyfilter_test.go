package envoyfilter

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
)

// okChecker accepts everything; failChecker refuses everything.
type okChecker struct{}

func (okChecker) Listener(*listenerv3.Listener) error                  { return nil }
func (okChecker) RouteConfiguration(*routev3.RouteConfiguration) error { return nil }
func (okChecker) Cluster(*clusterv3.Cluster) error                     { return nil }

type failChecker struct{}

func (failChecker) Listener(*listenerv3.Listener) error { return errors.New("nope") }
func (failChecker) RouteConfiguration(*routev3.RouteConfiguration) error {
	return errors.New("nope")
}
func (failChecker) Cluster(*clusterv3.Cluster) error { return errors.New("nope") }

// load decodes and validates EnvoyFilters (YAML documents).
func load(t *testing.T, yaml string) []*config.Object {
	t.Helper()
	objs, errs := config.Load("test.yaml", []byte(yaml))
	if len(errs) > 0 {
		t.Fatalf("load: %v", errors.Join(errs...))
	}
	return objs
}

// patches compiles one EnvoyFilter in namespace default, with the given configPatches YAML.
func patches(t *testing.T, configPatches string) []*Patch {
	t.Helper()
	objs := load(t, "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: ef, namespace: default}\nspec:\n  configPatches:\n"+configPatches)
	s := Compile(Select(objs, "default", nil, "istio-system"))
	if len(s.Errors) > 0 {
		t.Fatal(s.Errors)
	}
	return s.Patches
}

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// inbound is a virtualInbound listener with HTTP chains on ports 9080 and 9090: fault, cors,
// router, and an inline route configuration.
func inbound(t *testing.T) *listenerv3.Listener {
	chain := func(port uint32) *listenerv3.FilterChain {
		hcm := &hcmv3.HttpConnectionManager{StatPrefix: "inbound", HttpFilters: []*hcmv3.HttpFilter{
			{Name: "envoy.filters.http.fault", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &faultv3.HTTPFault{})}},
			{Name: "envoy.filters.http.cors", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &corsv3.Cors{})}},
			{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routerv3.Router{})}},
		}, RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name: "inbound|" + itoa(port) + "||",
			VirtualHosts: []*routev3.VirtualHost{{Name: "inbound|http|" + itoa(port), Domains: []string{"*"},
				Routes: []*routev3.Route{{Name: "default", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
					Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "inbound|" + itoa(port) + "||"}}}}}}}}}}
		return &listenerv3.FilterChain{Name: "inbound|" + itoa(port) + "||",
			FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(port)},
			Filters:          []*listenerv3.Filter{{Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, hcm)}}}}
	}
	return &listenerv3.Listener{Name: "virtualInbound", TrafficDirection: corev3.TrafficDirection_INBOUND,
		Address:      &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "0.0.0.0", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 15006}}}},
		FilterChains: []*listenerv3.FilterChain{chain(9080), chain(9090)}}
}

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

// httpFilters lists the HTTP filter names of each chain of l.
func httpFilters(t *testing.T, l *listenerv3.Listener) []string {
	t.Helper()
	var out []string
	for _, fc := range l.GetFilterChains() {
		hcm := decodeHCM(fc.GetFilters()[0])
		var names []string
		for _, f := range hcm.GetHttpFilters() {
			names = append(names, strings.TrimPrefix(f.GetName(), "envoy.filters.http."))
		}
		out = append(out, strings.Join(names, ","))
	}
	return out
}

const lrlValue = `
        value:
          name: envoy.filters.http.local_ratelimit
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
            stat_prefix: rl
`

func TestHTTPFilterOperations(t *testing.T) {
	hcmMatch := func(sub string) string {
		m := "\n      match:\n        context: SIDECAR_INBOUND\n        listener:\n          filterChain:\n            filter:\n              name: envoy.filters.network.http_connection_manager\n"
		if sub != "" {
			m += "              subFilter: {name: " + sub + "}\n"
		}
		return m
	}
	for name, tc := range map[string]struct {
		patch string
		want  string // each chain's filters
	}{
		"INSERT_BEFORE without subFilter: first":   {hcmMatch("") + "      patch:\n        operation: INSERT_BEFORE" + lrlValue, "local_ratelimit,fault,cors,router"},
		"INSERT_BEFORE the router":                 {hcmMatch("envoy.filters.http.router") + "      patch:\n        operation: INSERT_BEFORE" + lrlValue, "fault,cors,local_ratelimit,router"},
		"INSERT_BEFORE a deprecated name":          {hcmMatch("envoy.router") + "      patch:\n        operation: INSERT_BEFORE" + lrlValue, "fault,cors,local_ratelimit,router"},
		"INSERT_AFTER cors":                        {hcmMatch("envoy.filters.http.cors") + "      patch:\n        operation: INSERT_AFTER" + lrlValue, "fault,cors,local_ratelimit,router"},
		"INSERT_AFTER without subFilter: last":     {hcmMatch("") + "      patch:\n        operation: INSERT_AFTER" + lrlValue, "fault,cors,router,local_ratelimit"},
		"INSERT_FIRST":                             {hcmMatch("envoy.filters.http.cors") + "      patch:\n        operation: INSERT_FIRST" + lrlValue, "local_ratelimit,fault,cors,router"},
		"ADD appends":                              {hcmMatch("") + "      patch:\n        operation: ADD" + lrlValue, "fault,cors,router,local_ratelimit"},
		"REMOVE":                                   {hcmMatch("envoy.filters.http.fault") + "      patch:\n        operation: REMOVE\n", "cors,router"},
		"REPLACE":                                  {hcmMatch("envoy.filters.http.cors") + "      patch:\n        operation: REPLACE" + lrlValue, "fault,local_ratelimit,router"},
		"subFilter not there: nothing":             {hcmMatch("envoy.filters.http.lua") + "      patch:\n        operation: INSERT_BEFORE" + lrlValue, "fault,cors,router"},
		"other context: nothing":                   {strings.Replace(hcmMatch(""), "SIDECAR_INBOUND", "SIDECAR_OUTBOUND", 1) + "      patch:\n        operation: INSERT_FIRST" + lrlValue, "fault,cors,router"},
		"listener portNumber: one chain (inbound)": {strings.Replace(hcmMatch(""), "        listener:\n", "        listener:\n          portNumber: 9090\n", 1) + "      patch:\n        operation: INSERT_FIRST" + lrlValue, "fault,cors,router|local_ratelimit,fault,cors,router"},
	} {
		t.Run(name, func(t *testing.T) {
			l := inbound(t)
			orig := proto.Clone(l)
			a := &Applier{Patches: patches(t, "    - applyTo: HTTP_FILTER"+tc.patch), Check: okChecker{}}
			out, removed, errs := a.Listener(networking.EnvoyFilter_SIDECAR_INBOUND, l)
			if removed || len(errs) > 0 {
				t.Fatalf("removed %v, errors %v", removed, errs)
			}
			want := tc.want
			if !strings.Contains(want, "|") {
				want = want + "|" + want
			}
			if got := strings.Join(httpFilters(t, out), "|"); got != want {
				t.Errorf("filters %q, want %q", got, want)
			}
			if !proto.Equal(l, orig) {
				t.Error("the input listener was modified")
			}
			if want == "fault,cors,router|fault,cors,router" && out != l {
				t.Error("an unchanged listener must be returned as is (shared)")
			}
		})
	}
}

func TestNetworkFilterMergeTypedConfig(t *testing.T) {
	l := inbound(t)
	a := &Applier{Patches: patches(t, `    - applyTo: NETWORK_FILTER
      match:
        listener:
          filterChain:
            destinationPort: 9080
            filter: {name: envoy.http_connection_manager}
      patch:
        operation: MERGE
        value:
          name: envoy.filters.network.http_connection_manager
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
            stat_prefix: merged
            server_name: strait
`), Check: okChecker{}}
	out, _, errs := a.Listener(networking.EnvoyFilter_SIDECAR_INBOUND, l)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	h0, h1 := decodeHCM(out.FilterChains[0].Filters[0]), decodeHCM(out.FilterChains[1].Filters[0])
	if h0.GetStatPrefix() != "merged" || h0.GetServerName() != "strait" || len(h0.GetHttpFilters()) != 3 || h0.GetRouteConfig() == nil {
		t.Errorf("merged HCM: %v", h0)
	}
	if h1.GetStatPrefix() != "inbound" {
		t.Errorf("the other chain (port 9090) changed: %v", h1)
	}
}

func TestRoutePatches(t *testing.T) {
	l := inbound(t)
	a := &Applier{Patches: patches(t, `    - applyTo: HTTP_ROUTE
      match:
        context: SIDECAR_INBOUND
        routeConfiguration:
          vhost:
            name: "inbound|http|9080"
            route: {action: ROUTE}
      patch:
        operation: MERGE
        value:
          route: {rate_limits: [{actions: [{remote_address: {}}]}]}
    - applyTo: HTTP_ROUTE
      match:
        context: SIDECAR_INBOUND
        routeConfiguration:
          portNumber: 9090
          vhost: {route: {name: default}}
      patch:
        operation: INSERT_BEFORE
        value:
          name: first
          match: {prefix: /first}
          direct_response: {status: 200}
    - applyTo: HTTP_ROUTE
      match:
        context: SIDECAR_INBOUND
        routeConfiguration:
          vhost: {route: {action: REDIRECT}}
      patch:
        operation: REMOVE
`), Check: okChecker{}}
	out, _, errs := a.Listener(networking.EnvoyFilter_SIDECAR_INBOUND, l)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	rc0 := decodeHCM(out.FilterChains[0].Filters[0]).GetRouteConfig()
	rc1 := decodeHCM(out.FilterChains[1].Filters[0]).GetRouteConfig()
	if r := rc0.VirtualHosts[0].Routes; len(r) != 1 || len(r[0].GetRoute().GetRateLimits()) != 1 {
		t.Errorf("port 9080 routes: %v", r)
	}
	if r := rc1.VirtualHosts[0].Routes; len(r) != 2 || r[0].GetName() != "first" || len(r[1].GetRoute().GetRateLimits()) != 0 {
		t.Errorf("port 9090 routes: %v", r)
	}
}

func TestRefusedPatchKeepsResource(t *testing.T) {
	l := inbound(t)
	a := &Applier{Patches: patches(t, "    - applyTo: HTTP_FILTER\n      match: {context: SIDECAR_INBOUND}\n      patch:\n        operation: INSERT_FIRST"+lrlValue), Check: failChecker{}}
	out, removed, errs := a.Listener(networking.EnvoyFilter_SIDECAR_INBOUND, l)
	if out != l || removed || len(errs) != 1 {
		t.Fatalf("got %v %v %v", out == l, removed, errs)
	}
	if msg := errs[0].Error(); !strings.Contains(msg, "EnvoyFilter default/ef: spec.configPatches[0]") || !strings.Contains(msg, "keeps the unpatched listener") {
		t.Errorf("refusal: %s", msg)
	}
}

func TestClusterPatches(t *testing.T) {
	c := &clusterv3.Cluster{Name: "outbound|80|v1|shop.shop.svc.cluster.local"}
	other := &clusterv3.Cluster{Name: "outbound|81||shop.shop.svc.cluster.local"}
	a := &Applier{Patches: patches(t, `    - applyTo: CLUSTER
      match:
        context: SIDECAR_OUTBOUND
        cluster: {service: shop.shop.svc.cluster.local, portNumber: 80, subset: v1}
      patch:
        operation: MERGE
        value: {connect_timeout: 2s}
    - applyTo: CLUSTER
      match: {cluster: {name: outbound|81||shop.shop.svc.cluster.local}}
      patch: {operation: REMOVE}
    - applyTo: CLUSTER
      match: {context: SIDECAR_OUTBOUND, cluster: {service: ignored.for.add}}
      patch:
        operation: ADD
        value: {name: added, type: STATIC, connect_timeout: 1s}
`), Check: okChecker{}}
	out, _, _ := a.Cluster(networking.EnvoyFilter_SIDECAR_OUTBOUND, c)
	if out.GetConnectTimeout().AsDuration() != 2*time.Second || c.GetConnectTimeout() != nil {
		t.Errorf("merged %v, input %v", out, c)
	}
	if _, removed, _ := a.Cluster(networking.EnvoyFilter_SIDECAR_OUTBOUND, other); !removed {
		t.Error("REMOVE by name")
	}
	if out, _, _ := a.Cluster(networking.EnvoyFilter_SIDECAR_INBOUND, c); out != c {
		t.Error("a SIDECAR_OUTBOUND patch applied in SIDECAR_INBOUND")
	}
	added, errs := a.AddedClusters(networking.EnvoyFilter_SIDECAR_INBOUND, networking.EnvoyFilter_SIDECAR_OUTBOUND)
	if len(errs) > 0 || len(added) != 1 || added[0].GetName() != "added" {
		t.Errorf("added %v %v", added, errs)
	}
	if added, _ := a.AddedClusters(networking.EnvoyFilter_GATEWAY); len(added) != 0 {
		t.Errorf("added to a gateway: %v", added)
	}
}

func TestSelectOrder(t *testing.T) {
	objs := load(t, `apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: ns-late, namespace: default, creationTimestamp: "2024-01-02T00:00:00Z"}
spec: {configPatches: []}
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: ns-early, namespace: default, creationTimestamp: "2024-01-01T00:00:00Z"}
spec: {configPatches: []}
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: ns-first, namespace: default}
spec: {priority: -5, configPatches: []}
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: root, namespace: istio-system}
spec: {priority: 100, workloadSelector: {labels: {app: a}}, configPatches: []}
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: other-app, namespace: default}
spec: {workloadSelector: {labels: {app: b}}, configPatches: []}
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: other-ns, namespace: other}
spec: {configPatches: []}
`)
	var got []string
	for _, o := range Select(objs, "default", map[string]string{"app": "a"}, "istio-system") {
		got = append(got, o.Name)
	}
	if strings.Join(got, " ") != "root ns-first ns-early ns-late" {
		t.Errorf("order %q", got)
	}
}

func TestParseRouteName(t *testing.T) {
	for name, want := range map[string]string{
		"inbound|9080||": "9080||", "80": "80||", "shop.example.com:8080": "8080||", "http.8080": "8080||",
		"https.443.https-shop.secure.istio-system": "443|https-shop|istio-system/secure",
	} {
		port, portName, gw := parseRouteName(name)
		if got := itoa(port) + "|" + portName + "|" + gw; got != want {
			t.Errorf("%s: %s, want %s", name, got, want)
		}
	}
}
