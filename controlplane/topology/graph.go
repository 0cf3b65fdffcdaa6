package topology

import (
	"cmp"
	"math"
	"slices"
	"strings"
	"time"
)

// Node kinds of the graph.
const (
	KindWorkload = "workload" // a workload with a sidecar (or one its peers' metrics name)
	KindGateway  = "gateway"  // a router proxy (ingress or egress gateway)
	KindService  = "service"  // a destination service (destination_service)
	KindUnknown  = "unknown"  // a peer the metrics cannot name
)

// Protocols of edges: request_protocol for HTTP-family series, "tcp" for istio_tcp_*.
const (
	ProtocolHTTP = "http"
	ProtocolGRPC = "grpc"
	ProtocolTCP  = "tcp"
)

// unknownID is the node of a peer that the metrics do not name.
const unknownID = "unknown"

// Graph is the mesh's service graph at one moment: workloads and services, and the traffic
// between them over the window between each proxy's last two scrapes.
type Graph struct {
	GeneratedAt time.Time `json:"generatedAt"`
	// WindowSeconds is the longest time between a proxy's last two scrapes (rates are per
	// second over each proxy's own window); 0 until proxies were scraped twice.
	WindowSeconds float64       `json:"windowSeconds"`
	Nodes         []Node        `json:"nodes"`
	Edges         []Edge        `json:"edges"`
	Proxies       []ProxyScrape `json:"proxies"`
	// Truncated lists what was left out to stay within the scraper's limits.
	Truncated []string `json:"truncated,omitempty"`
}

// Node is a workload, gateway or service of the graph.
type Node struct {
	// ID is "workload:NS/NAME", "service:HOSTNAME" or "unknown".
	ID        string `json:"id"`
	Kind      string `json:"kind"`
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
	// Service is the hostname of a service node.
	Service string `json:"service,omitempty"`
	// Version is a workload's canonical revision, when its metrics report one.
	Version string `json:"version,omitempty"`
	// Proxy is the node ID of a workload's connected proxy (the first, if several).
	Proxy string `json:"proxy,omitempty"`
}

// Edge is the traffic from one node to another over one protocol. HTTP and gRPC edges carry
// request rates, the 5xx share and latency quantiles; TCP edges carry bytes per second.
type Edge struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	Protocol string `json:"protocol"`
	// Reporter is whose series the edge comes from: "source" (the caller's proxy) or
	// "destination" (the callee's).
	Reporter          string  `json:"reporter"`
	RequestsPerSecond float64 `json:"requestsPerSecond"`
	// ErrorRate is the share of those requests answered with a 5xx code (0..1).
	ErrorRate float64 `json:"errorRate"`
	// P50 and P99 are latency quantiles in milliseconds, Prometheus' histogram_quantile over
	// the window's buckets; nil without requests in the window.
	P50 *float64 `json:"p50Ms,omitempty"`
	P99 *float64 `json:"p99Ms,omitempty"`
	// BytesPerSecond is sent plus received bytes per second of a TCP edge (counted when a
	// connection closes, as Istio does).
	BytesPerSecond float64 `json:"bytesPerSecond,omitempty"`
	// Share is this edge's part of its source node's outgoing traffic of the same kind
	// (requests, or TCP bytes) in the window: from a service, its traffic split over
	// workloads.
	Share float64 `json:"share"`
	// Total is the requests (or TCP bytes) counted since the proxies started.
	Total float64 `json:"total"`
	// MTLS is true when all of the edge's traffic that a destination proxy reported arrived
	// over mutual TLS (connection_security_policy="mutual_tls").
	MTLS bool `json:"mtls"`
}

// ProxyScrape is the scrape state of one connected proxy.
type ProxyScrape struct {
	Proxy      string    `json:"proxy"`
	Address    string    `json:"address,omitempty"`
	LastScrape time.Time `json:"lastScrape,omitzero"`
	Series     int       `json:"series"`
	Error      string    `json:"error,omitempty"`
}

// proxyData is the input of compute for one proxy: its identity and last two samples.
type proxyData struct {
	target     Target
	prev, cur  sample // cur nil: never scraped successfully; prev nil: scraped once
	prevAt, at time.Time
}

// edgeKey identifies an edge while it is accumulated.
type edgeKey struct {
	from, to, protocol string
}

// edgeAcc accumulates an edge's series.
type edgeAcc struct {
	reporter      string
	rate, errRate float64 // requests (or bytes) per second; 5xx per second
	total         float64
	buckets       map[float64]float64 // duration bucket increases in the window, by upper bound
	secure, all   float64             // traffic weights for the mTLS verdict
	haveWindow    bool
}

// secKey finds destination-reported traffic of one caller to one service.
type secKey struct {
	service, caller, class string // caller: "w:NS/NAME" or "p:PRINCIPAL"; class: "http" or "tcp"
}

// compute builds the graph from every proxy's samples. It reads the inputs only.
func compute(in []proxyData, now time.Time) *Graph {
	g := &Graph{GeneratedAt: now, Nodes: []Node{}, Edges: []Edge{}, Proxies: []ProxyScrape{}}
	nodes := map[string]*Node{}
	addNode := func(n Node) string {
		if old, ok := nodes[n.ID]; ok {
			if old.Version == "" {
				old.Version = n.Version
			}
			if old.Proxy == "" {
				old.Proxy = n.Proxy
			}
			if old.Kind == KindWorkload && n.Kind == KindGateway {
				old.Kind = KindGateway
			}
			return n.ID
		}
		nodes[n.ID] = &n
		return n.ID
	}
	for _, p := range in {
		if p.target.Workload == "" {
			continue
		}
		kind := KindWorkload
		if p.target.Gateway {
			kind = KindGateway
		}
		addNode(Node{ID: workloadID(p.target.Namespace, p.target.Workload), Kind: kind, Name: p.target.Workload,
			Namespace: p.target.Namespace, Proxy: p.target.Proxy})
	}

	// One pass over every series: per-series window rate, then grouped by edge.
	type seriesRate struct {
		key    seriesKey
		inc    float64 // increase in the window
		rate   float64 // per second
		total  float64 // latest value
		window bool    // the proxy has two samples
	}
	var all []seriesRate
	localSources := map[string]bool{} // workloads whose own proxies report their outbound traffic
	localDests := map[string]bool{}   // workloads whose own proxies report their inbound traffic
	principals := map[string]map[string]bool{}
	for _, p := range in {
		if p.cur == nil {
			continue
		}
		dt := p.at.Sub(p.prevAt).Seconds()
		window := p.prev != nil && dt > 0
		if window {
			g.WindowSeconds = max(g.WindowSeconds, dt)
		}
		for k, v := range p.cur {
			sr := seriesRate{key: k, total: v, window: window}
			if window {
				sr.inc = v
				if old, ok := p.prev[k]; ok && old <= v {
					sr.inc = v - old // else a counter reset (or a new series): all of v is new
				}
				sr.rate = sr.inc / dt
			}
			all = append(all, sr)
			l := k.labels
			switch l.Reporter {
			case "source":
				if known(l.SourceWorkload) {
					w := workloadID(l.SourceNamespace, l.SourceWorkload)
					localSources[w] = true
					if known(l.SourcePrincipal) {
						if principals[w] == nil {
							principals[w] = map[string]bool{}
						}
						principals[w][l.SourcePrincipal] = true
					}
				}
			case "destination":
				if known(l.DestWorkload) {
					localDests[workloadID(l.DestNamespace, l.DestWorkload)] = true
				}
			}
		}
	}

	edges := map[edgeKey]*edgeAcc{}
	security := map[secKey][2]float64{} // secure, all
	weight := func(sr seriesRate) float64 {
		if sr.window {
			return sr.inc
		}
		return sr.total
	}
	for _, sr := range all {
		l := sr.key.labels
		if l.Reporter != "source" && l.Reporter != "destination" {
			continue
		}
		svc := addNode(serviceNode(l))
		var from, to string
		switch {
		case l.Reporter == "source":
			from = addNode(workloadNode(l.SourceNamespace, l.SourceWorkload, ""))
			to = svc
		case known(l.SourceWorkload) && !localSources[workloadID(l.SourceNamespace, l.SourceWorkload)]:
			// A caller no scraped proxy reports for: its edge comes from the destination.
			from = addNode(workloadNode(l.SourceNamespace, l.SourceWorkload, ""))
			to = svc
		}
		// Destination-reported series say themselves whether they arrived over mutual TLS.
		add := func(from, to string) {
			acc := addSeries(edges, edgeKey{from, to, protocolOf(l)}, sr.key, l.Reporter, sr.rate, sr.total, sr.window, sr.inc)
			if l.Reporter == "destination" && sr.key.kind != kindDurationBucket {
				w := weight(sr)
				acc.all += w
				if l.SecurityPolicy == "mutual_tls" {
					acc.secure += w
				}
			}
		}
		if from != "" {
			add(from, to)
		}
		switch {
		case l.Reporter == "destination":
			add(svc, addNode(workloadNode(l.DestNamespace, l.DestWorkload, l.DestVersion)))
		case known(l.DestWorkload) && !localDests[workloadID(l.DestNamespace, l.DestWorkload)]:
			// A callee no scraped proxy reports for (peer labels known to the caller).
			add(svc, addNode(workloadNode(l.DestNamespace, l.DestWorkload, "")))
		}
		// What the destination saw of each caller, for the mTLS verdict of source edges.
		if l.Reporter == "destination" && sr.key.kind != kindDurationBucket {
			class := classOf(sr.key.kind)
			w := weight(sr)
			callers := []string{}
			if known(l.SourceWorkload) {
				callers = append(callers, "w:"+workloadID(l.SourceNamespace, l.SourceWorkload))
			}
			if known(l.SourcePrincipal) {
				callers = append(callers, "p:"+l.SourcePrincipal)
			}
			for _, c := range callers {
				k := secKey{l.DestService, c, class}
				v := security[k]
				v[1] += w
				if l.SecurityPolicy == "mutual_tls" {
					v[0] += w
				}
				security[k] = v
			}
		}
	}

	// The mTLS verdict of source-reported edges: what the destinations saw of that caller,
	// by its workload name when the peer labels are known, else by its principals.
	for k, acc := range edges {
		if acc.reporter != "source" || !strings.HasPrefix(k.from, "workload:") {
			continue
		}
		n := nodes[k.to]
		if n == nil || n.Kind != KindService {
			continue
		}
		class := "http"
		if k.protocol == ProtocolTCP {
			class = "tcp"
		}
		v := security[secKey{n.Service, "w:" + k.from, class}]
		if v[1] == 0 {
			for pr := range principals[k.from] {
				pv := security[secKey{n.Service, "p:" + pr, class}]
				v[0] += pv[0]
				v[1] += pv[1]
			}
		}
		acc.secure, acc.all = v[0], v[1]
	}

	// Shares: each edge's part of its source's outgoing traffic of its class.
	out := map[string]float64{}
	for k, acc := range edges {
		out[k.from+"|"+classOfProtocol(k.protocol)] += acc.rate
	}
	for k, acc := range edges {
		// Sums of huge counter values may overflow: JSON has no infinities, so they read 0.
		e := Edge{Source: k.from, Target: k.to, Protocol: k.protocol, Reporter: acc.reporter, Total: finite(acc.total),
			MTLS: acc.all > 0 && acc.secure >= acc.all}
		if k.protocol == ProtocolTCP {
			e.BytesPerSecond = finite(acc.rate)
		} else {
			e.RequestsPerSecond = finite(acc.rate)
			if acc.rate > 0 {
				e.ErrorRate = finite(acc.errRate / acc.rate)
			}
			e.P50 = quantilePtr(0.5, acc.buckets)
			e.P99 = quantilePtr(0.99, acc.buckets)
		}
		if sum := out[k.from+"|"+classOfProtocol(k.protocol)]; sum > 0 {
			e.Share = finite(acc.rate / sum)
		}
		g.Edges = append(g.Edges, e)
	}
	slices.SortFunc(g.Edges, func(a, b Edge) int {
		return cmp.Or(cmp.Compare(a.Source, b.Source), cmp.Compare(a.Target, b.Target), cmp.Compare(a.Protocol, b.Protocol))
	})
	for _, n := range nodes {
		g.Nodes = append(g.Nodes, *n)
	}
	slices.SortFunc(g.Nodes, func(a, b Node) int { return cmp.Compare(a.ID, b.ID) })
	return g
}

// addSeries adds one series' rate to an edge and returns the edge.
func addSeries(edges map[edgeKey]*edgeAcc, k edgeKey, sk seriesKey, reporter string, rate, total float64, window bool, inc float64) *edgeAcc {
	acc := edges[k]
	if acc == nil {
		acc = &edgeAcc{reporter: reporter, buckets: map[float64]float64{}}
		edges[k] = acc
	}
	acc.haveWindow = acc.haveWindow || window
	switch sk.kind {
	case kindDurationBucket:
		if window {
			acc.buckets[sk.le] += inc
		}
	case kindRequests:
		acc.rate += rate
		acc.total += total
		if c := sk.labels.ResponseCode; len(c) == 3 && c[0] == '5' {
			acc.errRate += rate
		}
	case kindTCPSent, kindTCPReceived:
		acc.rate += rate
		acc.total += total
	}
	return acc
}

// quantilePtr returns histogramQuantile(q, buckets), or nil when there is nothing to rank.
func quantilePtr(q float64, buckets map[float64]float64) *float64 {
	if len(buckets) == 0 {
		return nil
	}
	bs := make([]bucket, 0, len(buckets))
	for le, c := range buckets {
		bs = append(bs, bucket{le, c})
	}
	v := histogramQuantile(q, bs)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// finite returns x, or 0 for a NaN or an infinity.
func finite(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return 0
	}
	return x
}

func protocolOf(l labels) string {
	if l.Protocol == "" || l.Protocol == "unknown" {
		return ProtocolHTTP
	}
	return l.Protocol
}

func classOf(kind uint8) string {
	if kind == kindTCPSent || kind == kindTCPReceived {
		return "tcp"
	}
	return "http"
}

func classOfProtocol(p string) string {
	if p == ProtocolTCP {
		return "tcp"
	}
	return "http"
}

// known reports whether a label value names something (Istio writes "unknown" otherwise).
func known(v string) bool { return v != "" && v != "unknown" }

func workloadID(ns, name string) string { return "workload:" + ns + "/" + name }

// workloadNode is the node of a workload named by metrics labels ("unknown" when unnamed).
func workloadNode(ns, name, version string) Node {
	if !known(name) {
		return Node{ID: unknownID, Kind: KindUnknown, Name: "unknown"}
	}
	if !known(version) || version == "latest" {
		version = ""
	}
	if !known(ns) {
		ns = "unknown"
	}
	return Node{ID: workloadID(ns, name), Kind: KindWorkload, Name: name, Namespace: ns, Version: version}
}

// serviceNode is the node of a series' destination service.
func serviceNode(l labels) Node {
	if !known(l.DestService) {
		return Node{ID: unknownID, Kind: KindUnknown, Name: "unknown"}
	}
	name, ns := l.DestServiceName, l.DestServiceNS
	if !known(name) {
		name = l.DestService
	}
	if !known(ns) {
		ns = ""
	}
	return Node{ID: "service:" + l.DestService, Kind: KindService, Name: name, Namespace: ns, Service: l.DestService}
}
