package proxy

import (
	"fmt"
	"maps"
	"net"
	"sync"

	"github.com/strait-mesh/strait/internal/node"
	"github.com/strait-mesh/strait/proxy/dns"
	"github.com/strait-mesh/strait/proxy/xdsclient"
)

// dnsEnabled reports whether this proxy runs the DNS proxy (sidecars with a DNS address).
func (o *Options) dnsEnabled() bool {
	return o.DNSAddress != "" && (o.Node.Type == node.Sidecar || o.Node.Type == "")
}

// withDNSCapture returns node info that asks the control plane for the name table.
func withDNSCapture(n xdsclient.NodeInfo) xdsclient.NodeInfo {
	extra := maps.Clone(n.Extra)
	if extra == nil {
		extra = map[string]string{}
	}
	extra[node.MetaDNSCapture] = "true"
	n.Extra = extra
	return n
}

// startDNS binds the DNS proxy (Options.DNSAddress) with the upstream resolvers of
// Options.ResolvConf and serves it until the returned stop function is called. It answers from
// the current runtime's name table. With DNSBestEffort a bind failure is logged and stop is a
// no-op. On 127.0.0.1 it also listens on [::1] at the same port when the host has IPv6 loopback
// (ip6tables sends an application's IPv6 DNS there), as istio-agent does.
func (p *Proxy) startDNS() (stop func(), err error) {
	rc, err := dns.ReadResolvConf(p.opts.ResolvConf)
	if err != nil {
		return nil, fmt.Errorf("starting dns proxy: %w", err)
	}
	opts := dns.Options{
		Address:  p.opts.DNSAddress,
		Table:    func() *dns.Table { return p.rt.Load().Names },
		Search:   rc.Search,
		Upstream: &dns.Forwarder{Servers: rc.Servers, Timeout: p.opts.DNSUpstreamTimeout},
		Logger:   p.log,
		Metrics: dns.Metrics{
			Requests:         p.stats.Counter("dns.requests", "dns_requests_total"),
			UpstreamRequests: p.stats.Counter("dns.upstream_requests", "dns_upstream_requests_total"),
			UpstreamFailures: p.stats.Counter("dns.upstream_failures", "dns_upstream_failures_total"),
		},
	}
	srv, err := dns.Listen(opts)
	if err != nil {
		if p.opts.DNSBestEffort {
			p.log.Warn("dns proxy disabled", "error", err)
			return func() {}, nil
		}
		return nil, fmt.Errorf("starting dns proxy: %w", err)
	}
	servers := []*dns.Server{srv}
	if host, port, err := net.SplitHostPort(srv.Addr().String()); err == nil && host == "127.0.0.1" {
		opts.Address = net.JoinHostPort("::1", port)
		if srv6, err := dns.Listen(opts); err == nil {
			servers = append(servers, srv6)
		} else {
			p.log.Debug("dns proxy not on IPv6 loopback", "error", err)
		}
	}
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Serve(); err != nil {
				p.log.Error("dns proxy stopped", "address", s.Addr().String(), "error", err)
			}
		}()
		p.log.Info("dns proxy listening", "address", s.Addr().String(), "upstream", rc.Servers, "search", rc.Search)
	}
	return func() {
		for _, s := range servers {
			s.Close()
		}
		wg.Wait()
	}, nil
}
