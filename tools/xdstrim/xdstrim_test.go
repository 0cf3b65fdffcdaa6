package main

import (
	"bytes"
	"path/filepath"
	"testing"
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
