package registry

import (
	"fmt"
	"testing"
)

func TestAllocateAddresses(t *testing.T) {
	mk := func() []*Service {
		return []*Service{
			{Hostname: "reviews.default.svc.cluster.local", Namespace: "default", Resolution: ResolutionStatic},
			{Hostname: "reviews.default.svc.cluster.local", Namespace: "other", Resolution: ResolutionStatic},
			{Hostname: "db.example.com", Namespace: "default", Resolution: ResolutionDNS},
			{Hostname: "vip.example.com", Namespace: "default", Resolution: ResolutionStatic, Addresses: []string{"10.0.0.1"}},
			{Hostname: "*.wild.example.com", Namespace: "default", Resolution: ResolutionDNS},
			{Hostname: "passthrough.example.com", Namespace: "default", Resolution: ResolutionNone},
		}
	}
	a := mk()
	AllocateAddresses(a)
	seen := map[string]bool{}
	for _, svc := range a[:3] {
		if len(svc.Addresses) != 1 || !AutoAllocated(svc.Addresses[0]) {
			t.Fatalf("%s/%s: addresses %v, want one from %s", svc.Namespace, svc.Hostname, svc.Addresses, AutoAllocatedPrefix)
		}
		if seen[svc.Addresses[0]] {
			t.Fatalf("address %s allocated twice", svc.Addresses[0])
		}
		seen[svc.Addresses[0]] = true
	}
	if a[3].Addresses[0] != "10.0.0.1" || len(a[4].Addresses) != 0 || len(a[5].Addresses) != 0 {
		t.Fatalf("explicit, wildcard or NONE services changed: %v %v %v", a[3].Addresses, a[4].Addresses, a[5].Addresses)
	}
	// The same services in another order get the same addresses.
	b := mk()
	b[0], b[2] = b[2], b[0]
	AllocateAddresses(b)
	if b[2].Addresses[0] != a[0].Addresses[0] || b[0].Addresses[0] != a[2].Addresses[0] || b[1].Addresses[0] != a[1].Addresses[0] {
		t.Fatalf("allocation depends on order: %v %v", a, b)
	}
}

func TestAllocateAddressesCollisions(t *testing.T) {
	var svcs []*Service
	for i := range 3000 {
		svcs = append(svcs, &Service{Hostname: fmt.Sprintf("s%d.example.com", i), Namespace: "ns", Resolution: ResolutionDNS})
	}
	AllocateAddresses(svcs)
	seen := map[string]bool{}
	for _, s := range svcs {
		a := s.Addresses[0]
		if seen[a] {
			t.Fatalf("address %s allocated twice", a)
		}
		seen[a] = true
		if a[len(a)-2:] == ".0" || a[len(a)-4:] == ".255" {
			t.Fatalf("allocated %s", a)
		}
	}
}
