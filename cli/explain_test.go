package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	"github.com/strait-mesh/strait/internal/testenv"
)

// TestExplainGolden runs strait explain over the listeners straitd generates for the
// authorization golden case (controlplane/translate/testdata/authz-policies), saved as a config
// dump: the decisions and the policies named are the proxy's engine's over istiod-shaped RBAC.
func TestExplainGolden(t *testing.T) {
	var golden []byte
	for _, g := range testenv.ControlPlaneGoldens(t) {
		if g.Name == "authz-policies.golden.yaml" {
			golden = g.YAML
		}
	}
	if golden == nil {
		t.Fatal("no authz-policies golden")
	}
	var doc struct {
		Listeners []json.RawMessage `json:"listeners"`
	}
	if err := yaml.Unmarshal(golden, &doc); err != nil {
		t.Fatal(err)
	}
	dump := &adminv3.ListenersConfigDump{}
	for _, raw := range doc.Listeners {
		var l listenerv3.Listener
		if err := protojson.Unmarshal(raw, &l); err != nil {
			t.Fatal(err)
		}
		dump.StaticListeners = append(dump.StaticListeners, &adminv3.ListenersConfigDump_StaticListener{Listener: testenv.MustAny(t, &l)})
	}
	b, err := protojson.Marshal(&adminv3.ConfigDump{Configs: []*anypb.Any{testenv.MustAny(t, dump)}})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "config_dump.json")
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		golden string
		args   []string
		denied bool
	}{
		{"explain-allowed", []string{"--principal", "cluster.local/ns/foo/sa/sleep", "--path", "/status/200", "-H", "x-version: v1",
			"--host", "httpbin.foo.svc.cluster.local", "--source-ip", "10.1.2.3"}, false},
		{"explain-denied", []string{"--principal", "cluster.local/ns/bar/sa/app", "--method", "POST", "--path", "/admin/x",
			"--host", "httpbin.foo.svc.cluster.local"}, true},
		// rule[0] excludes sa/blocked, but rule[1] ({}) admits everyone.
		{"explain-other-rule", []string{"--principal", "cluster.local/ns/foo/sa/blocked", "--path", "/status/200",
			"--host", "httpbin.foo.svc.cluster.local"}, false},
		{"explain-refused", []string{"--method", "get", "--path", "/status/200"}, true},
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		code := Run(t.Context(), append([]string{"explain", "--file", file, "--port", "8000"}, c.args...), nil, &out, &errb)
		if (code != 0) != c.denied {
			t.Errorf("%s: exit %d, want denied=%v: %s", c.golden, code, c.denied, errb.String())
		}
		testenv.Golden(t, filepath.Join("testdata", c.golden+".golden"), out.String(), *update)
	}
}
