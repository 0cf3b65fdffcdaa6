package cli

import (
	"io"
	"net/netip"
	"strings"
	"testing"

	"github.com/strait-mesh/strait/controlplane/config"
)

// TestRunDocumentsValid checks that what `strait run` applies decodes strictly and validates, in
// both modes and for declared and detected protocols.
func TestRunDocumentsValid(t *testing.T) {
	for _, proto := range []string{"HTTP", "TCP", "GRPC", "auto"} {
		for _, explicit := range []bool{false, true} {
			o := runOptions{name: "reviews-v2", service: "reviews", namespace: "default", labels: "version=v2",
				port: 9080, protocol: proto, address: "198.18.255.10"}
			w, err := newWorkload(o, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			var doc string
			if explicit {
				w.ip = "127.19.0.1"
				doc = w.documents(map[string]uint32{w.portName(): ExplicitInboundPort},
					w.explicitSidecar("reviews-v2-127-19-0-1", netip.MustParseAddr("127.19.0.2")))
			} else {
				doc = w.documents(nil, "")
			}
			objs, errs := config.Decode("strait run", []byte(doc))
			if len(errs) > 0 {
				t.Fatalf("%s explicit=%v: %v\n%s", proto, explicit, errs, doc)
			}
			want := 2
			if explicit {
				want = 3
			}
			if len(objs) != want {
				t.Fatalf("%s explicit=%v: %d objects, want %d\n%s", proto, explicit, len(objs), want, doc)
			}
			for _, obj := range objs {
				if err := config.Validate(obj); err != nil {
					t.Errorf("%s explicit=%v: %v\n%s", proto, explicit, err, doc)
				}
			}
			if explicit && !strings.Contains(doc, "ports:\n      "+w.portName()+": 15006") {
				t.Errorf("explicit WorkloadGroup template does not map the port to 15006:\n%s", doc)
			}
		}
	}
}

func TestRunOptionsRejected(t *testing.T) {
	for _, o := range []runOptions{
		{name: "Bad_Name", service: "reviews", namespace: "default", port: 9080},
		{name: "a", service: "reviews", namespace: "default", port: 0},
		{name: "a", service: "reviews", namespace: "default", port: 9080, labels: "version"},
	} {
		if _, err := newWorkload(o, io.Discard); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}

func TestVethNameFits(t *testing.T) {
	if n := vethName("strait-a-very-long-namespace-and-workload-name"); len(n) > 15 {
		t.Errorf("veth name %q is longer than 15 characters", n)
	}
}

func TestPrefixWriter(t *testing.T) {
	var b strings.Builder
	p := &prefixWriter{w: &b, prefix: "> "}
	io.WriteString(p, "a\nb")
	io.WriteString(p, "c\n\nd\n")
	io.WriteString(p, "partial")
	if got, want := b.String(), "> a\n> bc\n> \n> d\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
