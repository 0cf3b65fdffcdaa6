// Package dns is strait-proxy's DNS proxy, as Istio's (istio-agent on port 15053): it answers A
// and AAAA queries for the mesh names the control plane sends (the name table) from memory and
// forwards every other query to the resolvers of the proxy's /etc/resolv.conf.
//
// Messages are parsed and built with golang.org/x/net/dns/dnsmessage. A query must hold exactly
// one question; answers for mesh names are authoritative with a 30-second TTL (as Istio's); a
// mesh name asked for another type gets NODATA, a search-list expansion of a mesh name
// (reviews.default.svc.cluster.local.<search suffix>) a CNAME to the mesh name and its addresses.
package dns

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/strait-mesh/strait/internal/nametable"
)

// Table is a compiled, immutable name table: lower-case names without the trailing dot mapped to
// their addresses. Build it with Compile; it is safe for concurrent use and never modified.
type Table struct {
	names map[string]*entry
}

// entry is the answer data of one name.
type entry struct {
	canonical string // the FQDN the name stands for (itself for an FQDN)
	v4, v6    []netip.Addr
}

// Compile builds a Table from a decoded name table. FQDNs take precedence over alternative
// (short) names; among alternative names that collide, the first FQDN in sorted order wins, so
// the result does not depend on map order. A nil or empty table is valid: it knows no names.
func Compile(t nametable.Table) (*Table, error) {
	out := &Table{names: make(map[string]*entry, len(t)*4)}
	hosts := make([]string, 0, len(t))
	for h := range t {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	entries := make([]*entry, len(hosts))
	for i, h := range hosts {
		name := canonicalName(h)
		if name == "" || len(name) > 253 {
			return nil, fmt.Errorf("compiling name table: bad host name %q", h)
		}
		e := &entry{canonical: name}
		for _, s := range t[h].IPs {
			ip, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("compiling name table: host %q: %w", h, err)
			}
			ip = ip.Unmap()
			if ip.Is4() {
				e.v4 = append(e.v4, ip)
			} else {
				e.v6 = append(e.v6, ip)
			}
		}
		entries[i] = e
		out.names[name] = e
	}
	for i, h := range hosts {
		for _, alt := range t[h].AltHosts {
			a := canonicalName(alt)
			if a == "" {
				continue
			}
			if _, taken := out.names[a]; !taken {
				out.names[a] = entries[i]
			}
		}
	}
	return out, nil
}

// Len returns the number of names (FQDNs and alternative names) the table answers.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return len(t.names)
}

// lookup returns the entry of a canonical (lower-case, no trailing dot) name.
func (t *Table) lookup(name string) *entry {
	if t == nil {
		return nil
	}
	return t.names[name]
}

// Resolve returns the IPv4 and IPv6 addresses of a name (case-insensitive, with or without the
// trailing dot) and whether the table knows it. The slices must not be modified.
func (t *Table) Resolve(name string) (v4, v6 []netip.Addr, ok bool) {
	e := t.lookup(canonicalName(name))
	if e == nil {
		return nil, nil, false
	}
	return e.v4, e.v6, true
}

// canonicalName lower-cases a name and removes one trailing dot.
func canonicalName(s string) string {
	return strings.ToLower(strings.TrimSuffix(s, "."))
}
