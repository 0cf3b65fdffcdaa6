package route_test

import (
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/strait-mesh/strait/controlplane/translate/route"
)

// TestBuilderConcurrent checks that one Builder serves concurrent callers (run with -race) and
// that output does not depend on interleaving.
func TestBuilderConcurrent(t *testing.T) {
	in := benchInputs()
	in.Services = in.Services[:50]
	in.VirtualServices = in.VirtualServices[:20]
	b, err := route.New(in)
	if err != nil {
		t.Fatal(err)
	}
	want, err := b.Outbound(80)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 5 {
				got, err := b.Outbound(80)
				if err != nil {
					t.Error(err)
					return
				}
				if !proto.Equal(got, want) {
					t.Error("concurrent Outbound differs")
					return
				}
				if _, err := b.Proxyless("svc0030.ns0.svc.cluster.local:9090"); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}
