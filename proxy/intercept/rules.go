// Package intercept installs and removes the nat rules that send a network namespace's TCP
// traffic through its sidecar, as Istio's init container (istio-iptables) does: outbound TCP is
// redirected to the proxy's outbound capture port (15001), inbound TCP to its inbound capture port
// (15006), and the proxy's own traffic (its uid and gid), loopback traffic and the proxy's ports
// are left alone so that nothing loops.
//
// BuildPlan states the capture once, as rules in chains of our own (STRAIT_OUTPUT,
// STRAIT_REDIRECT, STRAIT_INBOUND, STRAIT_IN_REDIRECT) reached by one jump each from the nat
// hooks PREROUTING and OUTPUT. Two backends install that plan, for IPv4 and IPv6:
//   - iptables: iptables-restore and ip6tables-restore add our chains to the nat tables, so
//     that Uninstall removes exactly what Install created;
//   - nftables: the process itself programs, through netlink (github.com/google/nftables), one
//     table per family named as in Istio's native nftables mode (ip and ip6 istio-proxy-nat,
//     chains prerouting, output, istio-inbound, ...), all replaced in one transaction; no
//     binary is needed, so the proxy image can be built from the static Go binaries alone.
package intercept

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/strait-mesh/strait/internal/vocab"
)

// Chain names created by Install.
const (
	ChainOutput     = "STRAIT_OUTPUT"
	ChainRedirect   = "STRAIT_REDIRECT"
	ChainInbound    = "STRAIT_INBOUND"
	ChainInRedirect = "STRAIT_IN_REDIRECT"
)

// Chains lists every chain Install creates, in creation order.
var Chains = []string{ChainInbound, ChainInRedirect, ChainOutput, ChainRedirect}

// ProxyPorts are the proxy's own ports (admin, outbound and inbound capture, HBONE, agent health
// and merged metrics, Prometheus): inbound connections to them are never redirected.
var ProxyPorts = vocab.ProxyListenPorts()

// Family is an IP family: IPv4 (iptables) or IPv6 (ip6tables).
type Family int

// The families.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

// String returns "ipv4" or "ipv6".
func (f Family) String() string {
	if f == IPv6 {
		return "ipv6"
	}
	return "ipv4"
}

// Config describes the interception, with the meaning of istio-iptables' flags. The zero value of
// a field means its documented default; use Defaults to fill them.
type Config struct {
	// ProxyUID and ProxyGID own the proxy process; its traffic is never redirected (default 1337).
	ProxyUID, ProxyGID int
	// OutboundPort and InboundPort are the capture ports (defaults 15001 and 15006).
	OutboundPort, InboundPort uint16
	// InboundPorts are the inbound ports to redirect; empty or "*" means all TCP ports
	// (istio-iptables -b).
	InboundPorts []string
	// ExcludeInboundPorts are never redirected inbound, in addition to ProxyPorts (-d).
	ExcludeInboundPorts []uint16
	// IncludeOutboundCIDRs are the destinations whose outbound traffic is redirected; empty or
	// "*" means all (-i).
	IncludeOutboundCIDRs []string
	// ExcludeOutboundCIDRs are never redirected outbound (-x).
	ExcludeOutboundCIDRs []string
	// ExcludeOutboundPorts are destination ports never redirected outbound (-o).
	ExcludeOutboundPorts []uint16
	// RedirectDNS sends the application's DNS queries (UDP and TCP port 53) to the proxy's DNS
	// port, as Istio's DNS capture does; the proxy's own queries are left alone.
	RedirectDNS bool
	// DNSServers limits RedirectDNS to queries sent to these addresses or CIDRs (Istio: the
	// nameservers of resolv.conf); empty means queries to any address.
	DNSServers []string
	// DNSPort is the proxy's DNS port (default 15053).
	DNSPort uint16
}

// Defaults returns c with zero fields set to their defaults.
func (c Config) Defaults() Config {
	if c.ProxyUID == 0 {
		c.ProxyUID = vocab.ProxyUID
	}
	if c.ProxyGID == 0 {
		c.ProxyGID = vocab.ProxyUID
	}
	if c.OutboundPort == 0 {
		c.OutboundPort = vocab.OutboundCapturePort
	}
	if c.InboundPort == 0 {
		c.InboundPort = vocab.InboundCapturePort
	}
	if c.DNSPort == 0 {
		c.DNSPort = vocab.DNSPort
	}
	return c
}

// cidrs splits CIDRs (or bare addresses) of the given family out of list; "*" means all and is
// reported as all=true. An unparsable entry is an error.
func cidrs(list []string, fam Family) (out []string, all bool, err error) {
	for _, s := range list {
		s = strings.TrimSpace(s)
		switch s {
		case "":
			continue
		case "*":
			all = true
			continue
		}
		var p netip.Prefix
		if strings.Contains(s, "/") {
			p, err = netip.ParsePrefix(s)
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(s); err == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil {
			return nil, false, fmt.Errorf("parsing CIDR %q: %w", s, err)
		}
		if p.Addr().Is4() != (fam == IPv4) {
			continue
		}
		out = append(out, p.Masked().String())
	}
	return out, all, nil
}

// Validate checks every list entry.
func (c Config) Validate() error {
	for _, fam := range []Family{IPv4, IPv6} {
		if _, _, err := cidrs(c.IncludeOutboundCIDRs, fam); err != nil {
			return fmt.Errorf("include outbound CIDRs: %w", err)
		}
		if _, _, err := cidrs(c.ExcludeOutboundCIDRs, fam); err != nil {
			return fmt.Errorf("exclude outbound CIDRs: %w", err)
		}
		if _, _, err := cidrs(c.DNSServers, fam); err != nil {
			return fmt.Errorf("DNS servers: %w", err)
		}
	}
	if _, _, err := inboundPorts(c.InboundPorts); err != nil {
		return err
	}
	return nil
}

// inboundPorts parses the include list: all=true for empty or "*".
func inboundPorts(list []string) (ports []uint16, all bool, err error) {
	if len(list) == 0 {
		return nil, true, nil
	}
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "*" {
			return nil, true, nil
		}
		if s == "" {
			continue
		}
		n, err := strconv.ParseUint(s, 10, 16)
		if err != nil || n == 0 {
			return nil, false, fmt.Errorf("inbound port %q: want 1-65535 or *", s)
		}
		ports = append(ports, uint16(n))
	}
	return ports, false, nil
}

// sortedPorts returns ports sorted without duplicates.
func sortedPorts(ports []uint16) []uint16 {
	out := append([]uint16(nil), ports...)
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	n := 0
	for i, p := range out {
		if i == 0 || p != out[n-1] {
			out[n] = p
			n++
		}
	}
	return out[:n]
}
