package route_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	meshconfig "istio.io/api/mesh/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"
	"sigs.k8s.io/yaml"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/registry"
	"github.com/strait-mesh/strait/controlplane/translate/route"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.yaml from the current output")

// goldenInput is the schema of testdata/NAME.input.yaml.
type goldenInput struct {
	Proxy route.Proxy `json:"proxy"`
	// Unreachable lists "host:port" service ports the proxy may not reach (Inputs.Reaches).
	Unreachable  []string            `json:"unreachable"`
	Mesh         json.RawMessage     `json:"mesh"` // MeshConfig, protojson
	DomainSuffix string              `json:"domainSuffix"`
	Services     []*registry.Service `json:"services"`
	// Config is multi-document Istio YAML: VirtualService, DestinationRule, Gateway.
	Config   string `json:"config"`
	Generate struct {
		Outbound   []uint32 `json:"outbound"`
		Gateway    []uint32 `json:"gateway"`
		GatewayTLS []struct {
			Gateway string `json:"gateway"` // namespace/name
			Server  int    `json:"server"`  // index in spec.servers
		} `json:"gatewayTLS"`
		Inbound   []uint32 `json:"inbound"`
		Proxyless []string `json:"proxyless"`
		TCP       []l4Req  `json:"tcp"`
		TLS       []l4Req  `json:"tls"`
	} `json:"generate"`
}

type l4Req struct {
	Host    string `json:"host"`
	Port    uint32 `json:"port"`
	Gateway string `json:"gateway"`
}

func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.input.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) == 0 {
		t.Fatal("no testdata/*.input.yaml")
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".input.yaml")
		t.Run(name, func(t *testing.T) {
			got := runGolden(t, in)
			goldenPath := filepath.Join("testdata", name+".golden.yaml")
			if *update {
				if err := os.WriteFile(goldenPath, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(goldenPath)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("output differs from %s (run with -update and review the diff):\n%s", goldenPath, diffLines(string(want), string(got)))
			}
		})
	}
}

// runGolden builds the inputs of one case, generates everything it asks for, validates every
// resource and renders the result as YAML.
func runGolden(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var gi goldenInput
	if err := yaml.UnmarshalStrict(data, &gi); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	in := route.Inputs{Proxy: gi.Proxy, DomainSuffix: gi.DomainSuffix, Services: gi.Services}
	if len(gi.Unreachable) > 0 {
		in.Reaches = func(svc *registry.Service, port uint32) bool {
			for _, u := range gi.Unreachable {
				if u == fmt.Sprintf("%s:%d", svc.Hostname, port) {
					return false
				}
			}
			return true
		}
	}
	if len(gi.Mesh) > 0 && string(gi.Mesh) != "null" {
		in.Mesh = &meshconfig.MeshConfig{}
		if err := protojson.Unmarshal(gi.Mesh, in.Mesh); err != nil {
			t.Fatalf("mesh: %v", err)
		}
	}
	objs := decodeConfig(t, gi.Config)
	var drs []*config.Object
	var allVS []*config.Object
	for _, o := range objs {
		switch o.Kind {
		case config.VirtualService:
			in.VirtualServices = append(in.VirtualServices, o)
			allVS = append(allVS, o)
		case config.DestinationRule:
			drs = append(drs, o)
		case config.Gateway:
			in.Gateways = append(in.Gateways, o)
		}
	}
	suffix := gi.DomainSuffix
	if suffix == "" {
		suffix = route.DefaultDomainSuffix
	}
	in.DestinationRule = func(host string) *networking.DestinationRule {
		for _, o := range drs {
			dr := o.Spec.(*networking.DestinationRule)
			h := dr.Host
			if !strings.Contains(h, ".") {
				h += "." + o.Namespace + ".svc." + suffix
			}
			if h == host {
				return dr
			}
		}
		return nil
	}
	in.Delegate = func(name, ns string) *config.Object {
		for _, o := range allVS {
			if o.Name == name && o.Namespace == ns {
				return o
			}
		}
		return nil
	}
	b, err := route.New(in)
	if err != nil {
		t.Fatal(err)
	}

	var out []map[string]any
	add := func(what string, m proto.Message, err error) {
		entry := map[string]any{"generate": what}
		if m != nil && !isNilMessage(m) {
			if v, ok := m.(interface{ Validate() error }); ok {
				if verr := v.Validate(); verr != nil {
					t.Errorf("%s: Validate: %v", what, verr)
				}
			}
			entry["resource"] = protoToAny(t, m)
		}
		if err != nil {
			entry["errors"] = strings.Split(err.Error(), "\n")
		}
		out = append(out, entry)
	}
	for _, p := range gi.Generate.Outbound {
		rc, err := b.Outbound(p)
		add(fmt.Sprintf("outbound %d", p), rc, err)
	}
	for _, p := range gi.Generate.Gateway {
		rc, err := b.Gateway(p)
		add(fmt.Sprintf("gateway %d", p), rc, err)
	}
	for _, g := range gi.Generate.GatewayTLS {
		var gw *config.Object
		for _, o := range in.Gateways {
			if o.Namespace+"/"+o.Name == g.Gateway {
				gw = o
			}
		}
		if gw == nil {
			t.Fatalf("gatewayTLS: no gateway %s", g.Gateway)
		}
		rc, err := b.GatewayTLS(gw, gw.Spec.(*networking.Gateway).Servers[g.Server])
		add(fmt.Sprintf("gatewayTLS %s server %d", g.Gateway, g.Server), rc, err)
	}
	for _, p := range gi.Generate.Inbound {
		add(fmt.Sprintf("inbound %d", p), route.Inbound(p), nil)
	}
	for _, target := range gi.Generate.Proxyless {
		rc, err := b.Proxyless(target)
		add("proxyless "+target, rc, err)
	}
	for _, kind := range []string{"tcp", "tls"} {
		reqs := gi.Generate.TCP
		if kind == "tls" {
			reqs = gi.Generate.TLS
		}
		for _, r := range reqs {
			var routes []route.L4Route
			var err error
			if kind == "tcp" {
				routes, err = b.TCPRoutes(r.Host, r.Port, r.Gateway)
			} else {
				routes, err = b.TLSRoutes(r.Host, r.Port, r.Gateway)
			}
			entry := map[string]any{"generate": fmt.Sprintf("%s %s port %d gateway %s", kind, r.Host, r.Port, r.Gateway)}
			var list []any
			for _, lr := range routes {
				if err := lr.Match.Validate(); err != nil {
					t.Errorf("%s: match Validate: %v", lr.Source, err)
				}
				if err := lr.TCPProxy.Validate(); err != nil {
					t.Errorf("%s: tcp_proxy Validate: %v", lr.Source, err)
				}
				list = append(list, map[string]any{"source": lr.Source, "match": protoToAny(t, lr.Match), "tcpProxy": protoToAny(t, lr.TCPProxy)})
			}
			entry["l4Routes"] = list
			if err != nil {
				entry["errors"] = strings.Split(err.Error(), "\n")
			}
			out = append(out, entry)
		}
	}
	y, err := yaml.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	return y
}

func isNilMessage(m proto.Message) bool {
	rc, ok := m.(*routev3.RouteConfiguration)
	return ok && rc == nil
}

// protoToAny renders a message as protojson, then as a generic value so that YAML output is
// stable (sorted keys, no protojson whitespace randomisation).
func protoToAny(t *testing.T, m proto.Message) any {
	t.Helper()
	j, err := protojson.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(j, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// decodeConfig decodes multi-document Istio YAML strictly into config objects (test-local: the
// config package's decoder is not this package's dependency).
func decodeConfig(t *testing.T, text string) []*config.Object {
	t.Helper()
	var out []*config.Object
	for i, doc := range strings.Split(text, "\n---") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var env struct {
			APIVersion string          `json:"apiVersion"`
			Kind       string          `json:"kind"`
			Metadata   config.Meta     `json:"metadata"`
			Spec       json.RawMessage `json:"spec"`
		}
		if err := yaml.UnmarshalStrict([]byte(doc), &env); err != nil {
			t.Fatalf("config document %d: %v", i, err)
		}
		var spec proto.Message
		switch config.Kind(env.Kind) {
		case config.VirtualService:
			spec = &networking.VirtualService{}
		case config.DestinationRule:
			spec = &networking.DestinationRule{}
		case config.Gateway:
			spec = &networking.Gateway{}
		default:
			t.Fatalf("config document %d: unsupported kind %q", i, env.Kind)
		}
		if err := protojson.Unmarshal(env.Spec, spec); err != nil {
			t.Fatalf("config document %d (%s %s): %v", i, env.Kind, env.Metadata.Name, err)
		}
		if env.Metadata.Namespace == "" {
			env.Metadata.Namespace = "default"
		}
		out = append(out, &config.Object{Kind: config.Kind(env.Kind), APIVersion: env.APIVersion, Meta: env.Metadata, Spec: spec, Origin: "test"})
	}
	return out
}

// diffLines shows the first differing lines of two texts.
func diffLines(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	n := 0
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n- %s\n+ %s\n", i+1, wl, gl)
			if n++; n == 10 {
				break
			}
		}
	}
	return b.String()
}
