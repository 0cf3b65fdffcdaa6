package analysis

import (
	"slices"
	"strings"
	"testing"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/mesh/meshtest"
)

// services is a registry for the cases: reviews (one port) and ratings (two ports).
var services = meshtest.Object("ServiceEntry", "reviews", "default", `  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: reviews}}
`) + "---\n" + meshtest.Object("ServiceEntry", "ratings", "default", `  hosts: [ratings.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports:
  - {number: 9080, name: http, protocol: HTTP}
  - {number: 9090, name: grpc, protocol: GRPC}
  resolution: STATIC
  workloadSelector: {labels: {app: ratings}}
`) + "---\n" + meshtest.Object("DestinationRule", "reviews", "default", `  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
`)

// gateway is the Gateway default/gw with an HTTP server on port 80, for the cases of gateway
// VirtualServices.
var gateway = meshtest.Object("Gateway", "gw", "default", `  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
`)

// reviews1 is a workload of reviews v1, for the cases of Sidecar selectors.
const reviews1 = `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-1, namespace: default}
spec: {address: 127.0.0.2, labels: {app: reviews, version: v1}}
`

// run loads the documents of input (file "in.yaml", after the registry in "services.yaml"),
// analyzes them and returns the lines of the messages with one of codes.
func run(t *testing.T, input string, opts Options, codes ...string) []string {
	t.Helper()
	files := map[string][]byte{"services.yaml": []byte(services), "in.yaml": []byte(input)}
	var objs []*config.Object
	for _, name := range []string{"services.yaml", "in.yaml"} {
		o, errs := config.Load(name, files[name])
		for _, err := range errs {
			t.Fatalf("loading %s: %v", name, err)
		}
		objs = append(objs, o...)
	}
	opts.Locator = LocatorFor(files)
	var out []string
	for _, m := range AnalyzeObjects(nil, objs, opts) {
		if slices.Contains(codes, m.Code) {
			out = append(out, m.String())
		}
	}
	return out
}

func TestAnalyzers(t *testing.T) {
	cases := []struct {
		name  string
		input string
		opts  Options
		codes []string
		want  []string
	}{
		{
			name: "destination host found",
			input: meshtest.Object("VirtualService", "reviews", "default", `  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
`),
			codes: []string{"IST0101"},
		},
		{
			name: "destination host not found",
			input: meshtest.Object("VirtualService", "reviews", "default", `  hosts: [reviews]
  http:
  - route:
    - destination:
        host: reveiws
  - mirror: {host: mirror.example.com}
    route:
    - destination: {host: reviews}
`),
			codes: []string{"IST0101"},
			want: []string{
				`Error [IST0101] (VirtualService default/reviews in.yaml:9) Referenced host not found: "reveiws"`,
				`Error [IST0101] (VirtualService default/reviews in.yaml:10) Referenced host not found: "mirror.example.com"`,
			},
		},
		{
			name: "subset found",
			input: meshtest.Object("VirtualService", "reviews", "default", `  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews.default.svc.cluster.local, subset: v1}
`),
			codes: []string{"IST0101"},
		},
		{
			name: "subset not found",
			input: meshtest.Object("VirtualService", "reviews", "default", `  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v9
`),
			codes: []string{"IST0101"},
			want:  []string{`Error [IST0101] (VirtualService default/reviews in.yaml:11) Referenced host+subset in destinationrule not found: "reviews+v9"`},
		},
		{
			name: "gateway found",
			input: gateway + "---\n" + meshtest.Object("VirtualService", "front", "other", `  hosts: [front.example.com]
  gateways: [default/gw, mesh]
  http:
  - route:
    - destination: {host: reviews.default.svc.cluster.local}
`),
			codes: []string{"IST0101"},
		},
		{
			name: "gateway not found",
			input: meshtest.Object("VirtualService", "front", "default", `  hosts: ["*"]
  gateways:
  - httpbin-gateway-bogus
  http:
  - route:
    - destination: {host: reviews}
`),
			codes: []string{"IST0101"},
			want:  []string{`Error [IST0101] (VirtualService default/front in.yaml:7) Referenced gateway not found: "httpbin-gateway-bogus"`},
		},
		{
			name: "gateway destination names its port",
			input: gateway + "---\n" + meshtest.Object("VirtualService", "front", "default", `  hosts: ["*"]
  gateways: [gw]
  http:
  - route:
    - destination: {host: ratings, port: {number: 9080}}
`),
			codes: []string{"IST0112"},
		},
		{
			name: "gateway destination without port on a service with two",
			input: gateway + "---\n" + meshtest.Object("VirtualService", "front", "default", `  hosts: ["*"]
  gateways: [gw]
  http:
  - route:
    - destination: {host: ratings}
`),
			codes: []string{"IST0112"},
			want:  []string{`Error [IST0112] (VirtualService default/front in.yaml:15) This VirtualService routes to a service "ratings" that exposes multiple ports [9080 9090]. Specifying a port in the destination is required to disambiguate.`},
		},
		{
			name: "mesh hosts scoped apart",
			input: meshtest.Object("VirtualService", "productpage", "team-1", `  exportTo: ["."]
  hosts: [productpage.default.svc.cluster.local]
  http: [{route: [{destination: {host: reviews.default.svc.cluster.local}}]}]
`) + "---\n" + meshtest.Object("VirtualService", "custom", "team-2", `  exportTo: ["."]
  hosts: [productpage.default.svc.cluster.local]
  http: [{route: [{destination: {host: reviews.default.svc.cluster.local}}]}]
`),
			codes: []string{"IST0109"},
		},
		{
			name: "conflicting mesh hosts",
			input: meshtest.Object("VirtualService", "productpage", "team-1", `  hosts: [productpage.default.svc.cluster.local]
  http: [{route: [{destination: {host: reviews.default.svc.cluster.local}}]}]
`) + "---\n" + `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: custom
  namespace: team-2
spec:
  hosts: [productpage.default.svc.cluster.local]
  http: [{route: [{destination: {host: reviews.default.svc.cluster.local}}]}]
`,
			codes: []string{"IST0109"},
			want: []string{
				`Error [IST0109] (VirtualService team-1/productpage in.yaml:3) The VirtualServices team-1/productpage,team-2/custom associated with mesh gateway define the same host productpage.default.svc.cluster.local which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource.`,
				`Error [IST0109] (VirtualService team-2/custom in.yaml:11) The VirtualServices team-1/productpage,team-2/custom associated with mesh gateway define the same host productpage.default.svc.cluster.local which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource.`,
			},
		},
		{
			name: "destination rule host known",
			input: meshtest.Object("DestinationRule", "ratings", "default", `  host: ratings
`),
			codes: []string{"IST0174"},
		},
		{
			name: "destination rule host unknown",
			input: meshtest.Object("DestinationRule", "reviews2", "default", `  host: reveiws
`),
			codes: []string{"IST0174"},
			want:  []string{`Warning [IST0174] (DestinationRule default/reviews2 in.yaml:5) The host reveiws defined in the DestinationRule does not match any services in the mesh.`},
		},
		{
			name: "destination rules merge cleanly",
			input: meshtest.Object("DestinationRule", "reviews-v2", "default", `  host: reviews
  subsets:
  - {name: v2, labels: {version: v2}}
`),
			codes: []string{"STR0001"},
		},
		{
			name: "conflicting destination rules",
			input: meshtest.Object("DestinationRule", "reviews-more", "default", `  host: reviews.default.svc.cluster.local
  trafficPolicy: {loadBalancer: {simple: RANDOM}}
  subsets:
  - {name: v1, labels: {version: v1}}
`) + "---\n" + meshtest.Object("DestinationRule", "reviews-lb", "default", `  host: reviews
  trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST}}
`),
			codes: []string{"STR0001"},
			// Rules merge in snapshot order (creation time, then name): reviews, reviews-lb, then
			// reviews-more, whose policy and subset v1 were defined before it.
			want: []string{
				`Warning [STR0001] (DestinationRule default/reviews-more in.yaml:5) The DestinationRules [default/reviews default/reviews-lb default/reviews-more] in namespace "default" define the same host reviews.default.svc.cluster.local; they are merged and this rule's trafficPolicy and subsets v1 are ignored, as the oldest rule's win. This can be fixed by merging them into a single resource.`,
			},
		},
		{
			name: "gateway selects a workload",
			input: meshtest.Object("Gateway", "gw", "default", `  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
`) + "---\n" + meshtest.Object("WorkloadEntry", "ingress", "istio-system", `  address: 127.0.0.1
  labels: {istio: ingressgateway}
`),
			opts:  Options{CheckGatewaySelectors: true},
			codes: []string{"IST0101"},
		},
		{
			name: "gateway selects no workload",
			input: meshtest.Object("Gateway", "gw", "default", `  selector:
    istio: ingressgateway
    app: front
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
`),
			opts:  Options{CheckGatewaySelectors: true, Workloads: []Workload{{Name: "other", Namespace: "default", Labels: map[string]string{"istio": "ingressgateway"}}}},
			codes: []string{"IST0101"},
			want:  []string{`Error [IST0101] (Gateway default/gw in.yaml:5) Referenced selector not found: "app=front,istio=ingressgateway"`},
		},
		{
			name: "gateway selectors not checked by default",
			input: meshtest.Object("Gateway", "gw", "default", `  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
`),
			codes: []string{"IST0101"},
		},
		{
			name: "port names with a protocol",
			input: meshtest.Object("ServiceEntry", "db", "default", `  hosts: [db.example.com]
  ports:
  - {number: 5432, name: tcp-postgres}
  - {number: 8080, name: web, protocol: HTTP}
  resolution: DNS
`),
			codes: []string{"IST0118"},
		},
		{
			name: "port name without a protocol",
			input: meshtest.Object("ServiceEntry", "db", "default", `  hosts: [db.example.com]
  ports:
  - number: 5432
    name: postgres
    targetPort: 15432
  resolution: DNS
`),
			codes: []string{"IST0118"},
			want:  []string{`Info [IST0118] (ServiceEntry default/db in.yaml:8) Port name postgres (port: 5432, targetPort: 15432) doesn't follow the naming convention of Istio port.`},
		},
		{
			name: "one sidecar without selector per namespace",
			input: meshtest.Object("Sidecar", "default", "default", `  egress: [{hosts: ["./*"]}]
`) + "---\n" + meshtest.Object("Sidecar", "default", "other", `  egress: [{hosts: ["./*"]}]
`),
			codes: []string{"IST0110", "IST0111"},
		},
		{
			name: "several sidecars without selector",
			input: meshtest.Object("Sidecar", "a", "default", `  egress: [{hosts: ["./*"]}]
`) + "---\n" + `apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: b
  namespace: default
spec:
  egress: [{hosts: ["./*"]}]
`,
			codes: []string{"IST0110", "IST0111"},
			want: []string{
				`Error [IST0111] (Sidecar default/a in.yaml:3) The Sidecars [default/a default/b] in namespace "default" have no workload selector, which can lead to undefined behavior.`,
				`Error [IST0111] (Sidecar default/b in.yaml:10) The Sidecars [default/a default/b] in namespace "default" have no workload selector, which can lead to undefined behavior.`,
			},
		},
		{
			name: "sidecars select different workloads",
			input: meshtest.Object("Sidecar", "a", "default", `  workloadSelector: {labels: {app: reviews}}
  egress: [{hosts: ["./*"]}]
`) + "---\n" + meshtest.Object("Sidecar", "b", "default", `  workloadSelector: {labels: {app: ratings}}
  egress: [{hosts: ["./*"]}]
`) + "---\n" + reviews1,
			codes: []string{"IST0110", "IST0111"},
		},
		{
			name: "sidecars select one workload",
			input: meshtest.Object("Sidecar", "a", "default", `  workloadSelector: {labels: {app: reviews}}
  egress: [{hosts: ["./*"]}]
`) + "---\n" + meshtest.Object("Sidecar", "b", "default", `  workloadSelector:
    labels: {version: v1}
  egress: [{hosts: ["./*"]}]
`) + "---\n" + reviews1,
			codes: []string{"IST0110", "IST0111"},
			want: []string{
				`Error [IST0110] (Sidecar default/a in.yaml:5) The Sidecars [default/a default/b] in namespace "default" select the same workload pod "reviews-1", which can lead to undefined behavior.`,
				`Error [IST0110] (Sidecar default/b in.yaml:12) The Sidecars [default/a default/b] in namespace "default" select the same workload pod "reviews-1", which can lead to undefined behavior.`,
			},
		},
		{
			name: "no deprecated fields",
			input: meshtest.Object("DestinationRule", "ratings", "default", `  host: ratings
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 5}
`),
			codes: []string{"IST0002"},
		},
		{
			name: "deprecated fields",
			input: meshtest.Object("DestinationRule", "ratings", "default", `  host: ratings
  trafficPolicy:
    outlierDetection:
      consecutiveErrors: 5
`) + "---\n" + meshtest.Object("VirtualService", "reviews", "default", `  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
    mirror: {host: reviews}
    mirrorPercent: 5
`),
			codes: []string{"IST0002"},
			want: []string{
				`Warning [IST0002] (DestinationRule default/ratings in.yaml:8) Deprecated: "spec.trafficPolicy.outlierDetection.consecutiveErrors" is deprecated; use "consecutive5xxErrors"`,
				`Warning [IST0002] (VirtualService default/reviews in.yaml:19) Deprecated: "spec.http[0].mirrorPercent" is deprecated; use "mirrorPercentage"`,
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := run(t, tc.input, tc.opts, tc.codes...)
			if !slices.Equal(got, tc.want) {
				t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}
