package route_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	proxyroute "github.com/strait-mesh/strait/proxy/route"
	"github.com/strait-mesh/strait/proxy/xdspb"
	proutev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
)

// proxyGaps are Envoy fields the control plane emits for Istio features that strait-proxy does
// not implement yet (it NACKs them, naming the field). A rejection for any other field fails the
// test; a gap that no longer occurs is logged so the entry can be removed.
var proxyGaps = map[string]string{
	".stat_prefix":                 "HTTPMatchRequest.statPrefix (per-route stats)",
	".retry_policy.retry_priority": "HTTPRetry.retryRemoteLocalities (previous_priorities)",
}

// TestGoldenCompilesInProxy compiles every route configuration of the golden files with
// strait-proxy's route compiler: the control plane must not emit a field the proxy would NACK.
func TestGoldenCompilesInProxy(t *testing.T) {
	seen := map[string]bool{}
	files, err := filepath.Glob("testdata/*.golden.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var entries []struct {
			Generate string         `json:"generate"`
			Resource map[string]any `json:"resource"`
		}
		if err := yaml.Unmarshal(data, &entries); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, e := range entries {
			if e.Resource == nil {
				continue
			}
			j, err := yaml.Marshal(e.Resource)
			if err != nil {
				t.Fatal(err)
			}
			js, err := yaml.YAMLToJSON(j)
			if err != nil {
				t.Fatal(err)
			}
			rc := &routev3.RouteConfiguration{}
			if err := protojson.Unmarshal(js, rc); err != nil {
				t.Fatalf("%s %s: %v", f, e.Generate, err)
			}
			if strings.HasPrefix(e.Generate, "proxyless") {
				continue // consumed by gRPC's xDS client, not strait-proxy
			}
			if _, err := proxyroute.Compile(xdspb.MustFrom[*proutev3.RouteConfiguration](rc)); err != nil {
				gap := ""
				for field := range proxyGaps {
					if strings.Contains(err.Error(), field+":") {
						gap = field
					}
				}
				if gap == "" {
					t.Errorf("%s %s: strait-proxy rejects it: %v", filepath.Base(f), e.Generate, err)
					continue
				}
				seen[gap] = true
				t.Logf("%s %s: known strait-proxy gap (%s): %v", filepath.Base(f), e.Generate, proxyGaps[gap], err)
				// Without the gap fields, nothing else may be rejected.
				stripGaps(rc)
				if _, err := proxyroute.Compile(xdspb.MustFrom[*proutev3.RouteConfiguration](rc)); err != nil {
					t.Errorf("%s %s: strait-proxy rejects it: %v", filepath.Base(f), e.Generate, err)
				}
			}
		}
	}
	for field, what := range proxyGaps {
		if !seen[field] {
			t.Logf("strait-proxy no longer rejects %s (%s): remove it from proxyGaps", field, what)
		}
	}
}

// stripGaps clears the fields listed in proxyGaps.
func stripGaps(rc *routev3.RouteConfiguration) {
	for _, vh := range rc.VirtualHosts {
		for _, r := range vh.Routes {
			r.StatPrefix = ""
			if rp := r.GetRoute().GetRetryPolicy(); rp != nil {
				rp.RetryPriority = nil
			}
		}
	}
}
