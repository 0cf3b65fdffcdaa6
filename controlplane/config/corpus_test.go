package config

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
)

// corpusDir holds Istio's own sample and test configuration (see its README.md and LICENSE).
const corpusDir = "testdata/istio-corpus"

// corpusWant is what `strait apply` must make of one file of Istio's corpus: the objects it
// accepts (keys, in document order) and, for each other document, a substring of the one error
// that refuses it (in document order).
type corpusWant struct {
	accepted []string
	refused  []string
	warned   []string // the accepted objects' warnings (Object.Warnings), in order
}

// gatewayAPI is the refusal of a Gateway API kind.
func gatewayAPI(kind string) string {
	return "kind " + kind + " (gateway.networking.k8s.io) is not supported yet"
}

// istioKind is the refusal of a kind of Istio's API that Strait does not decode yet.
func istioKind(kind, group string) string {
	return "kind " + kind + " (" + group + ") is not supported yet"
}

// notIstio is the refusal of a Kubernetes object that is not Istio configuration.
func notIstio(kind, apiVersion string) string {
	return "kind " + kind + " (apiVersion " + apiVersion + ") is not an Istio object; Strait reads only Istio configuration and Secrets: "
}

// The refusals a corpus document may get: each names the kind (and its group) or the field
// Strait does not support, never a parse error about an API it does not read.
var (
	notYetRE    = regexp.MustCompile(`^kind [A-Za-z]+ \([a-z0-9.-]+\) is not supported yet$`)
	notIstioRE  = regexp.MustCompile(`^kind [A-Za-z]+ \(apiVersion [a-z0-9./-]+\) is not an Istio object; Strait reads only Istio configuration and Secrets: [A-Za-z, ]+$`)
	removedFdRE = regexp.MustCompile(`^unknown field "[A-Za-z]+" in [A-Za-z]+: Istio removed this field from its API`)
	// An EnvoyFilter patch that adds a filter strait-proxy does not implement.
	proxyFilterRE = regexp.MustCompile(`^(HTTP|network) filter "[a-z._]+" \([a-zA-Z0-9./_]+\) is not supported yet: strait-proxy does not implement it$`)
)

// corpus is the expectation for every file of corpusDir. A file added to the corpus must be added
// here; a change in what Strait accepts or how it refuses fails the test either way.
var corpus = map[string]corpusWant{
	"samples/ambient-argo/application/details-waypoint.yaml": {
		refused: []string{gatewayAPI("Gateway")},
	},
	"samples/ambient-argo/application/ingress-gateway.yaml": {
		refused: []string{gatewayAPI("Gateway"), gatewayAPI("HTTPRoute")},
	},
	"samples/ambient-argo/application/reviews-waypoint.yaml": {
		refused: []string{gatewayAPI("Gateway")},
	},
	"samples/ambient-argo/application/route-reviews-90-10.yaml": {
		refused: []string{gatewayAPI("HTTPRoute")},
	},
	"samples/bookinfo/gateway-api/bookinfo-gateway.yaml": {
		refused: []string{gatewayAPI("Gateway"), gatewayAPI("HTTPRoute")},
	},
	"samples/bookinfo/gateway-api/route-all-v1.yaml": {
		refused: []string{
			gatewayAPI("HTTPRoute"),
			gatewayAPI("HTTPRoute"),
			gatewayAPI("HTTPRoute"),
			gatewayAPI("HTTPRoute"),
		},
	},
	"samples/bookinfo/gateway-api/route-reviews-50-v3.yaml": {
		refused: []string{gatewayAPI("HTTPRoute")},
	},
	"samples/bookinfo/gateway-api/route-reviews-90-10.yaml": {
		refused: []string{gatewayAPI("HTTPRoute")},
	},
	"samples/bookinfo/gateway-api/route-reviews-v1.yaml": {
		refused: []string{gatewayAPI("HTTPRoute")},
	},
	"samples/bookinfo/gateway-api/route-reviews-v3.yaml": {
		refused: []string{gatewayAPI("HTTPRoute")},
	},
	"samples/bookinfo/networking/bookinfo-gateway.yaml": {
		accepted: []string{"Gateway/default/bookinfo-gateway", "VirtualService/default/bookinfo"},
	},
	"samples/bookinfo/networking/certmanager-gateway.yaml": {
		accepted: []string{
			"Gateway/istio-system/cert-manager-gateway", "VirtualService/istio-system/cert-manager",
		},
	},
	"samples/bookinfo/networking/destination-rule-all-mtls.yaml": {
		accepted: []string{
			"DestinationRule/default/productpage", "DestinationRule/default/reviews",
			"DestinationRule/default/ratings", "DestinationRule/default/details",
		},
	},
	"samples/bookinfo/networking/destination-rule-all.yaml": {
		accepted: []string{
			"DestinationRule/default/productpage", "DestinationRule/default/reviews",
			"DestinationRule/default/ratings", "DestinationRule/default/details",
		},
	},
	"samples/bookinfo/networking/destination-rule-reviews.yaml": {
		accepted: []string{"DestinationRule/default/reviews"},
	},
	"samples/bookinfo/networking/egress-rule-google-apis.yaml": {
		accepted: []string{
			"ServiceEntry/default/googleapis", "VirtualService/default/rewrite-port-for-googleapis",
			"DestinationRule/default/originate-tls-for-googleapis",
		},
	},
	"samples/bookinfo/networking/fault-injection-details-v1.yaml": {
		accepted: []string{"VirtualService/default/details", "DestinationRule/default/details"},
	},
	"samples/bookinfo/networking/virtual-service-all-v1.yaml": {
		accepted: []string{
			"VirtualService/default/productpage", "VirtualService/default/reviews",
			"VirtualService/default/ratings", "VirtualService/default/details",
		},
	},
	"samples/bookinfo/networking/virtual-service-details-v2.yaml": {
		accepted: []string{"VirtualService/default/details"},
	},
	"samples/bookinfo/networking/virtual-service-ratings-db.yaml": {
		accepted: []string{"VirtualService/default/reviews", "VirtualService/default/ratings"},
	},
	"samples/bookinfo/networking/virtual-service-ratings-mysql-vm.yaml": {
		accepted: []string{"VirtualService/default/reviews", "VirtualService/default/ratings"},
	},
	"samples/bookinfo/networking/virtual-service-ratings-mysql.yaml": {
		accepted: []string{"VirtualService/default/reviews", "VirtualService/default/ratings"},
	},
	"samples/bookinfo/networking/virtual-service-ratings-test-abort.yaml": {
		accepted: []string{"VirtualService/default/ratings"},
	},
	"samples/bookinfo/networking/virtual-service-ratings-test-delay.yaml": {
		accepted: []string{"VirtualService/default/ratings"},
	},
	"samples/bookinfo/networking/virtual-service-reviews-50-v3.yaml": {
		accepted: []string{"VirtualService/default/reviews"},
	},
	"samples/bookinfo/networking/virtual-service-reviews-80-20.yaml": {
		accepted: []string{"VirtualService/default/reviews"},
	},
	"samples/bookinfo/networking/virtual-service-reviews-90-10.yaml": {
		accepted: []string{"VirtualService/default/reviews"},
	},
	"samples/bookinfo/networking/virtual-service-reviews-jason-v2-v3.yaml": {
		accepted: []string{"VirtualService/default/reviews"},
	},
	"samples/bookinfo/networking/virtual-service-reviews-test-v2.yaml": {
		accepted: []string{"VirtualService/default/reviews"},
	},
	"samples/bookinfo/networking/virtual-service-reviews-v2-v3.yaml": {
		accepted: []string{"VirtualService/default/reviews"},
	},
	"samples/bookinfo/networking/virtual-service-reviews-v3.yaml": {
		accepted: []string{"VirtualService/default/reviews"},
	},
	"samples/bookinfo/policy/productpage_envoy_ratelimit.yaml": {
		// Global rate limiting: the filter (strait-proxy's envoy.filters.http.ratelimit) and the
		// virtual host's rate_limits.
		accepted: []string{"EnvoyFilter/istio-system/filter-ratelimit", "EnvoyFilter/istio-system/filter-ratelimit-svc"},
	},
	"samples/extauthz/local-ext-authz.yaml": {
		accepted: []string{
			"ServiceEntry/default/httpbin-ext-authz-http", "ServiceEntry/default/httpbin-ext-authz-grpc",
		},
		refused: []string{
			notIstio("Deployment", "apps/v1"),
			notIstio("Service", "v1"),
			notIstio("ServiceAccount", "v1"),
		},
	},
	"samples/external/aptget.yaml": {
		accepted: []string{"ServiceEntry/default/make-aptget-work"},
	},
	"samples/external/github.yaml": {
		accepted: []string{"ServiceEntry/default/github-https", "ServiceEntry/default/github-tcp"},
	},
	"samples/external/pypi.yaml": {
		accepted: []string{
			"ServiceEntry/default/python-https", "ServiceEntry/default/pypi-https",
			"ServiceEntry/default/pythonhosted-https",
		},
	},
	"samples/helloworld/gateway-api/helloworld-gateway.yaml": {
		refused: []string{gatewayAPI("Gateway"), gatewayAPI("HTTPRoute")},
	},
	"samples/helloworld/gateway-api/helloworld-route.yaml": {
		refused: []string{gatewayAPI("HTTPRoute")},
	},
	"samples/helloworld/helloworld-gateway.yaml": {
		accepted: []string{"Gateway/default/helloworld-gateway", "VirtualService/default/helloworld"},
	},
	"samples/httpbin/gateway-api/httpbin-gateway.yaml": {
		refused: []string{gatewayAPI("Gateway"), gatewayAPI("HTTPRoute")},
	},
	"samples/httpbin/httpbin-gateway.yaml": {
		accepted: []string{"Gateway/default/httpbin-gateway", "VirtualService/default/httpbin"},
	},
	"samples/multicluster/expose-istiod-https.yaml": {
		accepted: []string{
			"Gateway/default/istiod-gateway", "VirtualService/default/istiod-vs",
			"DestinationRule/default/istiod-dr",
		},
	},
	"samples/multicluster/expose-istiod.yaml": {
		accepted: []string{"Gateway/default/istiod-gateway", "VirtualService/default/istiod-vs"},
	},
	"samples/multicluster/expose-services.yaml": {
		accepted: []string{"Gateway/default/cross-network-gateway"},
	},
	"samples/open-telemetry/loki/telemetry.yaml": {
		accepted: []string{"Telemetry/istio-system/mesh-logging"},
	},
	"samples/open-telemetry/tracing/telemetry.yaml": {
		accepted: []string{"Telemetry/default/otel-demo"},
	},
	"samples/ratelimit/local-rate-limit-service.yaml": {
		accepted: []string{"EnvoyFilter/istio-system/filter-local-ratelimit-svc"},
	},
	"samples/tcp-echo/gateway-api/tcp-echo-20-v2.yaml": {
		refused: []string{gatewayAPI("TCPRoute")},
	},
	"samples/tcp-echo/gateway-api/tcp-echo-all-v1.yaml": {
		refused: []string{
			gatewayAPI("Gateway"),
			notIstio("Service", "v1"),
			notIstio("Service", "v1"),
			gatewayAPI("TCPRoute"),
		},
	},
	"samples/tcp-echo/tcp-echo-20-v2.yaml": {
		accepted: []string{"VirtualService/default/tcp-echo"},
	},
	"samples/tcp-echo/tcp-echo-all-v1.yaml": {
		accepted: []string{
			"Gateway/default/tcp-echo-gateway", "DestinationRule/default/tcp-echo-destination",
			"VirtualService/default/tcp-echo",
		},
	},
	"samples/websockets/route.yaml": {
		accepted: []string{"Gateway/default/tornado-gateway", "VirtualService/default/tornado"},
	},
	"tests/testdata/config/authn.yaml": {
		accepted: []string{"PeerAuthentication/default/default"},
	},
	"tests/testdata/config/byon.yaml": {
		accepted: []string{
			"ServiceEntry/testns/byon", "VirtualService/testns/byon", "ServiceEntry/testns/byon-docker",
			"ServiceEntry/testns/wikipedia-range",
		},
	},
	"tests/testdata/config/destination-rule-all.yaml": {
		accepted: []string{"ServiceEntry/testns/destall", "DestinationRule/testns/destall"},
	},
	"tests/testdata/config/destination-rule-fqdn.yaml": {
		accepted: []string{"DestinationRule/testns/fqdn"},
	},
	"tests/testdata/config/destination-rule-locality.yaml": {
		accepted: []string{"DestinationRule/default/locality"},
	},
	"tests/testdata/config/destination-rule-passthrough.yaml": {
		accepted: []string{"DestinationRule/testns/drpassthrough"},
	},
	"tests/testdata/config/destination-rule-ssl.yaml": {
		accepted: []string{"DestinationRule/testns/ssl-simple", "DestinationRule/testns/drprefix"},
	},
	"tests/testdata/config/egressgateway.yaml": {
		accepted: []string{"Gateway/testns/istio-egressgateway"},
	},
	"tests/testdata/config/external_services.yaml": {
		accepted: []string{
			"ServiceEntry/testns/external-svc-extsvc", "DestinationRule/testns/external-service-1",
			"ServiceEntry/testns/external-svc-ports", "ServiceEntry/testns/external-svc-dst",
			"ServiceEntry/testns/external-svc-ep",
		},
	},
	"tests/testdata/config/gateway-all.yaml": {
		accepted: []string{"Gateway/testns/my-gateway"},
	},
	"tests/testdata/config/gateway-tcp-a.yaml": {
		accepted: []string{"Gateway/testns/gateway-a"},
	},
	"tests/testdata/config/ingress.yaml": {
		accepted: []string{"Gateway/testns/istio-ingress", "VirtualService/testns/ingress"},
	},
	"tests/testdata/config/ingressgateway.yaml": {
		accepted: []string{"Gateway/testns/istio-ingressgateway"},
	},
	"tests/testdata/config/none.yaml": {
		accepted: []string{
			"Sidecar/none/default", "ServiceEntry/none/s1tcp", "ServiceEntry/none/s1http",
			"ServiceEntry/none/s2", "ServiceEntry/none/s2dns", "ServiceEntry/none/tcpmeshdns",
			"ServiceEntry/none/tcpmeshstatic", "ServiceEntry/none/tcpmeshstaticint",
			"ServiceEntry/none/https", "VirtualService/none/tls-routing",
		},
		refused: []string{
			notIstio("Service", "v1"),
			notIstio("Deployment", "apps/v1"),
			notIstio("Deployment", "apps/v1"),
		},
	},
	"tests/testdata/config/peer-authn-strict.yaml": {
		accepted: []string{"PeerAuthentication/testns/default"},
	},
	"tests/testdata/config/rule-content-route.yaml": {
		accepted: []string{"VirtualService/testns/headers-route"},
	},
	"tests/testdata/config/rule-default-route-append-headers.yaml": {
		accepted: []string{"ServiceEntry/testns/appendh", "VirtualService/testns/appendh-route"},
	},
	"tests/testdata/config/rule-default-route-cors-policy.yaml": {
		accepted: []string{"ServiceEntry/testns/cors", "VirtualService/testns/cors"},
	},
	"tests/testdata/config/rule-default-route.yaml": {
		accepted: []string{
			"ServiceEntry/testns/c", "VirtualService/testns/default-route-1",
			"VirtualService/testns/default-route-2",
		},
	},
	"tests/testdata/config/rule-fault-injection.yaml": {
		accepted: []string{
			"ServiceEntry/testns/fault", "DestinationRule/testns/fault", "VirtualService/testns/fault",
		},
	},
	"tests/testdata/config/rule-ingressgateway.yaml": {
		accepted: []string{"VirtualService/testns/gateway-bound-route"},
	},
	"tests/testdata/config/rule-redirect-injection.yaml": {
		accepted: []string{"ServiceEntry/testns/redirect", "VirtualService/testns/redirect"},
	},
	"tests/testdata/config/rule-regex-route.yaml": {
		accepted: []string{
			"ServiceEntry/testns/regex-extsvc", "DestinationRule/testns/regex",
			"VirtualService/testns/regex-route",
		},
	},
	"tests/testdata/config/rule-route-via-egressgateway.yaml": {
		accepted: []string{"VirtualService/testns/route-via-egressgateway"},
	},
	"tests/testdata/config/rule-websocket-route.yaml": {
		// websocketUpgrade, removed from Istio's API, is accepted with a warning and dropped.
		accepted: []string{"ServiceEntry/testns/websocket-extsvc", "DestinationRule/testns/websocket",
			"VirtualService/testns/websocket-route", "VirtualService/testns/websocket-route2"},
		warned: []string{
			`VirtualService testns/websocket-route: spec.http[0].websocketUpgrade: field "websocketUpgrade" of HTTPRoute is deprecated: Istio removed it from its API and ignores it (WebSocket upgrades are always allowed); delete it`,
			`VirtualService testns/websocket-route2: spec.http[0].websocketUpgrade: field "websocketUpgrade" of HTTPRoute is deprecated`,
		},
	},
	"tests/testdata/config/rule-weighted-route.yaml": {
		accepted: []string{
			"ServiceEntry/testns/weighted-extsvc", "DestinationRule/testns/c-weighted",
			"VirtualService/testns/c-weighted",
		},
	},
	"tests/testdata/config/se-example-gw.yaml": {
		accepted: []string{
			"Sidecar/exampleegressgw/default", "ServiceEntry/exampleegressgw/workload",
			"ServiceEntry/exampleegressgw/external-svc-httpbin",
			"Gateway/exampleegressgw/istio-egressgateway", "VirtualService/exampleegressgw/gateway-routing",
		},
	},
	"tests/testdata/config/se-example.yaml": {
		accepted: []string{
			"Sidecar/seexamples/default", "ServiceEntry/seexamples/workload",
			"ServiceEntry/seexamples/external-svc-mongocluster",
			"DestinationRule/seexamples/mtls-mongocluster", "ServiceEntry/seexamples/external-svc-https",
			"VirtualService/seexamples/tls-routing",
			"ServiceEntry/seexamples/external-svc-wildcard-example",
			"ServiceEntry/seexamples/unix-domain-socket-example",
			"ServiceEntry/seexamples/external-svc-dns",
		},
	},
	"tests/testdata/config/static-weighted-se.yaml": {
		accepted: []string{"ServiceEntry/default/httpbin"},
	},
	"tests/testdata/config/virtual-service-all.yaml": {
		accepted: []string{"VirtualService/testns/all"},
	},
}

// TestIstioCorpus runs every file of Istio's own sample and test configuration through the path
// `strait apply` takes (Load: Decode, then Validate) and checks each document against corpus: an
// accepted object decodes to what Istio's decoder makes of it; a refused document gets exactly
// one error, naming the file, its line and the object, that says which kind or field Strait does
// not support, or that the object is not Istio configuration.
func TestIstioCorpus(t *testing.T) {
	seen := map[string]bool{}
	err := filepath.WalkDir(corpusDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") {
			return err
		}
		rel, err := filepath.Rel(corpusDir, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		seen[rel] = true
		t.Run(rel, func(t *testing.T) {
			want, ok := corpus[rel]
			if !ok {
				t.Fatal("no expectation in corpus: add this file to the table")
			}
			checkCorpusFile(t, path, want)
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) == 0 {
		t.Fatalf("no YAML files under %s", corpusDir)
	}
	for f := range corpus {
		if !seen[f] {
			t.Errorf("%s: in the table but not in %s", f, corpusDir)
		}
	}
}

func checkCorpusFile(t *testing.T, path string, want corpusWant) {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	objs, errs := Load(path, data)

	var got []string
	var warned []*Error
	for _, o := range objs {
		got = append(got, o.Key().String())
		warned = append(warned, o.Warnings...)
	}
	if strings.Join(got, " ") != strings.Join(want.accepted, " ") {
		t.Errorf("accepted:\n got %q\nwant %q", got, want.accepted)
	}
	if len(warned) != len(want.warned) {
		t.Errorf("got %d warnings, want %d: %v", len(warned), len(want.warned), warned)
	}
	for i, w := range warned {
		if i < len(want.warned) && !strings.Contains(w.Error(), want.warned[i]) {
			t.Errorf("warning %d:\n got %v\nwant it to contain %q", i, w, want.warned[i])
		}
	}

	for i, e := range errs {
		var ce *Error
		if !errors.As(e, &ce) {
			t.Errorf("error %T is not *config.Error: %v", e, e)
			continue
		}
		if ce.Origin != path || ce.Line == 0 || (ce.Name == "" && ce.Doc == 0) {
			t.Errorf("error does not name the file, line and document: %v", e)
		}
		if !(ce.Field == "" && (notYetRE.MatchString(ce.Msg) || notIstioRE.MatchString(ce.Msg)) ||
			ce.Field != "" && (removedFdRE.MatchString(ce.Msg) || proxyFilterRE.MatchString(ce.Msg))) {
			t.Errorf("refused without naming an unsupported kind or field (a misleading error):\n%v", e)
		}
		if i >= len(want.refused) {
			t.Errorf("unexpected error: %v", e)
		} else if !strings.Contains(e.Error(), want.refused[i]) {
			t.Errorf("error %d:\n got %v\nwant it to contain %q", i, e, want.refused[i])
		}
	}
	if len(errs) < len(want.refused) {
		t.Errorf("got %d errors, want %d: %v", len(errs), len(want.refused), errors.Join(errs...))
	}

	docs := splitDocuments(data)
	if len(docs) != len(want.accepted)+len(want.refused) {
		t.Errorf("%d documents, but the table accounts for %d: each document is accepted or refused with one error",
			len(docs), len(want.accepted)+len(want.refused))
	}
	// Accepted documents decode to what Istio's decoder makes of them: nothing is misread.
	for _, doc := range docs {
		kind, spec := kindAndSpec(t, doc.data)
		objs, errs := Load(path, doc.data)
		if len(errs) > 0 || len(objs) != 1 || len(spec) == 0 {
			continue
		}
		if len(objs[0].Warnings) > 0 {
			spec = withoutTolerated(t, spec) // what Kubernetes' pruning leaves for Istio's decoder
		}
		if ref := istioDecode(t, kind, spec); !proto.Equal(objs[0].Spec, ref) {
			t.Errorf("%s: Strait and Istio's decoder differ:\n got %v\nwant %v", objs[0].Key(), objs[0].Spec, ref)
		}
	}
}

// withoutTolerated returns spec without the removed fields Decode drops with a warning (any
// "websocketUpgrade" key, at any depth).
func withoutTolerated(t *testing.T, spec json.RawMessage) json.RawMessage {
	t.Helper()
	var v any
	if err := json.Unmarshal(spec, &v); err != nil {
		t.Fatal(err)
	}
	var strip func(any)
	strip = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			delete(x, "websocketUpgrade")
			delete(x, "websocket_upgrade")
			for _, e := range x {
				strip(e)
			}
		case []any:
			for _, e := range x {
				strip(e)
			}
		}
	}
	strip(v)
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
