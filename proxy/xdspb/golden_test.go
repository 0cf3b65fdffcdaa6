package xdspb_test

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"

	gcpclusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	gcpendpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	gcplistenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	gcproutev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	gcptlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/xdspb"
	// The go-control-plane types strait-proxy links, for the Anys in the golden outputs.
	_ "github.com/strait-mesh/strait/tools/xdstrim/gcpset"
)

// goldenKinds maps a golden file's top-level key to the go-control-plane resource type.
var goldenKinds = map[string]func() proto.Message{
	"clusters":     func() proto.Message { return new(gcpclusterv3.Cluster) },
	"endpoints":    func() proto.Message { return new(gcpendpointv3.ClusterLoadAssignment) },
	"listeners":    func() proto.Message { return new(gcplistenerv3.Listener) },
	"routes":       func() proto.Message { return new(gcproutev3.RouteConfiguration) },
	"virtualHosts": func() proto.Message { return new(gcproutev3.VirtualHost) },
	"secrets":      func() proto.Message { return new(gcptlsv3.Secret) },
}

// findings is what decoding one golden file into the trimmed types met.
type findings struct {
	pruned  map[string]bool // "Message.field" present in the output but left out of the trimmed types
	noTypes map[string]bool // Any type URLs the trimmed tree has no type for
}

// TestGoldenOutputsDecode marshals every golden xDS output of the translator with
// go-control-plane's types and decodes it into the trimmed types: the decode loses nothing
// (re-encoded, it equals the original), and every unknown field met is one the pruning table
// names, i.e. a field strait-proxy does not read. It logs which golden files carry such fields
// and which Any types the trimmed tree cannot decode (configs the proxy refuses or never reads).
func TestGoldenOutputsDecode(t *testing.T) {
	byField := map[string][]string{}
	byType := map[string][]string{}
	for _, g := range testenv.ControlPlaneGoldens(t) {
		base := strings.TrimSuffix(g.Name, ".golden.yaml")
		f := decodeGolden(t, g)
		for k := range f.pruned {
			byField[k] = append(byField[k], base)
		}
		for k := range f.noTypes {
			byType[k] = append(byType[k], base)
		}
	}
	logIndex(t, "pruned fields present in golden outputs (field: files)", byField)
	logIndex(t, "Any types with no trimmed type (type: files)", byType)
}

func logIndex(t *testing.T, title string, m map[string][]string) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "\n  %s: %s", k, strings.Join(m[k], ", "))
	}
	t.Logf("%s: %d%s", title, len(keys), b.String())
}

func decodeGolden(t *testing.T, g testenv.GoldenFile) findings {
	t.Helper()
	var doc map[string]json.RawMessage
	if err := yaml.Unmarshal(g.YAML, &doc); err != nil {
		t.Fatalf("%s: %v", g.Name, err)
	}
	f := findings{pruned: map[string]bool{}, noTypes: map[string]bool{}}
	for kind, raw := range doc {
		newMsg, ok := goldenKinds[kind]
		if !ok {
			continue // reports
		}
		var list []json.RawMessage
		if err := json.Unmarshal(raw, &list); err != nil {
			t.Fatalf("%s: %s: %v", g.Name, kind, err)
		}
		for i, r := range list {
			where := fmt.Sprintf("%s: %s[%d]", g.Name, kind, i)
			orig := newMsg()
			if err := protojson.Unmarshal(r, orig); err != nil {
				if kind == "secrets" {
					continue // secrets' key material is described, not included, in goldens
				}
				t.Fatalf("%s: %v", where, err)
			}
			checkTrimmedDecode(t, where, orig, &f)
		}
	}
	return f
}

// checkTrimmedDecode decodes orig's wire form into its trimmed type, walks it for unknown
// fields, and checks that re-encoding the trimmed message restores orig exactly.
func checkTrimmedDecode(t *testing.T, where string, orig proto.Message, f *findings) {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(orig)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	mt, err := xdspb.Types.FindMessageByName(orig.ProtoReflect().Descriptor().FullName())
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	trimmed := mt.New().Interface()
	if err := (proto.UnmarshalOptions{Resolver: xdspb.Resolver}).Unmarshal(b, trimmed); err != nil {
		t.Fatalf("%s: decoding into the trimmed type: %v", where, err)
	}
	walk(t, where, trimmed.ProtoReflect(), f)
	again, err := proto.Marshal(trimmed)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	back := orig.ProtoReflect().New().Interface()
	if err := proto.Unmarshal(again, back); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	if !proto.Equal(orig, back) {
		t.Errorf("%s: the trimmed decode lost data: re-encoded it differs from the original", where)
	}
}

// walk records the unknown fields of m and of every message in it, decoding Any values whose
// type the trimmed tree has. An unknown field that the pruning table does not name is an error:
// the trimmed types lost a field the proxy reads, or the table is wrong.
func walk(t *testing.T, where string, m protoreflect.Message, f *findings) {
	name := m.Descriptor().FullName()
	for u := m.GetUnknown(); len(u) > 0; {
		num, typ, n := protowire.ConsumeTag(u)
		if n < 0 {
			t.Errorf("%s: %s: malformed unknown fields", where, name)
			return
		}
		u = u[n:]
		n = protowire.ConsumeFieldValue(num, typ, u)
		if n < 0 {
			t.Errorf("%s: %s: malformed unknown field %d", where, name, num)
			return
		}
		u = u[n:]
		field, ok := xdspb.PrunedField(name, num)
		if !ok {
			t.Errorf("%s: %s: unknown field %d is not a pruned field", where, name, num)
			continue
		}
		f.pruned[string(name)+"."+field] = true
	}
	if name == "google.protobuf.Any" {
		a := m.Interface().(*anypb.Any)
		if a.GetTypeUrl() == "" {
			return
		}
		inner, err := anypb.UnmarshalNew(a, proto.UnmarshalOptions{Resolver: xdspb.Resolver})
		if err != nil {
			f.noTypes[a.GetTypeUrl()] = true
			return
		}
		walk(t, where, inner.ProtoReflect(), f)
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() != nil {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					walk(t, where, mv.Message(), f)
					return true
				})
			}
		case fd.IsList():
			if fd.Message() != nil {
				for i := 0; i < v.List().Len(); i++ {
					walk(t, where, v.List().Get(i).Message(), f)
				}
			}
		case fd.Message() != nil:
			walk(t, where, v.Message(), f)
		}
		return true
	})
}
