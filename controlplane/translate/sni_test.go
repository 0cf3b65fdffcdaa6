package translate_test

import (
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/strait-mesh/strait/controlplane/translate"
	"github.com/strait-mesh/strait/internal/vocab"
)

// TestTLSChainNamedPerHost checks that with a multi-host TLS ServiceEntry whose VirtualService
// routes each host by SNI, each host's filter chain on virtualOutbound carries that host's name
// (it used to carry the first host's) and nothing is reported.
func TestTLSChainNamedPerHost(t *testing.T) {
	snap, p := loadCase(t, "testdata/tls-sni-multihost.input.yaml")
	r := newReporter()
	res, err := translate.New(translate.Options{Report: r.report}).Generate(snap, p)
	if err != nil {
		t.Fatal(err)
	}
	if reports := r.take(); len(reports) > 0 {
		t.Errorf("reports: %q", reports)
	}
	checked := 0
	for _, l := range res[resource.ListenerType] {
		l := l.(*listenerv3.Listener)
		if l.GetName() != vocab.VirtualOutbound {
			continue
		}
		for _, c := range l.GetFilterChains() {
			sni := c.GetFilterChainMatch().GetServerNames()
			if len(sni) != 1 {
				continue
			}
			if want := vocab.OutboundClusterName(443, "", sni[0]); c.GetName() != want {
				t.Errorf("chain for SNI %s is named %q, want %q", sni[0], c.GetName(), want)
			}
			checked++
		}
	}
	if checked != 4 {
		t.Errorf("checked %d SNI chains, want 4 (two hosts, two egress hosts)", checked)
	}
}
