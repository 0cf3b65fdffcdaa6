package registry

import (
	"hash/fnv"
	"net/netip"
	"sort"
	"strings"
)

// AutoAllocatedPrefix is the range auto-allocated service VIPs come from, as Istio's
// (240.240.0.0/16, class E: never routed, so a client can only reach it through its sidecar).
var AutoAllocatedPrefix = netip.MustParsePrefix("240.240.0.0/16")

// autoAllocSlots is the number of usable addresses: 240.240.0.1 to 240.240.255.254 without the
// .0 and .255 of every /24 (some stacks mishandle them), 254 per /24.
const autoAllocSlots = 256 * 254

// AllocateAddresses gives every service that needs one a virtual IP from AutoAllocatedPrefix, as
// Istio's auto-allocation (DNS proxying with ISTIO_META_DNS_AUTO_ALLOCATE) does: a service with no
// addresses, a non-wildcard hostname and a resolution other than NONE (for NONE the proxy must
// see the address the application chose). The address is stored in Service.Addresses, so the
// outbound listeners (TCP filter chains match it) and routes (virtual hosts list it as a domain)
// use it like a ServiceEntry address, and the name table serves it.
//
// Allocation is a pure function of the set of eligible services: the address comes from an
// FNV-1a hash of "namespace/hostname"; collisions are resolved by probing the next slot, with
// services taken in key order. The same ServiceEntries always give the same addresses, whatever
// their order or creation times, so output built from them stays valid across snapshots.
// Services must not be shared with another snapshot: it modifies them in place.
func AllocateAddresses(services []*Service) {
	var need []*Service
	for _, svc := range services {
		if len(svc.Addresses) == 0 && svc.Resolution != ResolutionNone && !strings.Contains(svc.Hostname, "*") {
			need = append(need, svc)
		}
	}
	if len(need) == 0 {
		return
	}
	sort.Slice(need, func(i, j int) bool { return allocKey(need[i]) < allocKey(need[j]) })
	used := make(map[uint32]bool, len(need))
	for _, svc := range need {
		if len(used) >= autoAllocSlots {
			return // the range is full: the rest keep no address (as Istio's, which logs it)
		}
		h := fnv.New32a()
		_, _ = h.Write([]byte(allocKey(svc)))
		slot := h.Sum32() % autoAllocSlots
		for used[slot] {
			slot = (slot + 1) % autoAllocSlots
		}
		used[slot] = true
		svc.Addresses = []string{slotAddr(slot).String()}
		svc.AutoAllocated = true
	}
}

func allocKey(svc *Service) string { return svc.Namespace + "/" + svc.Hostname }

// slotAddr maps a slot to its address: third octet slot/254, fourth octet slot%254 + 1.
func slotAddr(slot uint32) netip.Addr {
	base := AutoAllocatedPrefix.Addr().As4()
	return netip.AddrFrom4([4]byte{base[0], base[1], byte(slot / 254), byte(slot%254 + 1)})
}

// AutoAllocated reports whether addr is in the auto-allocation range.
func AutoAllocated(addr string) bool {
	a, err := netip.ParseAddr(addr)
	return err == nil && AutoAllocatedPrefix.Contains(a)
}
