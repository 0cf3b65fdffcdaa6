package config

import (
	"strings"
	"testing"
)

func TestValidateSet(t *testing.T) {
	in := `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  gateways: [mesh, bookinfo/ingress, missing-gw]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 25}
    - {destination: {host: reviews.bookinfo.svc.cluster.local, subset: v9}, weight: 25}
    - {destination: {host: ratings, subset: v1}, weight: 25}
    - {destination: {host: api.example.com, subset: eu}, weight: 25}
  - delegate: {name: nowhere}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-dup, namespace: bookinfo}
spec:
  hosts: [reviews.bookinfo.svc.cluster.local]
  http:
  - route:
    - destination: {host: reviews}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews2, namespace: bookinfo}
spec:
  host: reviews.bookinfo.svc.cluster.local
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: example, namespace: bookinfo}
spec:
  host: "*.example.com"
  subsets: [{name: eu, labels: {region: eu}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: ingress, namespace: bookinfo}
spec:
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: a, namespace: bookinfo}
spec: {}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: b, namespace: bookinfo}
spec: {}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: bookinfo}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: permissive, namespace: bookinfo}
spec: {selector: {matchLabels: {}}, mtls: {mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: reviews, namespace: bookinfo}
spec: {selector: {matchLabels: {app: reviews}}, mtls: {mode: DISABLE}}
`
	objs, errs := Decode("set.yaml", []byte(in))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	for _, o := range objs {
		if err := Validate(o); err != nil {
			t.Fatal(err)
		}
	}
	got := ValidateSet(objs)
	want := []string{
		`DestinationRule bookinfo/reviews2: spec.host: DestinationRule reviews in the same namespace is also for host`,
		`PeerAuthentication bookinfo/permissive: spec.selector: namespace bookinfo has more than one PeerAuthentication without selector (also default)`,
		`Sidecar bookinfo/b: spec.workloadSelector: namespace bookinfo has more than one Sidecar`,
		`VirtualService bookinfo/reviews: spec.gateways[2]: gateway "missing-gw" not found`,
		`VirtualService bookinfo/reviews: spec.http[0].route[1].destination.subset: subset "v9" is not defined`,
		`VirtualService bookinfo/reviews: spec.http[0].route[2].destination.subset: subset "v1": no DestinationRule for host "ratings"`,
		`VirtualService bookinfo/reviews: spec.http[1].delegate: delegate VirtualService bookinfo/nowhere not found`,
		`VirtualService bookinfo/reviews-dup: spec.hosts[0]: VirtualService bookinfo/reviews also defines host`,
	}
	if len(got) != len(want) {
		t.Errorf("got %d warnings, want %d:\n%v", len(got), len(want), got)
	}
	for i := range min(len(got), len(want)) {
		if !IsWarning(got[i]) {
			t.Errorf("%v is not a *Warning", got[i])
		}
		if !strings.HasPrefix(got[i].Error(), "warning: set.yaml: ") || !strings.Contains(got[i].Error(), want[i]) {
			t.Errorf("warning %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
}
