package upstream

import (
	"context"
	"net"
	"net/netip"
	"time"
)

type dnsFamily int

const (
	familyAuto        dnsFamily = iota // IPv6 if any, else IPv4 (Envoy's AUTO)
	familyV4                           // V4_ONLY
	familyV6                           // V6_ONLY
	familyV4Preferred                  // IPv4 if any, else IPv6
	familyAll                          // both
)

// dnsTarget is one hostname endpoint of a STRICT_DNS or LOGICAL_DNS cluster and its last
// successful answer (kept when a later lookup fails, as Envoy does).
type dnsTarget struct {
	spec endpointSpec
	host string
	port string
	last []netip.Addr
}

func (c *Cluster) resolver() *net.Resolver {
	if c.deps.Resolver != nil {
		return c.deps.Resolver
	}
	return net.DefaultResolver
}

func (c *Cluster) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, nil
	}
	r := c.resolver()
	one := func(network string) ([]netip.Addr, error) {
		addrs, err := r.LookupNetIP(ctx, network, host)
		for i := range addrs {
			addrs[i] = addrs[i].Unmap()
		}
		return addrs, err
	}
	switch c.dnsFamily {
	case familyV4:
		return one("ip4")
	case familyV6:
		return one("ip6")
	case familyAll:
		return one("ip")
	case familyV4Preferred:
		if a, err := one("ip4"); err == nil && len(a) > 0 {
			return a, nil
		}
		return one("ip6")
	default:
		if a, err := one("ip6"); err == nil && len(a) > 0 {
			return a, nil
		}
		return one("ip4")
	}
}

// resolve looks every target up once and applies the result.
func (c *Cluster) resolve() {
	timeout := max(min(c.dnsRefresh, 5*time.Second), time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	go func() {
		select {
		case <-c.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for i := range c.dnsHosts {
		t := &c.dnsHosts[i]
		addrs, err := c.lookup(ctx, t.host)
		if err != nil || len(addrs) == 0 {
			c.log.Warn("DNS resolution failed; keeping previous hosts", "host", t.host, "err", err)
			continue
		}
		t.last = addrs
	}
	var specs []endpointSpec
	for _, t := range c.dnsHosts {
		if c.kind == discoveryLogicalDNS {
			if len(t.last) == 0 {
				continue
			}
			s := t.spec
			s.key = net.JoinHostPort(t.host, t.port) // one logical host whatever it resolves to
			s.addr = net.JoinHostPort(t.last[0].String(), t.port)
			specs = append(specs, s)
			continue
		}
		for _, a := range t.last {
			s := t.spec
			s.addr = net.JoinHostPort(a.String(), t.port)
			s.key = s.addr
			specs = append(specs, s)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return
	}
	c.applyLocked(specs)
}

func (c *Cluster) dnsLoop() {
	c.resolve()
	close(c.warm)
	c.tickUntilStop(c.dnsRefresh, func(time.Time) { c.resolve() })
}

// warmed waits until a DNS cluster has finished its first resolution, or ctx ends. Other
// clusters are always warm.
func (c *Cluster) warmed(ctx context.Context) error {
	if c.warm == nil {
		return nil
	}
	select {
	case <-c.warm:
		return nil
	default:
	}
	select {
	case <-c.warm:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.stop:
		return errClosed
	}
}

// Ready returns a channel closed once the cluster has its initial membership: at once for
// STATIC, EDS and ORIGINAL_DST clusters, after the first DNS resolution for DNS clusters.
func (c *Cluster) Ready() <-chan struct{} {
	if c.warm == nil {
		return closedChan
	}
	return c.warm
}

var closedChan = func() chan struct{} { ch := make(chan struct{}); close(ch); return ch }()
