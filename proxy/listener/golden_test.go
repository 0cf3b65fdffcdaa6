package listener

import (
	"encoding/json"
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/http_inspector/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/xdspb"
	plistenerv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/listener/v3"
	_ "github.com/strait-mesh/strait/tools/xdstrim/gcpset" // protojson resolves the goldens' Anys in go-control-plane's types
)

// TestControlPlaneGoldenListeners compiles every listener in straitd's golden xDS output (the
// translator's testdata; only the YAML files are read, nothing under controlplane/ is imported),
// so that a field or filter the control plane starts emitting and the proxy does not implement
// shows up here rather than as a NACK in production.
func TestControlPlaneGoldenListeners(t *testing.T) {
	files := testenv.ControlPlaneGoldens(t)
	n := 0
	for _, gf := range files {
		f := gf.Name
		js, err := yaml.YAMLToJSON(gf.YAML)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		var doc struct {
			Listeners []json.RawMessage `json:"listeners"`
		}
		if err := json.Unmarshal(js, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for i, lj := range doc.Listeners {
			var lr listenerv3.Listener
			if err := protojson.Unmarshal(lj, &lr); err != nil {
				t.Errorf("%s listener %d: decoding: %v", f, i, err)
				continue
			}
			if lr.GetApiListener() != nil {
				continue // proxyless gRPC listeners are for grpc-go clients, not strait-proxy
			}
			env := newEnv()
			env.secrets = nil
			if _, err := Compile(xdspb.MustFrom[*plistenerv3.Listener](&lr), env); err != nil && gf.PendingError(err) {
				t.Logf("%s: pending: %v", strings.TrimSuffix(f, ".golden.yaml"), err)
			} else if err != nil {
				t.Errorf("%s: %v", strings.TrimSuffix(f, ".golden.yaml"), err)
			}
			n++
		}
	}
	t.Logf("compiled %d listeners from %d golden files", n, len(files))
}
