package config

import (
	"errors"
	"strings"
	"testing"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/internal/vocab"
)

// mustDecode decodes one document that must decode cleanly.
func mustDecode(t *testing.T, doc string) *Object {
	t.Helper()
	objs, errs := Decode("v.yaml", []byte(doc))
	if len(errs) > 0 || len(objs) != 1 {
		t.Fatalf("decode: %v", errors.Join(errs...))
	}
	return objs[0]
}

// doc builds a document of kind, with the kind's default apiVersion, named ns/obj.
func doc(kind, spec string) string {
	return "apiVersion: " + DefaultAPIVersionFor(Kind(kind)) + "\nkind: " + kind + "\nmetadata: {name: obj, namespace: ns}\nspec:\n" + spec
}

// TestValidateRejects checks semantic rules: each spec must be rejected with an error at field
// whose message contains msg, naming the file and the object.
func TestValidateRejects(t *testing.T) {
	const route = "    route: [{destination: {host: a}}]\n"
	cases := []struct {
		name, kind, spec, field, msg string
	}{
		// VirtualService
		{"vs no routes", "VirtualService", "  hosts: [a]\n", "spec", "at least one of http, tcp or tls"},
		{"vs bad host", "VirtualService", "  hosts: [a..b]\n  http:\n  - route: [{destination: {host: a}}]\n", "spec.hosts[0]", "invalid"},
		{"vs wildcard in middle", "VirtualService", "  hosts: [a.*.com]\n  http:\n  - route: [{destination: {host: a}}]\n", "spec.hosts[0]", "wildcard"},
		{"vs star for mesh", "VirtualService", "  hosts: ['*']\n  http:\n  - route: [{destination: {host: a}}]\n", "spec.hosts[0]", "mesh gateway"},
		{"vs host with namespace", "VirtualService", "  hosts: [ns/a]\n  http:\n  - route: [{destination: {host: a}}]\n", "spec.hosts[0]", "namespace"},
		{"vs duplicate route names", "VirtualService", "  hosts: [a]\n  http:\n  - name: r\n" + route + "  - name: r\n" + route, "spec.http[1].name", "duplicate route name"},
		{"vs route and redirect", "VirtualService", "  hosts: [a]\n  http:\n  - redirect: {uri: /x}\n" + route, "spec.http[0]", "only one of route, redirect"},
		{"vs no action", "VirtualService", "  hosts: [a]\n  http:\n  - match: [{uri: {prefix: /}}]\n", "spec.http[0]", "one of route, redirect"},
		{"vs rewrite with redirect", "VirtualService", "  hosts: [a]\n  http:\n  - redirect: {uri: /x}\n    rewrite: {uri: /y}\n", "spec.http[0].rewrite", "redirect"},
		{"vs bad regex", "VirtualService", "  hosts: [a]\n  http:\n  - match: [{uri: {regex: 'a(b'}}]\n" + route, "spec.http[0].match[0].uri.regex", "invalid regex"},
		{"vs huge regex", "VirtualService", "  hosts: [a]\n  http:\n  - match: [{headers: {x: {regex: '" + strings.Repeat("(a{1000}){1000}", 1) + "'}}}]\n" + route, `spec.http[0].match[0].headers["x"].regex`, ""},
		{"vs uppercase header", "VirtualService", "  hosts: [a]\n  http:\n  - match: [{headers: {X-Foo: {exact: a}}}]\n" + route, `spec.http[0].match[0].headers["X-Foo"]`, "lower case"},
		{"vs bad header name", "VirtualService", "  hosts: [a]\n  http:\n  - match: [{headers: {'a b': {exact: a}}}]\n" + route, `spec.http[0].match[0].headers["a b"]`, "invalid header name"},
		{"vs pseudo header match", "VirtualService", "  hosts: [a]\n  http:\n  - match: [{headers: {':method': {exact: GET}}}]\n" + route, `spec.http[0].match[0].headers[":method"]`, "pseudo-header"},
		{"vs program size", "VirtualService", "  hosts: [a]\n  http:\n  - match: [{uri: {regex: '" + strings.Repeat("[a-z]{1000}", 40) + "'}}]\n" + route, "spec.http[0].match[0].uri.regex", "too large"},
		{"vs empty string match", "VirtualService", "  hosts: [a]\n  http:\n  - match: [{uri: {}}]\n" + route, "spec.http[0].match[0].uri", "one of exact, prefix or regex"},
		{"vs negative weight", "VirtualService", "  hosts: [a]\n  http:\n  - route: [{destination: {host: a}, weight: -1}, {destination: {host: b}, weight: 101}]\n", "spec.http[0].route[0].weight", "negative"},
		{"vs zero total weight", "VirtualService", "  hosts: [a]\n  http:\n  - route: [{destination: {host: a}, weight: 0}, {destination: {host: b}}]\n", "spec.http[0].route", "total weight"},
		{"vs destination star", "VirtualService", "  hosts: [a]\n  http:\n  - route: [{destination: {host: '*'}}]\n", "spec.http[0].route[0].destination.host", "must not be"},
		{"vs bad subset", "VirtualService", "  hosts: [a]\n  http:\n  - route: [{destination: {host: a, subset: V_1}}]\n", "spec.http[0].route[0].destination.subset", "invalid subset"},
		{"vs port zero", "VirtualService", "  hosts: [a]\n  http:\n  - route: [{destination: {host: a, port: {number: 0}}}]\n", "spec.http[0].route[0].destination.port.number", "1-65535"},
		{"vs port too big", "VirtualService", "  hosts: [a]\n  http:\n  - route: [{destination: {host: a, port: {number: 70000}}}]\n", "spec.http[0].route[0].destination.port.number", "1-65535"},
		{"vs timeout too small", "VirtualService", "  hosts: [a]\n  http:\n  - timeout: 0.5ms\n" + route, "spec.http[0].timeout", "1ms"},
		{"vs per try timeout", "VirtualService", "  hosts: [a]\n  http:\n  - retries: {attempts: 2, perTryTimeout: 100us}\n" + route, "spec.http[0].retries.perTryTimeout", "1ms"},
		{"vs retryOn", "VirtualService", "  hosts: [a]\n  http:\n  - retries: {attempts: 2, retryOn: '5xx,bogus'}\n" + route, "spec.http[0].retries.retryOn", "bogus"},
		{"vs retryOn status", "VirtualService", "  hosts: [a]\n  http:\n  - retries: {attempts: 2, retryOn: '5xx,599'}\n" + route, "spec.http[0].retries.retryOn", "599"},
		{"vs negative attempts", "VirtualService", "  hosts: [a]\n  http:\n  - retries: {attempts: -2}\n" + route, "spec.http[0].retries.attempts", "negative"},
		{"vs fault percent", "VirtualService", "  hosts: [a]\n  http:\n  - fault: {abort: {httpStatus: 503, percentage: {value: 150}}}\n" + route, "spec.http[0].fault.abort.percentage.value", "0-100"},
		{"vs fault status", "VirtualService", "  hosts: [a]\n  http:\n  - fault: {abort: {httpStatus: 99}}\n" + route, "spec.http[0].fault.abort.httpStatus", "200-599"},
		{"vs fault no delay", "VirtualService", "  hosts: [a]\n  http:\n  - fault: {delay: {percentage: {value: 5}}}\n" + route, "spec.http[0].fault.delay", "fixedDelay"},
		{"vs fault empty", "VirtualService", "  hosts: [a]\n  http:\n  - fault: {}\n" + route, "spec.http[0].fault", "delay or abort"},
		{"vs grpc status", "VirtualService", "  hosts: [a]\n  http:\n  - fault: {abort: {grpcStatus: NOPE}}\n" + route, "spec.http[0].fault.abort.grpcStatus", "gRPC status"},
		{"vs mirror percentage", "VirtualService", "  hosts: [a]\n  http:\n  - mirror: {host: b}\n    mirrorPercentage: {value: 101}\n" + route, "spec.http[0].mirrorPercentage.value", "0-100"},
		{"vs mirror and mirrors", "VirtualService", "  hosts: [a]\n  http:\n  - mirror: {host: b}\n    mirrors: [{destination: {host: c}}]\n" + route, "spec.http[0].mirrors", "only one of mirror"},
		{"vs cors method", "VirtualService", "  hosts: [a]\n  http:\n  - corsPolicy: {allowMethods: [GET, FETCH]}\n" + route, "spec.http[0].corsPolicy.allowMethods[1]", "not an HTTP method"},
		{"vs cors max age", "VirtualService", "  hosts: [a]\n  http:\n  - corsPolicy: {maxAge: 1.5s}\n" + route, "spec.http[0].corsPolicy.maxAge", "second precision"},
		{"vs cors header", "VirtualService", "  hosts: [a]\n  http:\n  - corsPolicy: {allowHeaders: ['bad header']}\n" + route, "spec.http[0].corsPolicy.allowHeaders[0]", "invalid header name"},
		{"vs redirect code", "VirtualService", "  hosts: [a]\n  http:\n  - redirect: {uri: /x, redirectCode: 200}\n", "spec.http[0].redirect.redirectCode", "not supported"},
		{"vs redirect empty", "VirtualService", "  hosts: [a]\n  http:\n  - redirect: {}\n", "spec.http[0].redirect", "at least one"},
		{"vs direct status", "VirtualService", "  hosts: [a]\n  http:\n  - directResponse: {status: 700}\n", "spec.http[0].directResponse.status", "200-599"},
		{"vs direct and route", "VirtualService", "  hosts: [a]\n  http:\n  - directResponse: {status: 200}\n" + route, "spec.http[0]", "only one of"},
		{"vs rewrite both", "VirtualService", "  hosts: [a]\n  http:\n  - rewrite: {uri: /a, uriRegexRewrite: {match: a, rewrite: b}}\n" + route, "spec.http[0].rewrite", "only one of uri and uriRegexRewrite"},
		{"vs header remove host", "VirtualService", "  hosts: [a]\n  http:\n  - headers: {request: {remove: [Host]}}\n" + route, "spec.http[0].headers.request.remove[0]", "cannot be removed"},
		{"vs header set pseudo", "VirtualService", "  hosts: [a]\n  http:\n  - headers: {request: {set: {':path': /x}}}\n" + route, `spec.http[0].headers.request.set[":path"]`, "pseudo-header"},
		{"vs delegate with hosts gateways", "VirtualService", "  gateways: [gw]\n  http:\n  - route: [{destination: {host: a}}]\n", "spec.gateways", "delegate"},
		{"vs delegate in delegate", "VirtualService", "  http:\n  - delegate: {name: x}\n", "spec.http[0].delegate", "must not delegate again"},
		{"vs delegate and route", "VirtualService", "  hosts: [a]\n  http:\n  - delegate: {name: x}\n" + route, "spec.http[0].delegate", "cannot be combined"},
		{"vs delegate tcp", "VirtualService", "  tcp:\n  - route: [{destination: {host: a}}]\n", "spec", "only http routes"},
		{"vs exportTo", "VirtualService", "  hosts: [a]\n  exportTo: ['*', '.']\n  http:\n" + "  - route: [{destination: {host: a}}]\n", "spec.exportTo", "cannot be combined"},
		{"vs exportTo dup", "VirtualService", "  hosts: [a]\n  exportTo: [x, x]\n  http:\n" + "  - route: [{destination: {host: a}}]\n", "spec.exportTo[1]", "duplicate"},
		{"vs bad gateway ref", "VirtualService", "  hosts: [a]\n  gateways: [Bad/Gw]\n  http:\n" + "  - route: [{destination: {host: a}}]\n", "spec.gateways[0]", "invalid gateway"},
		{"vs tls sni mismatch", "VirtualService", "  hosts: [a.example.com]\n  tls:\n  - match: [{sniHosts: [b.example.com]}]\n    route: [{destination: {host: a}}]\n", "spec.tls[0].match[0].sniHosts[0]", "does not match"},
		{"vs tls no match", "VirtualService", "  hosts: [a.example.com]\n  tls:\n  - route: [{destination: {host: a}}]\n", "spec.tls[0].match", "at least one match"},
		{"vs tcp subnet", "VirtualService", "  hosts: [a]\n  tcp:\n  - match: [{destinationSubnets: [10.0.0.0/33]}]\n    route: [{destination: {host: a}}]\n", "spec.tcp[0].match[0].destinationSubnets[0]", "CIDR"},
		{"vs tcp no route", "VirtualService", "  hosts: [a]\n  tcp:\n  - match: [{port: 80}]\n", "spec.tcp[0].route", "at least one"},
		// DestinationRule
		{"dr no host", "DestinationRule", "  subsets: []\n", "spec.host", "required"},
		{"dr dup subsets", "DestinationRule", "  host: a\n  subsets: [{name: v1}, {name: v1}]\n", "spec.subsets[1].name", "duplicate subset"},
		{"dr subset name", "DestinationRule", "  host: a\n  subsets: [{name: V1}]\n", "spec.subsets[0].name", "invalid subset name"},
		{"dr outlier percent", "DestinationRule", "  host: a\n  trafficPolicy: {outlierDetection: {maxEjectionPercent: 120}}\n", "spec.trafficPolicy.outlierDetection.maxEjectionPercent", "0-100"},
		{"dr outlier interval", "DestinationRule", "  host: a\n  trafficPolicy: {outlierDetection: {interval: 0s}}\n", "spec.trafficPolicy.outlierDetection.interval", "1ms"},
		{"dr local origin", "DestinationRule", "  host: a\n  trafficPolicy: {outlierDetection: {consecutiveLocalOriginFailures: 5}}\n", "spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures", "splitExternalLocalOriginErrors"},
		{"dr pool negative", "DestinationRule", "  host: a\n  trafficPolicy: {connectionPool: {http: {maxRetries: -1}}}\n", "spec.trafficPolicy.connectionPool.http.maxRetries", "negative"},
		{"dr connect timeout", "DestinationRule", "  host: a\n  trafficPolicy: {connectionPool: {tcp: {connectTimeout: 1.5ms}}}\n", "spec.trafficPolicy.connectionPool.tcp.connectTimeout", "millisecond precision"},
		{"dr hash key", "DestinationRule", "  host: a\n  trafficPolicy: {loadBalancer: {consistentHash: {minimumRingSize: 10}}}\n", "spec.trafficPolicy.loadBalancer.consistentHash", "one of httpHeaderName"},
		{"dr maglev prime", "DestinationRule", "  host: a\n  trafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: true, maglev: {tableSize: 1000}}}}\n", "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize", "prime"},
		{"dr cookie name", "DestinationRule", "  host: a\n  trafficPolicy: {loadBalancer: {consistentHash: {httpCookie: {ttl: 1s}}}}\n", "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name", "required"},
		{"dr distribute sum", "DestinationRule", "  host: a\n  trafficPolicy: {loadBalancer: {localityLbSetting: {distribute: [{from: r/z, to: {r/z: 50}}]}}}\n", "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to", "add up to 100"},
		{"dr distribute and failover", "DestinationRule", "  host: a\n  trafficPolicy: {loadBalancer: {localityLbSetting: {distribute: [{from: r, to: {r: 100}}], failover: [{from: a, to: b}]}}}\n", "spec.trafficPolicy.loadBalancer.localityLbSetting", "only one of distribute and failover"},
		{"dr failover same", "DestinationRule", "  host: a\n  trafficPolicy: {loadBalancer: {localityLbSetting: {failover: [{from: a, to: a}]}}}\n", "spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0]", "must differ"},
		{"dr tls mutual", "DestinationRule", "  host: a\n  trafficPolicy: {tls: {mode: MUTUAL}}\n", "spec.trafficPolicy.tls.clientCertificate", "required"},
		{"dr tls credential and files", "DestinationRule", "  host: a\n  trafficPolicy: {tls: {mode: SIMPLE, credentialName: c, caCertificates: /ca.pem}}\n", "spec.trafficPolicy.tls", "cannot be combined with credentialName"},
		{"dr tls istio mutual certs", "DestinationRule", "  host: a\n  trafficPolicy: {tls: {mode: ISTIO_MUTUAL, clientCertificate: /c.pem}}\n", "spec.trafficPolicy.tls", "ISTIO_MUTUAL"},
		{"dr tls skip verify", "DestinationRule", "  host: a\n  trafficPolicy: {tls: {mode: SIMPLE, insecureSkipVerify: true, subjectAltNames: [a]}}\n", "spec.trafficPolicy.tls.insecureSkipVerify", "cannot be combined"},
		{"dr port level dup", "DestinationRule", "  host: a\n  trafficPolicy: {portLevelSettings: [{port: {number: 80}}, {port: {number: 80}}]}\n", "spec.trafficPolicy.portLevelSettings[1].port.number", "duplicate port"},
		{"dr port level no port", "DestinationRule", "  host: a\n  trafficPolicy: {portLevelSettings: [{loadBalancer: {simple: RANDOM}}]}\n", "spec.trafficPolicy.portLevelSettings[0].port", "required"},
		{"dr subset labels", "DestinationRule", "  host: a\n  subsets: [{name: v1, labels: {version: 'bad value!'}}]\n", `spec.subsets[0].labels["version"]`, "invalid label value"},
		{"dr workload selector empty", "DestinationRule", "  host: a\n  workloadSelector: {matchLabels: {}}\n", "spec.workloadSelector.labels", "at least one label"},
		// ServiceEntry
		{"se no hosts", "ServiceEntry", "  ports: [{number: 80, name: http}]\n", "spec.hosts", "at least one host"},
		{"se star host", "ServiceEntry", "  hosts: ['*']\n", "spec.hosts[0]", "not allowed"},
		{"se none with endpoints", "ServiceEntry", "  hosts: [a.com]\n  resolution: NONE\n  endpoints: [{address: 1.2.3.4}]\n", "spec.endpoints", "resolution NONE"},
		{"se static hostname endpoint", "ServiceEntry", "  hosts: [a.com]\n  resolution: STATIC\n  endpoints: [{address: foo.com}]\n", "spec.endpoints[0].address", "must be an IP"},
		{"se dns cidr", "ServiceEntry", "  hosts: [a.com]\n  addresses: [10.0.0.0/8]\n  resolution: DNS\n", "spec.addresses", "CIDR"},
		{"se dns wildcard", "ServiceEntry", "  hosts: ['*.a.com']\n  resolution: DNS\n", "spec.hosts[0]", "needs endpoints"},
		{"se dns rr endpoints", "ServiceEntry", "  hosts: [a.com]\n  resolution: DNS_ROUND_ROBIN\n  endpoints: [{address: b.com}, {address: c.com}]\n", "spec.endpoints", "at most one endpoint"},
		{"se selector and endpoints", "ServiceEntry", "  hosts: [a.com]\n  resolution: STATIC\n  workloadSelector: {labels: {app: a}}\n  endpoints: [{address: 1.2.3.4}]\n", "spec.workloadSelector", "only one of"},
		{"se dup port name", "ServiceEntry", "  hosts: [a.com]\n  ports: [{number: 80, name: http}, {number: 81, name: http}]\n", "spec.ports[1].name", "duplicate port name"},
		{"se dup port number", "ServiceEntry", "  hosts: [a.com]\n  ports: [{number: 80, name: a}, {number: 80, name: b}]\n", "spec.ports[1].number", "duplicate port number"},
		{"se port name missing", "ServiceEntry", "  hosts: [a.com]\n  ports: [{number: 80}]\n", "spec.ports[0].name", "required"},
		{"se protocol", "ServiceEntry", "  hosts: [a.com]\n  ports: [{number: 80, name: a, protocol: SMTPX}]\n", "spec.ports[0].protocol", "unsupported protocol"},
		{"se bad address", "ServiceEntry", "  hosts: [a.com]\n  addresses: [not-an-ip]\n", "spec.addresses[0]", "not an IP"},
		{"se endpoint port name", "ServiceEntry", "  hosts: [a.com]\n  ports: [{number: 80, name: http}]\n  resolution: STATIC\n  endpoints: [{address: 1.2.3.4, ports: {grpc: 90}}]\n", `spec.endpoints[0].ports["grpc"]`, "not a port"},
		// WorkloadEntry, WorkloadGroup
		{"we no address", "WorkloadEntry", "  labels: {app: a}\n", "spec.address", "required"},
		{"we bad address", "WorkloadEntry", "  address: 'not an address'\n", "spec.address", "not an IP"},
		{"we port", "WorkloadEntry", "  address: 1.2.3.4\n  ports: {http: 0}\n", `spec.ports["http"]`, "1-65535"},
		{"wg template address", "WorkloadGroup", "  template: {address: 1.2.3.4}\n", "spec.template.address", "must not be set"},
		{"wg probe", "WorkloadGroup", "  template: {}\n  probe: {periodSeconds: 1}\n", "spec.probe", "one of httpGet"},
		// Sidecar
		{"sidecar egress host form", "Sidecar", "  egress: [{hosts: [foo.com]}]\n", "spec.egress[0].hosts[0]", "namespace/dnsName"},
		{"sidecar egress no hosts", "Sidecar", "  egress: [{port: {number: 80, name: http, protocol: HTTP}}]\n", "spec.egress[0].hosts", "at least one host"},
		{"sidecar egress bad ns", "Sidecar", "  egress: [{hosts: [Bad_NS/foo.com]}]\n", "spec.egress[0].hosts[0]", "namespace"},
		{"sidecar two catch-all", "Sidecar", "  egress: [{hosts: ['./*']}, {hosts: ['*/*']}]\n", "spec.egress[1]", "only one egress listener"},
		{"sidecar ingress dup", "Sidecar", "  ingress: [{port: {number: 80, name: a, protocol: HTTP}}, {port: {number: 80, name: b, protocol: HTTP}}]\n", "spec.ingress[1].port.number", "duplicate ingress port"},
		{"sidecar default endpoint", "Sidecar", "  ingress: [{port: {number: 80, name: a, protocol: HTTP}, defaultEndpoint: '10.0.0.1:80'}]\n", "spec.ingress[0].defaultEndpoint", "127.0.0.1"},
		{"sidecar egress proxy mode", "Sidecar", "  outboundTrafficPolicy: {mode: REGISTRY_ONLY, egressProxy: {host: p, port: {number: 80}}}\n", "spec.outboundTrafficPolicy.egressProxy", "ALLOW_ANY"},
		// Gateway
		{"gw no servers", "Gateway", "  selector: {istio: ingressgateway}\n", "spec.servers", "at least one server"},
		{"gw no port name", "Gateway", "  servers: [{port: {number: 80, protocol: HTTP}, hosts: ['*']}]\n", "spec.servers[0].port.name", "required"},
		{"gw dup port name", "Gateway", "  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}, {port: {number: 81, name: http, protocol: HTTP}, hosts: ['*']}]\n", "spec.servers[1].port.name", "duplicate port name"},
		{"gw https no tls", "Gateway", "  servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*']}]\n", "spec.servers[0].tls", "required"},
		{"gw simple no creds", "Gateway", "  servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: SIMPLE}}]\n", "spec.servers[0].tls", "needs credentialName"},
		{"gw mutual no ca", "Gateway", "  servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: MUTUAL, serverCertificate: /c, privateKey: /k}}]\n", "spec.servers[0].tls.caCertificates", "needs caCertificates"},
		{"gw key without cert", "Gateway", "  servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: SIMPLE, privateKey: /k}}]\n", "spec.servers[0].tls.serverCertificate", "required"},
		{"gw tls on http", "Gateway", "  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*'], tls: {mode: SIMPLE, credentialName: c}}]\n", "spec.servers[0].tls", "only for HTTPS and TLS"},
		{"gw bad host", "Gateway", "  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['ns/a/b']}]\n", "spec.servers[0].hosts[0]", "namespace/dnsName"},
		{"gw bad protocol", "Gateway", "  servers: [{port: {number: 80, name: http, protocol: FTP}, hosts: ['*']}]\n", "spec.servers[0].port.protocol", "unsupported protocol"},
		{"gw versions", "Gateway", "  servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: SIMPLE, credentialName: c, minProtocolVersion: TLSV1_3, maxProtocolVersion: TLSV1_2}}]\n", "spec.servers[0].tls.minProtocolVersion", "above"},
		// PeerAuthentication
		{"pa port level without selector", "PeerAuthentication", "  mtls: {mode: STRICT}\n  portLevelMtls: {8080: {mode: DISABLE}}\n", "spec.portLevelMtls", "portLevelMtls requires selector"},
		{"pa port level empty selector", "PeerAuthentication", "  selector: {matchLabels: {}}\n  portLevelMtls: {8080: {mode: DISABLE}}\n", "spec.portLevelMtls", "portLevelMtls requires selector"},
		{"pa port level empty", "PeerAuthentication", "  selector: {matchLabels: {app: a}}\n  portLevelMtls: {}\n", "spec.portLevelMtls", "at least one port"},
		{"pa port zero", "PeerAuthentication", "  selector: {matchLabels: {app: a}}\n  portLevelMtls: {0: {mode: DISABLE}}\n", `spec.portLevelMtls["0"]`, "1-65535"},
		{"pa port too big", "PeerAuthentication", "  selector: {matchLabels: {app: a}}\n  portLevelMtls: {65536: {mode: DISABLE}}\n", `spec.portLevelMtls["65536"]`, "1-65535"},
		{"pa selector wildcard value", "PeerAuthentication", "  selector: {matchLabels: {app: 'a*'}}\n", `spec.selector.matchLabels["app"]`, "wildcards"},
		{"pa selector wildcard key", "PeerAuthentication", "  selector: {matchLabels: {'a*': b}}\n", `spec.selector.matchLabels["a*"]`, "wildcards"},
		{"pa selector empty key", "PeerAuthentication", "  selector: {matchLabels: {'': b}}\n", "spec.selector.matchLabels", "empty label key"},
		{"pa selector bad key", "PeerAuthentication", "  selector: {matchLabels: {'a b': c}}\n", `spec.selector.matchLabels["a b"]`, "invalid label"},
		{"pa selector bad value", "PeerAuthentication", "  selector: {matchLabels: {app: 'a b'}}\n", `spec.selector.matchLabels["app"]`, "invalid label value"},
		{"pa selector long value", "PeerAuthentication", "  selector: {matchLabels: {app: " + strings.Repeat("a", 64) + "}}\n", `spec.selector.matchLabels["app"]`, "at most 63"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := mustDecode(t, doc(tc.kind, tc.spec))
			err := Validate(o)
			if err == nil {
				t.Fatal("accepted")
			}
			var found bool
			for _, e := range Errors(err) {
				var ce *Error
				if !errors.As(e, &ce) {
					t.Fatalf("%T is not *config.Error: %v", e, e)
				}
				msg := e.Error()
				if ce.Field == tc.field && strings.Contains(msg, tc.msg) && strings.HasPrefix(msg, "v.yaml: "+tc.kind+" ns/obj: "+tc.field+": ") {
					found = true
				}
			}
			if !found {
				t.Errorf("want error at %q containing %q, got:\n%v", tc.field, tc.msg, err)
			}
		})
	}
}

// everyRetryCondition lists every retry condition vocab knows, as a retryOn value.
func everyRetryCondition() string {
	var on vocab.RetryOn
	for _, c := range vocab.RetryConditions() {
		on |= c.On
	}
	return on.String()
}

func TestValidateAccepts(t *testing.T) {
	const route = "    route: [{destination: {host: a}}]\n"
	cases := []struct{ name, kind, spec string }{
		{"vs relative weights", "VirtualService", "  hosts: [a]\n  http:\n  - route: [{destination: {host: a}, weight: 200}, {destination: {host: b}, weight: 0}]\n"},
		{"vs wildcard prefix", "VirtualService", "  hosts: ['*.example.com', '*foo.com', 10.0.0.1]\n  http:\n  - route: [{destination: {host: a}}]\n"},
		{"vs star on gateway", "VirtualService", "  hosts: ['*']\n  gateways: [istio-system/gw, gw.ns.svc.cluster.local]\n  http:\n  - route: [{destination: {host: a}}]\n"},
		{"vs delegate", "VirtualService", "  http:\n  - route: [{destination: {host: a}}]\n"},
		{"vs root delegate", "VirtualService", "  hosts: [a]\n  http:\n  - delegate: {name: child, namespace: other}\n"},
		{"vs zero timeout", "VirtualService", "  hosts: [a]\n  http:\n  - timeout: 0s\n" + route},
		{"vs header presence", "VirtualService", "  hosts: [a]\n  http:\n  - match: [{headers: {x-a: {}}}]\n" + route},
		{"vs retryOn every condition", "VirtualService", "  hosts: [a]\n  http:\n  - retries: {attempts: 2, retryOn: '" + everyRetryCondition() + ",503,429'}\n" + route},
		{"dr wildcard", "DestinationRule", "  host: '*.example.com'\n"},
		{"se static selector", "ServiceEntry", "  hosts: [a.com]\n  resolution: STATIC\n  workloadSelector: {labels: {app: a}}\n  ports: [{number: 80, name: http, protocol: http}]\n"},
		{"se none cidr", "ServiceEntry", "  hosts: ['*.a.com']\n  addresses: [10.0.0.0/8]\n  resolution: NONE\n"},
		{"se unix", "ServiceEntry", "  hosts: [a.com]\n  resolution: STATIC\n  endpoints: [{address: 'unix:///var/run/a.sock'}]\n"},
		{"we network only", "WorkloadEntry", "  network: net2\n"},
		{"sidecar empty", "Sidecar", "  {}\n"},
		{"gw passthrough", "Gateway", "  servers: [{port: {number: 443, name: tls, protocol: TLS}, hosts: ['*'], tls: {mode: PASSTHROUGH}}]\n"},
		{"gw istio mutual", "Gateway", "  servers: [{port: {number: 15443, name: tls, protocol: TLS}, hosts: ['*'], tls: {mode: ISTIO_MUTUAL}}]\n"},
		{"pa empty", "PeerAuthentication", "  {}\n"},
		{"pa namespace strict", "PeerAuthentication", "  mtls: {mode: STRICT}\n"},
		{"pa every mode", "PeerAuthentication", "  selector: {matchLabels: {app: a}}\n  mtls: {mode: UNSET}\n  portLevelMtls: {1: {mode: DISABLE}, 80: {mode: PERMISSIVE}, 443: {mode: STRICT}, 65535: {mode: UNSET}, 8080: {}}\n"},
		{"pa empty selector", "PeerAuthentication", "  selector: {matchLabels: {}}\n  mtls: {mode: PERMISSIVE}\n"},
		{"pa mode by number", "PeerAuthentication", "  mtls: {mode: 3}\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := Validate(mustDecode(t, doc(tc.kind, tc.spec))); err != nil {
				t.Errorf("rejected: %v", err)
			}
		})
	}
}

func TestValidateEnvelope(t *testing.T) {
	if err := Validate(nil); err == nil {
		t.Error("nil object accepted")
	}
	o := &Object{Kind: VirtualService, Meta: Meta{Name: "x", Namespace: "ns"}, Spec: NewSpec(Gateway)}
	if err := Validate(o); err == nil || !strings.Contains(err.Error(), "spec is") {
		t.Errorf("mismatched spec: %v", err)
	}
	o = &Object{Kind: "Pod", Meta: Meta{Name: "x", Namespace: "ns"}}
	if err := Validate(o); err == nil || !strings.Contains(err.Error(), "unsupported kind") {
		t.Errorf("bad kind: %v", err)
	}
}

// TestValidateNilParts checks that specs built in code (not decoded) with nil list entries are
// rejected, not a panic.
func TestValidateNilParts(t *testing.T) {
	objs := []*Object{
		{Kind: VirtualService, Meta: Meta{Name: "a", Namespace: "ns"}, Spec: &networking.VirtualService{
			Hosts: []string{"a"}, Http: []*networking.HTTPRoute{nil, {Match: []*networking.HTTPMatchRequest{nil}, Route: []*networking.HTTPRouteDestination{nil, {}}, Mirrors: []*networking.HTTPMirrorPolicy{nil}, CorsPolicy: &networking.CorsPolicy{AllowOrigins: []*networking.StringMatch{nil}}}},
			Tcp: []*networking.TCPRoute{nil, {Match: []*networking.L4MatchAttributes{nil}}}, Tls: []*networking.TLSRoute{nil, {Match: []*networking.TLSMatchAttributes{nil}}},
		}},
		{Kind: DestinationRule, Meta: Meta{Name: "a", Namespace: "ns"}, Spec: &networking.DestinationRule{
			Host: "a", Subsets: []*networking.Subset{nil}, TrafficPolicy: &networking.TrafficPolicy{
				PortLevelSettings: []*networking.TrafficPolicy_PortTrafficPolicy{nil, {}},
				LoadBalancer: &networking.LoadBalancerSettings{LocalityLbSetting: &networking.LocalityLoadBalancerSetting{
					Distribute: []*networking.LocalityLoadBalancerSetting_Distribute{nil}, Failover: []*networking.LocalityLoadBalancerSetting_Failover{nil}}},
			}}},
		{Kind: ServiceEntry, Meta: Meta{Name: "a", Namespace: "ns"}, Spec: &networking.ServiceEntry{Hosts: []string{"a.com"}, Ports: []*networking.ServicePort{nil}, Endpoints: []*networking.WorkloadEntry{nil}}},
		{Kind: Gateway, Meta: Meta{Name: "a", Namespace: "ns"}, Spec: &networking.Gateway{Servers: []*networking.Server{nil, {}}}},
		{Kind: Sidecar, Meta: Meta{Name: "a", Namespace: "ns"}, Spec: &networking.Sidecar{Ingress: []*networking.IstioIngressListener{nil}, Egress: []*networking.IstioEgressListener{nil}}},
		{Kind: WorkloadGroup, Meta: Meta{Name: "a", Namespace: "ns"}, Spec: &networking.WorkloadGroup{Probe: &networking.ReadinessProbe{HealthCheckMethod: &networking.ReadinessProbe_HttpGet{}}}},
	}
	for _, o := range objs {
		err := Validate(o)
		if err == nil {
			t.Errorf("%s accepted", o.Key())
			continue
		}
		if strings.Contains(err.Error(), "internal error") {
			t.Errorf("%s: %v", o.Key(), err)
		}
	}
	typedNil := &Object{Kind: Sidecar, Meta: Meta{Name: "a", Namespace: "ns"}, Spec: (*networking.Sidecar)(nil)}
	if err := Validate(typedNil); err == nil || !strings.Contains(err.Error(), "spec is required") {
		t.Errorf("typed nil spec: %v", err)
	}
	for _, w := range ValidateSet(append(objs, nil, &Object{Kind: VirtualService}, typedNil)) {
		if strings.Contains(w.Error(), "internal error") {
			t.Error(w)
		}
	}
}
