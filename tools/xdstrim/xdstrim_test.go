package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// TestGeneratedTreeUpToDate runs the generator twice over this module: the outputs are
// identical (deterministic), and they equal the committed proxy/xdspb (run
// `go run ./tools/xdstrim` after changing what strait-proxy reads of the xDS types).
func TestGeneratedTreeUpToDate(t *testing.T) {
	if testing.Short() {
		t.Skip("type-checks strait-proxy's packages twice")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	first, err := run(root)
	if err != nil {
		t.Fatal(err)
	}
	second, err := run(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(first.files) != len(second.files) {
		t.Fatalf("runs generated %d and %d files", len(first.files), len(second.files))
	}
	for p, b := range first.files {
		if !bytes.Equal(b, second.files[p]) {
			t.Errorf("%s differs between two runs", p)
		}
	}
	diff, err := compare(root, first.files)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diff {
		t.Errorf("proxy/xdspb is out of date: %s (run go run ./tools/xdstrim)", d)
	}
}

func TestRewriteGoPackage(t *testing.T) {
	for in, want := range map[string]string{
		"github.com/envoyproxy/go-control-plane/envoy/config/listener/v3;listenerv3": "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/listener/v3;listenerv3",
		"github.com/cncf/xds/go/xds/type/v3":                                         "github.com/strait-mesh/strait/proxy/xdspb/xds/type/v3",
		"google.golang.org/protobuf/types/known/anypb":                               "",
	} {
		got, ok := rewriteGoPackage(in)
		if got != want || ok != (want != "") {
			t.Errorf("rewriteGoPackage(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

func TestTagNumber(t *testing.T) {
	if n, ok := tagNumber("bytes,3,opt,name=foo,proto3"); !ok || n != 3 {
		t.Errorf("tagNumber = %d, %v", n, ok)
	}
	if _, ok := tagNumber("bytes"); ok {
		t.Error("tagNumber accepted a tag without a number")
	}
}

// TestAnalysisFixture: the analysis keeps the fields testdata/fixture reads by each route
// (getter, field, oneof wrapper, composite literal, a oneof read (all its members), xdsfield.Check's allowed names directly and
// through a forwarding wrapper, a getter through an interface) and leaves the others out.
func TestAnalysisFixture(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	_, k, warnings, err := keep(root, "./tools/xdstrim/testdata/fixture")
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) > 0 {
		t.Errorf("warnings: %v", warnings)
	}
	for _, c := range []struct {
		msg  protoreflect.FullName
		num  protoreflect.FieldNumber
		kept bool
	}{
		{"envoy.config.listener.v3.Listener", 1, true},    // name: allowed
		{"envoy.config.listener.v3.Listener", 28, true},   // stat_prefix: allowed only
		{"envoy.config.listener.v3.Listener", 2, true},    // address: getter
		{"envoy.config.listener.v3.Listener", 3, true},    // filter_chains: getter
		{"envoy.config.listener.v3.Listener", 5, false},   // per_connection_buffer_limit_bytes
		{"envoy.config.core.v3.Address", 1, true},         // socket_address: getter, allowed via wrapper
		{"envoy.config.core.v3.Address", 2, true},         // pipe: composite literal
		{"envoy.config.core.v3.Address", 3, false},        // envoy_internal_address
		{"envoy.config.core.v3.SocketAddress", 3, true},   // port_value: oneof wrapper
		{"envoy.config.core.v3.SocketAddress", 4, true},   // named_port: its oneof is read
		{"envoy.config.core.v3.SocketAddress", 2, false},  // address
		{"envoy.config.core.v3.Pipe", 1, true},            // path: composite literal
		{"envoy.config.listener.v3.FilterChain", 7, true}, // name: getter through an interface
		{"envoy.config.listener.v3.FilterChain", 3, false},
	} {
		if got := k.fields[c.msg][c.num]; got != c.kept {
			t.Errorf("%s field %d kept = %v, want %v", c.msg, c.num, got, c.kept)
		}
	}
	if _, ok := k.fields["envoy.config.listener.v3.ListenerFilter"]; ok {
		t.Error("ListenerFilter kept, though nothing reaches it")
	}
}

// TestProxyBuildsOnTrimmedTree type-checks strait-proxy's packages with their xDS imports
// switched to proxy/xdspb (the measurement overlay; no file changes): the only type errors are
// the PGV Validate methods the trimmed types do not generate (writeMeasurementOverlay fails on
// any other), so phase 2's switch is the import paths plus replacing those calls.
func TestProxyBuildsOnTrimmedTree(t *testing.T) {
	if testing.Short() {
		t.Skip("type-checks strait-proxy's packages")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := writeMeasurementOverlay(root, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "overlay.json")); err != nil {
		t.Fatal(err)
	}
}
