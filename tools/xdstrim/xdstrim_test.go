package main

import (
	"bytes"
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

// TestProxyIsSwitched: no file strait-proxy links imports a go-control-plane or cncf/xds proto
// package (`go run ./tools/xdstrim -rewrite` switches them to proxy/xdspb), and the analysis
// overlay maps every proxy/xdspb import back to the package it was generated from.
func TestProxyIsSwitched(t *testing.T) {
	if testing.Short() {
		t.Skip("lists strait-proxy's packages")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	_, files, err := linkedFiles(root, false, "./cmd/strait-proxy")
	if err != nil {
		t.Fatal(err)
	}
	left, err := switchedSources(files, toTrimmed)
	if err != nil {
		t.Fatal(err)
	}
	for p := range left {
		t.Errorf("%s imports go-control-plane or cncf/xds (run go run ./tools/xdstrim -rewrite)", shortPath(p))
	}
	back, err := switchedSources(files, fromTrimmed(buildIndex()))
	if err != nil {
		t.Fatal(err)
	}
	if len(back) == 0 {
		t.Error("the analysis overlay switches no file back")
	}
	for p, src := range back {
		if bytes.Contains(src, []byte(`"`+xdspbImport+"/")) {
			t.Errorf("%s: an import of proxy/xdspb is not mapped back", shortPath(p))
		}
	}
}

func TestFromTrimmed(t *testing.T) {
	m := fromTrimmed(buildIndex())
	for in, want := range map[string]string{
		xdspbImport + "/envoy/config/listener/v3": "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3",
		xdspbImport + "/xds/type/v3":              "github.com/cncf/xds/go/xds/type/v3",
		xdspbImport:                               "",
		"github.com/strait-mesh/strait/proxy/l7":  "",
	} {
		got, ok := m(in)
		if got != want || ok != (want != "") {
			t.Errorf("fromTrimmed(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

func TestRegroupImports(t *testing.T) {
	src := `package x

import (
	"fmt"

	listenerv3 "` + xdspbImport + `/envoy/config/listener/v3"
	"google.golang.org/protobuf/proto"

	"github.com/strait-mesh/strait/proxy/xdsfield"
)
`
	want := `package x

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/strait-mesh/strait/proxy/xdsfield"
	listenerv3 "` + xdspbImport + `/envoy/config/listener/v3"
)
`
	got, err := regroupImports("x.go", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
