package translate_test

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/strait-mesh/strait/controlplane/config"
	"github.com/strait-mesh/strait/controlplane/mesh"
	"github.com/strait-mesh/strait/controlplane/translate"
	"github.com/strait-mesh/strait/internal/vocab"
)

// addressListener reports whether l is a listener of one service address (bind_to_port false,
// every chain matching its address as a host prefix on its port), not an egress listener.
func addressListener(l *listenerv3.Listener) (netip.AddrPort, bool) {
	sa := l.GetAddress().GetSocketAddress()
	a, err := netip.ParseAddr(sa.GetAddress())
	if err != nil || l.GetBindToPort() == nil || l.GetBindToPort().GetValue() || len(l.GetFilterChains()) == 0 || a.IsUnspecified() {
		return netip.AddrPort{}, false
	}
	for _, c := range l.GetFilterChains() {
		m := c.GetFilterChainMatch()
		if m.GetDestinationPort().GetValue() != sa.GetPortValue() || !slices.ContainsFunc(m.GetPrefixRanges(), func(r *corev3.CidrRange) bool {
			return r.GetAddressPrefix() == a.String() && int(r.GetPrefixLen().GetValue()) == a.BitLen()
		}) {
			return netip.AddrPort{}, false
		}
	}
	return netip.AddrPortFrom(a, uint16(sa.GetPortValue())), true
}

// candidates returns the chains Envoy's first two matching steps (destination port, then the
// most specific destination prefix) leave for a connection to dst, as "name|match" strings. The
// later steps (server name, transport, ALPN, source) choose among exactly these.
func candidates(chains []*listenerv3.FilterChain, dst netip.AddrPort) []string {
	var byPort []*listenerv3.FilterChain
	for _, c := range chains {
		if c.GetFilterChainMatch().GetDestinationPort().GetValue() == uint32(dst.Port()) {
			byPort = append(byPort, c)
		}
	}
	if len(byPort) == 0 {
		for _, c := range chains {
			if c.GetFilterChainMatch().GetDestinationPort() == nil {
				byPort = append(byPort, c)
			}
		}
	}
	best := -2
	var out []string
	for _, c := range byPort {
		l := -1 // no prefix: any address
		if rs := c.GetFilterChainMatch().GetPrefixRanges(); len(rs) > 0 {
			l = -2
			for _, r := range rs {
				p, err := netip.ParsePrefix(fmt.Sprintf("%s/%d", r.GetAddressPrefix(), r.GetPrefixLen().GetValue()))
				if err == nil && p.Contains(dst.Addr()) && p.Bits() > l {
					l = p.Bits()
				}
			}
		}
		if l == -2 {
			continue
		}
		if l > best {
			best, out = l, nil
		}
		if l == best {
			out = append(out, c.GetName()+"|"+c.GetFilterChainMatch().String())
		}
	}
	slices.Sort(out)
	return out
}

// TestAddressListenersEquivalent checks, for every golden case, that moving chains to listeners
// of their service address changed no routing: for every destination the chains name (and one
// they do not), the candidate chains after the hand-off by original destination are those of
// virtualOutbound with every moved chain put back, with the same default chain, and the
// listener inspects what its chains match on.
func TestAddressListenersEquivalent(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.input.yaml")
	if err != nil {
		t.Fatal(err)
	}
	moved := 0
	for _, in := range inputs {
		t.Run(strings.TrimSuffix(filepath.Base(in), ".input.yaml"), func(t *testing.T) {
			snap, p := loadCase(t, in)
			res, err := translate.New(translate.Options{RateLimitService: goldenRateLimitService}).Generate(snap, p)
			if err != nil {
				t.Fatal(err)
			}
			var vo *listenerv3.Listener
			own := map[netip.AddrPort]*listenerv3.Listener{}
			for _, r := range res[resource.ListenerType] {
				l := r.(*listenerv3.Listener)
				if l.GetName() == vocab.VirtualOutbound {
					vo = l
				} else if dst, ok := addressListener(l); ok {
					own[dst] = l
				}
			}
			if vo == nil {
				if len(own) > 0 {
					t.Fatalf("address listeners without virtualOutbound")
				}
				t.Skip("no virtualOutbound")
			}
			if len(own) > 0 && !vo.GetUseOriginalDst().GetValue() {
				t.Errorf("virtualOutbound does not hand off by original destination")
			}
			merged := slices.Clone(vo.GetFilterChains())
			probes := map[netip.AddrPort]bool{netip.MustParseAddrPort("203.0.113.7:7000"): true}
			for dst, l := range own {
				moved++
				merged = append(merged, l.GetFilterChains()...)
				if !proto.Equal(l.GetDefaultFilterChain(), vo.GetDefaultFilterChain()) {
					t.Errorf("%s: default chain differs from virtualOutbound's", l.GetName())
				}
				tls, http := false, false
				for _, c := range l.GetFilterChains() {
					m := c.GetFilterChainMatch()
					tls = tls || len(m.GetServerNames()) > 0 || m.GetTransportProtocol() != ""
					http = http || len(m.GetApplicationProtocols()) > 0
				}
				if has := hasListenerFilter(l, "tls_inspector"); has != tls {
					t.Errorf("%s: tls_inspector %v, want %v", l.GetName(), has, tls)
				}
				if has := hasListenerFilter(l, "http_inspector"); has != http {
					t.Errorf("%s: http_inspector %v, want %v", l.GetName(), has, http)
				}
				probes[dst] = true
			}
			for _, c := range merged {
				m := c.GetFilterChainMatch()
				for _, r := range m.GetPrefixRanges() {
					a, err := netip.ParseAddr(r.GetAddressPrefix())
					if err != nil {
						continue
					}
					probes[netip.AddrPortFrom(a, uint16(m.GetDestinationPort().GetValue()))] = true
				}
			}
			merged = uniqueChains(merged)
			for dst := range probes {
				after := vo.GetFilterChains()
				if l := own[dst]; l != nil {
					after = l.GetFilterChains()
				}
				if got, want := candidates(after, dst), candidates(merged, dst); !slices.Equal(got, want) {
					t.Errorf("connection to %s: candidate chains\n%v\nwant (one virtualOutbound)\n%v", dst, got, want)
				}
			}
		})
	}
	if moved == 0 {
		t.Error("no golden case has a listener per service address")
	}
}

func hasListenerFilter(l *listenerv3.Listener, suffix string) bool {
	for _, f := range l.GetListenerFilters() {
		if strings.HasSuffix(f.GetName(), suffix) {
			return true
		}
	}
	return false
}

// uniqueChains drops chains whose name and match repeat an earlier one (a chain of several
// addresses is in each address's listener).
func uniqueChains(chains []*listenerv3.FilterChain) []*listenerv3.FilterChain {
	seen := map[string]bool{}
	var out []*listenerv3.FilterChain
	for _, c := range chains {
		k := c.GetName() + "|" + c.GetFilterChainMatch().String()
		if !seen[k] {
			seen[k] = true
			out = append(out, c)
		}
	}
	return out
}

// TestAddedTCPServiceIsItsOwnListener checks that adding a TCP service leaves virtualOutbound
// as it was and adds the new service's address listener: LDS re-sends one small listener, not
// every service's chains. The unchanged listeners are the previous objects (carried over, so
// neither rebuilt nor re-marshaled), and so is the whole list after a change that touches no
// listener, while the output always equals a new generator's.
func TestAddedTCPServiceIsItsOwnListener(t *testing.T) {
	objs := benchObjects(40, 8)
	mc := config.DefaultMeshConfig()
	g := translate.New(translate.Options{})
	var lists [][]types.Resource
	gen := func(version uint64, objs []*config.Object) map[string]*listenerv3.Listener {
		t.Helper()
		res := sameOutput(t, g, mesh.New(version, mc, objs), benchProxy(0))
		lists = append(lists, res[resource.ListenerType])
		out := map[string]*listenerv3.Listener{}
		for _, r := range res[resource.ListenerType] {
			out[r.(*listenerv3.Listener).GetName()] = r.(*listenerv3.Listener)
		}
		return out
	}
	before := gen(1, objs)
	objs = append(objs, &config.Object{Kind: config.ServiceEntry, Meta: config.Meta{Name: "db", Namespace: "ns-0"},
		Spec: &networking.ServiceEntry{Hosts: []string{"db.ns-0.svc.cluster.local"}, Addresses: []string{"10.97.0.1"},
			Location: networking.ServiceEntry_MESH_INTERNAL, Resolution: networking.ServiceEntry_STATIC,
			Ports:     []*networking.ServicePort{{Number: 5432, Name: "tcp-postgres"}},
			Endpoints: []*networking.WorkloadEntry{{Address: "10.50.0.1"}}}})
	after := gen(2, objs)
	if len(after) != len(before)+1 {
		t.Fatalf("%d listeners after adding a TCP service, %d before", len(after), len(before))
	}
	for name, l := range before {
		if after[name] != l {
			t.Errorf("listener %s rebuilt", name)
		}
	}
	if l := after["10.97.0.1_5432"]; l == nil || len(l.GetFilterChains()) != 1 {
		t.Errorf("no listener of one chain for the new service's address: %v", l)
	}
	// An HTTP VirtualService edit changes no listener: the list is the same.
	vs := findObject(t, objs, config.VirtualService, "ns-3", "svc-3")
	spec := proto.Clone(vs.Spec).(*networking.VirtualService)
	spec.Http[0].Route[0].Weight, spec.Http[0].Route[1].Weight = 70, 30
	gen(3, replaceObject(objs, withSpec(vs, spec)))
	if a, b := lists[1], lists[2]; len(a) != len(b) || &a[0] != &b[0] {
		t.Errorf("the listener list was rebuilt after a VirtualService edit")
	}
}
