package upstream

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strait-mesh/strait/proxy/balance"
	"github.com/strait-mesh/strait/proxy/xdsfield"
	clusterv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/cluster/v3"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
	endpointv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/endpoint/v3"
)

// endpoint is one upstream host: its address, attributes, connection pools and outlier state.
// It survives endpoint updates that keep its address, so pools and counters carry over.
type endpoint struct {
	// What every request reads, first and together (the fewest data cache lines).
	c      *Cluster
	addr   atomic.Pointer[string] // dial address "ip:port" or a socket path; LOGICAL_DNS updates it
	ts     *transport
	active atomic.Int64 // outstanding requests (LEAST_REQUEST, original-dst cleanup)
	pools  [numPoolKinds]atomic.Pointer[pool]

	key     string
	hashKey string
	network string // "tcp" or "unix" (pipe endpoints)
	md      *corev3.Metadata

	// Attributes, written under c.mu and read when the host set is rebuilt.
	weight, priority, localityWeight uint32
	locality                         string
	localityProto                    *corev3.Locality
	hostname                         string
	healthy, degraded                bool

	created  time.Time    // when the host joined the cluster (slow start)
	lastUsed atomic.Int64 // unix nanoseconds (original-dst cleanup)

	poolMu  sync.Mutex // serializes pool creation and close
	proxied sync.Map   // proxiedKey → *pool (PROXY protocol: per downstream connection)
	closed  bool

	od odState
}

// endpointSpec is an endpoint as an update describes it.
type endpointSpec struct {
	key, addr, hostname, network     string
	weight, priority, localityWeight uint32
	locality                         string
	localityProto                    *corev3.Locality
	healthy, degraded                bool
	md                               *corev3.Metadata
}

func (ep *endpoint) dialAddr() string { return *ep.addr.Load() }

// close closes the endpoint's pools: idle connections now, busy ones when their requests end.
func (ep *endpoint) close() {
	ep.poolMu.Lock()
	ep.closed = true
	ep.poolMu.Unlock()
	for i := range ep.pools {
		if p := ep.pools[i].Load(); p != nil {
			p.close()
		}
	}
	ep.proxied.Range(func(_, v any) bool {
		v.(*pool).close()
		return true
	})
}

func emptySet(cfg balance.Config) *balance.Set {
	s, err := balance.New(cfg, nil)
	if err != nil {
		panic(fmt.Sprintf("balance config validated at compile time: %v", err))
	}
	return s
}

// SetEndpoints installs an EDS ClusterLoadAssignment. Endpoints whose address is unchanged keep
// their connection pools and outlier state; removed ones have their pools closed (requests in
// flight finish). The new host set is published atomically. It is an error for clusters that
// do not use EDS.
func (c *Cluster) SetEndpoints(cla *endpointv3.ClusterLoadAssignment) error {
	if c.kind != discoveryEDS {
		return fmt.Errorf("cluster %q: endpoints are not discovered by EDS", c.name)
	}
	specs, overprov, err := parseAssignment(cla, false)
	if err != nil {
		return fmt.Errorf("cluster %q: %w", c.name, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return nil
	}
	if overprov != 0 {
		c.lbCfg.OverprovisioningFactor = overprov
	}
	c.applyLocked(specs)
	return nil
}

// parseAssignment validates a ClusterLoadAssignment. With dns, addresses may be hostnames.
func parseAssignment(cla *endpointv3.ClusterLoadAssignment, dns bool) ([]endpointSpec, uint32, error) {
	if cla == nil {
		return nil, 0, nil
	}
	if err := xdsfield.Check(cla, "load_assignment", "cluster_name", "endpoints", "policy"); err != nil {
		return nil, 0, err
	}
	var overprov uint32
	if p := cla.GetPolicy(); p != nil {
		if err := xdsfield.Check(p, "load_assignment.policy", "overprovisioning_factor"); err != nil {
			return nil, 0, err
		}
		if f := p.GetOverprovisioningFactor(); f != nil {
			if f.GetValue() == 0 {
				return nil, 0, fmt.Errorf("load_assignment.policy.overprovisioning_factor must be positive")
			}
			overprov = f.GetValue()
		}
	}
	var specs []endpointSpec
	for i, le := range cla.GetEndpoints() {
		path := fmt.Sprintf("load_assignment.endpoints[%d]", i)
		if err := xdsfield.Check(le, path, "locality", "lb_endpoints", "load_balancing_weight", "priority", "metadata"); err != nil {
			return nil, 0, err
		}
		loc := le.GetLocality()
		locName := loc.GetRegion() + "/" + loc.GetZone() + "/" + loc.GetSubZone()
		var locWeight uint32
		if w := le.GetLoadBalancingWeight(); w != nil {
			locWeight = w.GetValue()
		}
		for j, lb := range le.GetLbEndpoints() {
			lpath := fmt.Sprintf("%s.lb_endpoints[%d]", path, j)
			s, err := parseLbEndpoint(lpath, lb, dns)
			if err != nil {
				return nil, 0, err
			}
			s.priority, s.locality, s.localityWeight, s.localityProto = le.GetPriority(), locName, locWeight, loc
			specs = append(specs, s)
		}
	}
	return specs, overprov, nil
}

func parseLbEndpoint(path string, lb *endpointv3.LbEndpoint, dns bool) (endpointSpec, error) {
	var s endpointSpec
	if err := xdsfield.Check(lb, path, "endpoint", "health_status", "metadata", "load_balancing_weight"); err != nil {
		return s, err
	}
	ep := lb.GetEndpoint()
	if ep == nil {
		return s, fmt.Errorf("%s.endpoint is required", path)
	}
	// health_check_config only matters to active health checking, which is not configured here.
	if err := xdsfield.Check(ep, path+".endpoint", "address", "hostname", "health_check_config"); err != nil {
		return s, err
	}
	if pipe := ep.GetAddress().GetPipe(); pipe != nil && !dns {
		// A Unix domain socket (Istio's Sidecar ingress defaultEndpoint unix://...).
		if err := xdsfield.Check(pipe, path+".endpoint.address.pipe", "path", "mode"); err != nil {
			return s, err
		}
		if pipe.GetPath() == "" {
			return s, fmt.Errorf("%s.endpoint.address.pipe.path is empty", path)
		}
		s.addr, s.key, s.network = pipe.GetPath(), pipe.GetPath(), "unix"
		return finishSpec(path, s, lb)
	}
	sa := ep.GetAddress().GetSocketAddress()
	if sa == nil {
		return s, fmt.Errorf("%s.endpoint.address: only socket_address and pipe are supported", path)
	}
	if err := xdsfield.Check(sa, path+".endpoint.address.socket_address", "protocol", "address", "port_value", "ipv4_compat"); err != nil {
		return s, err
	}
	if sa.GetProtocol() != corev3.SocketAddress_TCP {
		return s, fmt.Errorf("%s.endpoint.address.socket_address.protocol %v is not supported", path, sa.GetProtocol())
	}
	host := sa.GetAddress()
	if !dns {
		ip, err := netip.ParseAddr(host)
		if err != nil {
			return s, fmt.Errorf("%s.endpoint.address: %q is not an IP address", path, host)
		}
		host = ip.String()
	} else if host == "" {
		return s, fmt.Errorf("%s.endpoint.address: empty hostname", path)
	}
	if sa.GetPortValue() == 0 || sa.GetPortValue() > 65535 {
		return s, fmt.Errorf("%s.endpoint.address: port %d out of range", path, sa.GetPortValue())
	}
	s.addr = net.JoinHostPort(host, strconv.Itoa(int(sa.GetPortValue())))
	s.key = s.addr
	s.network = "tcp"
	s.hostname = ep.GetHostname()
	if dns {
		s.hostname = host
	}
	return finishSpec(path, s, lb)
}

// finishSpec reads the LbEndpoint attributes common to all address kinds.
func finishSpec(path string, s endpointSpec, lb *endpointv3.LbEndpoint) (endpointSpec, error) {
	s.weight = 1
	if w := lb.GetLoadBalancingWeight(); w != nil {
		if w.GetValue() == 0 {
			return s, fmt.Errorf("%s.load_balancing_weight must be positive", path)
		}
		s.weight = w.GetValue()
	}
	switch lb.GetHealthStatus() {
	case corev3.HealthStatus_UNKNOWN, corev3.HealthStatus_HEALTHY:
		s.healthy = true
	case corev3.HealthStatus_DEGRADED:
		// Served only when healthy hosts fall short (balance.Host.Degraded).
		s.healthy, s.degraded = true, true
	case corev3.HealthStatus_UNHEALTHY, corev3.HealthStatus_DRAINING, corev3.HealthStatus_TIMEOUT:
		s.healthy = false
	default:
		return s, fmt.Errorf("%s.health_status %v is not supported", path, lb.GetHealthStatus())
	}
	s.md = lb.GetMetadata()
	return s, nil
}

// applyLocked replaces the membership with specs and republishes the host set. c.mu is held.
func (c *Cluster) applyLocked(specs []endpointSpec) {
	next := make(map[string]*endpoint, len(specs))
	members := make([]*endpoint, 0, len(specs))
	changed := len(specs) != len(c.members)
	for _, s := range specs {
		if _, dup := next[s.key]; dup {
			continue
		}
		ts := c.transportFor(s.md)
		ep := c.byKey[s.key]
		if ep == nil || ep.ts != ts {
			ep = c.newEndpoint(s.key, s.addr, ts)
			ep.network = s.network
			changed = true
		}
		hashKey := s.key
		if c.hashByHostname && s.hostname != "" {
			hashKey = s.hostname
		}
		ep.hashKey = hashKey
		a := s.addr
		ep.addr.Store(&a)
		ep.md = s.md
		ep.weight, ep.priority, ep.locality, ep.localityWeight = s.weight, s.priority, s.locality, s.localityWeight
		ep.localityProto, ep.hostname = s.localityProto, s.hostname
		ep.healthy, ep.degraded = s.healthy, s.degraded
		next[s.key] = ep
		members = append(members, ep)
	}
	var removed []*endpoint
	for k, ep := range c.byKey {
		if next[k] != ep {
			removed = append(removed, ep)
		}
	}
	c.byKey, c.members = next, members
	c.rebuildLocked()
	if changed || len(removed) > 0 {
		c.st.membershipChange.Inc()
	}
	c.st.updateSuccess.Inc()
	for _, ep := range removed {
		if ep.od.ejected.Load() {
			c.st.odActive.Dec()
		}
		ep.close()
	}
}

func (c *Cluster) newEndpoint(key, addr string, ts *transport) *endpoint {
	ep := &endpoint{c: c, key: key, hashKey: key, ts: ts, created: time.Now(), network: "tcp"}
	if c.outlier != nil && len(c.outlier.monitors) > 0 {
		ep.od.monitors = make([]atomic.Uint32, len(c.outlier.monitors))
	}
	ep.addr.Store(&addr)
	return ep
}

// rebuildLocked publishes a new balancer over the current members. c.mu is held.
func (c *Cluster) rebuildLocked() {
	hosts := make([]balance.Host, len(c.members))
	healthy := 0
	now := time.Now()
	c.ramping = false
	for i, ep := range c.members {
		h := ep.healthy && !ep.od.ejected.Load()
		if h {
			healthy++
		}
		w := ep.weight
		if c.slowStart != nil {
			var ramping bool
			w, ramping = c.slowStart.weight(w, ep.created, now)
			c.ramping = c.ramping || ramping
		}
		hosts[i] = balance.Host{Key: ep.hashKey, Weight: w, Priority: ep.priority,
			Locality: ep.locality, LocalityWeight: ep.localityWeight, Healthy: h, Degraded: ep.degraded,
			Active: &ep.active}
	}
	lb, err := balance.New(c.lbCfg, hosts)
	if err != nil {
		// The configuration was validated at compile time; only hosts changed.
		c.log.Error("rebuilding load balancer", "err", err)
		return
	}
	c.set.Store(&hostSet{lb: lb, eps: append([]*endpoint(nil), c.members...), panic: lb.InPanic()})
	c.st.membershipTotal.Set(int64(len(hosts)))
	c.st.membershipHealthy.Set(int64(healthy))
}

// start loads static membership, runs the first DNS resolution and starts background loops.
func (c *Cluster) start(cc *clusterv3.Cluster) error {
	switch c.kind {
	case discoveryStatic:
		specs, overprov, err := parseAssignment(cc.GetLoadAssignment(), false)
		if err != nil {
			return err
		}
		c.mu.Lock()
		if overprov != 0 {
			c.lbCfg.OverprovisioningFactor = overprov
		}
		c.applyLocked(specs)
		c.mu.Unlock()
	case discoveryStrictDNS, discoveryLogicalDNS:
		specs, _, err := parseAssignment(cc.GetLoadAssignment(), true)
		if err != nil {
			return err
		}
		if len(specs) == 0 {
			return fmt.Errorf("load_assignment: a DNS cluster needs at least one endpoint")
		}
		if c.kind == discoveryLogicalDNS && len(specs) != 1 {
			return fmt.Errorf("load_assignment: LOGICAL_DNS clusters take exactly one endpoint, got %d", len(specs))
		}
		for _, s := range specs {
			host, port, _ := net.SplitHostPort(s.addr)
			c.dnsHosts = append(c.dnsHosts, dnsTarget{spec: s, host: host, port: port})
		}
		// The first resolution runs in the background; requests wait for it (warming) rather
		// than failing, and Compile does not block on DNS.
		c.warm = make(chan struct{})
		c.wg.Add(1)
		go c.dnsLoop()
	case discoveryOriginalDst:
		c.wg.Add(1)
		go c.cleanupLoop()
	}
	if c.outlier != nil {
		c.wg.Add(1)
		go c.outlierLoop()
	}
	if c.slowStart != nil {
		c.wg.Add(1)
		go c.slowStartLoop()
	}
	return nil
}

// cleanupLoop removes original-destination hosts that have been idle for cleanup_interval.
func (c *Cluster) cleanupLoop() {
	c.tickUntilStop(c.cleanupEvery, func(now time.Time) {
		cutoff := now.Add(-c.cleanupEvery).UnixNano()
		n := 0
		c.orig.Range(func(k, v any) bool {
			ep := v.(*endpoint)
			if ep.active.Load() == 0 && ep.lastUsed.Load() < cutoff {
				c.orig.Delete(k)
				ep.close()
			} else {
				n++
			}
			return true
		})
		c.st.membershipTotal.Set(int64(n))
		c.st.membershipHealthy.Set(int64(n))
	})
}

// tickUntilStop calls tick every d until the cluster stops, then marks the calling goroutine
// done (c.wg). It is the body of the cluster's background loops.
func (c *Cluster) tickUntilStop(d time.Duration, tick func(now time.Time)) {
	defer c.wg.Done()
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case now := <-t.C:
			tick(now)
		}
	}
}

// originalDstEndpoint returns (creating on first use) the host for an original destination.
func (c *Cluster) originalDstEndpoint(a netip.AddrPort) *endpoint {
	if v, ok := c.orig.Load(a); ok {
		return v.(*endpoint)
	}
	ep := c.newEndpoint(a.String(), a.String(), c.defaultTLS)
	ep.healthy, ep.weight = true, 1
	if v, loaded := c.orig.LoadOrStore(a, ep); loaded {
		return v.(*endpoint)
	}
	c.st.membershipChange.Inc()
	return ep
}
