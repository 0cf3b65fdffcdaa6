package telemetry

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/anypb"
	statspb "istio.io/api/envoy/extensions/stats"
)

// TestHotSeriesConcurrent records many label combinations (more than the cache has slots, so
// some share a slot) from many goroutines at once, each in its own order and half of
// them with copies of the strings (equal keys that share no storage), and checks that every
// combination has exactly one series with exactly its requests.
func TestHotSeriesConcurrent(t *testing.T) {
	r := New(Options{Local: local})
	r.SetPeers(CompilePeers(peerTable(20), nil))
	var qs []HTTPRequest
	for c := range 6 {
		cluster := fmt.Sprintf("outbound|80|%c|svc.shop.svc.cluster.local", 'a'+c)
		for code := 200; code < 205; code++ {
			for w := range 4 {
				qs = append(qs, HTTPRequest{Reporter: Source, Code: code, Cluster: cluster, Authority: "svc:80",
					Upstream: fmt.Sprintf("10.0.0.%d:80", w), Duration: time.Duration(w) * time.Millisecond, RequestBytes: int64(code)})
			}
		}
	}
	for code := 200; code < 210; code++ {
		qs = append(qs, HTTPRequest{Reporter: Destination, Code: code, Authority: "reviews:9080", GRPC: code&1 == 0, RequestBytes: int64(code),
			RequestMessages: 1, ResponseMessages: 2})
	}
	const goroutines, rounds = 8, 200
	strides := [goroutines]int{1, 3, 7, 9, 11, 17, 19, 21} // prime to len(qs)
	for _, st := range strides {
		if gcd(st, len(qs)) != 1 {
			t.Fatalf("stride %d shares a factor with %d", st, len(qs))
		}
	}
	var wg sync.WaitGroup
	for g := range goroutines {
		mine := make([]HTTPRequest, len(qs))
		copy(mine, qs)
		if g&1 == 1 {
			for i := range mine {
				mine[i].Cluster, mine[i].Authority = strings.Clone(mine[i].Cluster), strings.Clone(mine[i].Authority)
				mine[i].Upstream = strings.Clone(mine[i].Upstream)
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each round visits every request once, in an order of the goroutine's own.
			stride := strides[g]
			for round := range rounds {
				for j := range mine {
					r.RecordHTTP(&mine[(j*stride+g+round)%len(mine)])
				}
			}
		}()
	}
	wg.Wait()
	series := r.http.series()
	if len(series) != len(qs) {
		t.Fatalf("%d series, want %d", len(series), len(qs))
	}
	seen := map[httpKey]bool{}
	for _, s := range series {
		if seen[s.key] {
			t.Errorf("two series of %+v", s.key)
		}
		seen[s.key] = true
		if n := s.requests(); n != goroutines*rounds {
			t.Errorf("%+v: %d requests, want %d", s.key, n, goroutines*rounds)
		}
		if n := s.reqBytes.sum.Load(); n != goroutines*rounds*uint64(s.key.code) {
			t.Errorf("%+v: request bytes %d, want %d", s.key, n, goroutines*rounds*uint64(s.key.code))
		}
		if s.key.grpc {
			if a, b := s.reqMsgs.Load(), s.respMsgs.Load(); a != goroutines*rounds || b != 2*goroutines*rounds {
				t.Errorf("%+v: messages %d, %d", s.key, a, b)
			}
		}
	}
	if d := r.Dropped(); d != 0 {
		t.Errorf("%d dropped", d)
	}
}

// TestHotSeriesSlotCollision checks that keys sharing a cache slot keep their own series when
// they alternate.
func TestHotSeriesSlotCollision(t *testing.T) {
	r := New(Options{Local: local})
	a := &HTTPRequest{Reporter: Source, Code: 200, Cluster: "outbound|80|v0|svc.shop.svc.cluster.local"}
	ka := httpKey{reporter: Source, code: 200, cluster: a.Cluster}
	var b *HTTPRequest
	for i := 1; b == nil; i++ {
		c := fmt.Sprintf("outbound|80|v%d|svc.shop.svc.cluster.local", i)
		if k := (httpKey{reporter: Source, code: 200, cluster: c}); k.slot() == ka.slot() {
			b = &HTTPRequest{Reporter: Source, Code: 200, Cluster: c}
		}
	}
	for range 10 {
		r.RecordHTTP(a)
		r.RecordHTTP(b)
		r.RecordHTTP(b)
	}
	got := map[string]uint64{}
	for _, s := range r.http.series() {
		got[s.key.cluster] = s.requests()
	}
	if got[a.Cluster] != 10 || got[b.Cluster] != 20 || len(got) != 2 {
		t.Errorf("got %v", got)
	}
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// TestUpstreamCacheConcurrent looks up many upstream hosts (more than the cache has slots,
// known and unknown, valid and not) from many goroutines at once, half of them with copies of
// the strings, and checks every answer against the uncached lookup.
func TestUpstreamCacheConcurrent(t *testing.T) {
	table := peerTable(200)
	p := CompilePeers(table, nil)
	var hosts []string
	for i := range 150 {
		hosts = append(hosts, table.Workloads[i].Addresses[0]+":8080")
	}
	hosts = append(hosts, "10.9.9.9:80", "[::ffff:10.0.0.7]:80", "not-an-address", "10.0.0.7", "10.0.0.7:")
	want := make([]*Peer, len(hosts))
	for i, h := range hosts {
		if ap, err := netip.ParseAddrPort(h); err == nil {
			want[i] = p.byAddress(ap.Addr())
		}
	}
	if want[7] == nil || want[len(hosts)-4] == nil || want[len(hosts)-5] != nil {
		t.Fatalf("fixture: %v %v %v", want[7], want[len(hosts)-4], want[len(hosts)-5])
	}
	strides := [8]int{1, 3, 7, 9, 11, 13, 17, 19}
	for _, st := range strides {
		if gcd(st, len(hosts)) != 1 {
			t.Fatalf("stride %d shares a factor with %d", st, len(hosts))
		}
	}
	var wg sync.WaitGroup
	for g := range strides {
		mine := slices.Clone(hosts)
		if g&1 == 1 {
			for i := range mine {
				mine[i] = strings.Clone(mine[i])
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := range 100 {
				for j := range mine {
					i := (j*strides[g] + round) % len(mine) // every host each round
					if got := p.byUpstream(mine[i]); got != want[i] {
						t.Errorf("byUpstream(%q) = %v, want %v", mine[i], got, want[i])
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	// A new table answers from its own entries, not from the previous table's cache.
	next := CompilePeers(peerTable(0), p)
	if w := next.byUpstream(hosts[7]); w != nil {
		t.Errorf("the new table knows %v", w)
	}
}

// TestBucketIndexMatchesBounds checks bucketIndex against the float bounds it stands for, at
// and around every bound and every power of two.
func TestBucketIndexMatchesBounds(t *testing.T) {
	want := func(v uint64) int {
		for i, b := range Buckets {
			if float64(v) <= b {
				return i
			}
		}
		return len(Buckets)
	}
	var vs []uint64
	for _, b := range Buckets {
		for d := -2; d <= 2; d++ {
			if v := int64(b) + int64(d); v >= 0 {
				vs = append(vs, uint64(v))
			}
		}
	}
	for n := range 64 {
		vs = append(vs, 1<<n-1, 1<<n, 1<<n+1)
	}
	for v := range uint64(5000) {
		vs = append(vs, v)
	}
	vs = append(vs, 1<<64-1)
	for _, v := range vs {
		if got, w := bucketIndex(v), want(v); got != w {
			t.Errorf("bucketIndex(%d) = %d, want %d", v, got, w)
		}
	}
}

// TestHotOverSeriesConcurrent records requests with istio.stats overrides (several dimension
// values per standard series, more combinations than the cache has slots) from many goroutines
// at once and checks that every combination has exactly one overridden series with exactly
// its requests.
func TestHotOverSeriesConcurrent(t *testing.T) {
	r := New(Options{Local: local})
	o := overridesForBench(t)
	var qs []HTTPRequest
	for c := range 4 {
		for code := 200; code < 204; code++ {
			for h := range 20 {
				q := HTTPRequest{Reporter: Source, Code: code, Cluster: fmt.Sprintf("outbound|80||svc-%d.shop.svc.cluster.local", c),
					Overrides: o, RequestBytes: int64(h)}
				if h > 0 { // the first has no value: request_host="unknown"
					q.Dimensions[0] = fmt.Sprintf("host-%d.example:80", h)
				}
				qs = append(qs, q)
			}
		}
	}
	strides := [8]int{1, 3, 7, 9, 11, 13, 17, 19}
	for _, st := range strides {
		if gcd(st, len(qs)) != 1 {
			t.Fatalf("stride %d shares a factor with %d", st, len(qs))
		}
	}
	const rounds = 50
	var wg sync.WaitGroup
	for g := range strides {
		mine := slices.Clone(qs)
		if g&1 == 1 {
			for i := range mine {
				mine[i].Cluster, mine[i].Dimensions[0] = strings.Clone(mine[i].Cluster), strings.Clone(mine[i].Dimensions[0])
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := range rounds {
				for j := range mine {
					r.RecordHTTP(&mine[(j*strides[g]+g+round)%len(mine)])
				}
			}
		}()
	}
	wg.Wait()
	if n := r.http.len(); n != 16 {
		t.Errorf("%d standard series, want 16", n)
	}
	over := r.over.series()
	if len(over) != len(qs) {
		t.Fatalf("%d overridden series, want %d", len(over), len(qs))
	}
	seen := map[overKey[*httpSeries]]bool{}
	for _, s := range over {
		if seen[s.okey] {
			t.Errorf("two series of %+v", s.okey)
		}
		seen[s.okey] = true
		want := uint64(len(strides) * rounds)
		if n := s.requests(); n != want {
			t.Errorf("%v: %d requests, want %d", s.okey.dims[0], n, want)
		}
		var h uint64
		if v, ok := strings.CutPrefix(s.okey.dims[0], "host-"); ok {
			fmt.Sscanf(v, "%d", &h)
		}
		if n := s.reqBytes.sum.Load(); n != want*h {
			t.Errorf("%v: request bytes %d, want %d", s.okey.dims[0], n, want*h)
		}
		if !strings.Contains(s.labels[metricRequests], `request_host="`+dimValue(s.okey.dims[0])+`"`) {
			t.Errorf("labels %s, want request_host %q", s.labels[metricRequests], dimValue(s.okey.dims[0]))
		}
	}
	for _, s := range r.http.series() {
		if n := s.requests(); n != 0 {
			t.Errorf("the standard series recorded %d requests", n)
		}
	}
}

// overridesForBench compiles HTTP overrides: istio_requests_total gets request_host from
// request.host (expression 0) and loses request_protocol; istio_request_bytes is dropped.
func overridesForBench(tb testing.TB) *Overrides {
	a, err := anypb.New(&statspb.PluginConfig{Metrics: []*statspb.MetricConfig{
		{Name: "requests_total", Dimensions: map[string]string{"request_host": "request.host"}, TagsToRemove: []string{"request_protocol"}},
		{Name: "request_bytes", Drop: true},
	}})
	if err != nil {
		tb.Fatal(err)
	}
	c, err := CompileStatsConfig("istio.stats", a)
	if err != nil {
		tb.Fatal(err)
	}
	return c.Overrides
}

// TestIdentityCacheConcurrent looks up many client identities (more than the cache has slots:
// known, unknown, of another trust domain, malformed) from many goroutines at once, half of
// them with copies of the strings, and checks every answer against the uncached lookup.
func TestIdentityCacheConcurrent(t *testing.T) {
	p := CompilePeers(peerTable(200), nil)
	var ids []spiffeRef
	for i := range 150 {
		ids = append(ids, ref(fmt.Sprintf("spiffe://cluster.local/ns/shop/sa/service-%04d", i)))
	}
	ids = append(ids, ref("spiffe://other.local/ns/shop/sa/service-0001"), ref("spiffe://cluster.local/ns/shop/sa/nobody"),
		ref("spiffe://cluster.local/ns/shop"), ref("spiffe://cluster.local/ns/shop/sa/service-0001/x"), spiffeRef{})
	want := make([]*identityPeers, len(ids))
	for i, id := range ids {
		want[i] = p.lookupID(id)
	}
	if want[1] == nil || want[150] != nil || want[153] != nil {
		t.Fatal("fixture")
	}
	strides := [8]int{1, 3, 7, 9, 11, 13, 17, 19}
	for _, st := range strides {
		if gcd(st, len(ids)) != 1 {
			t.Fatalf("stride %d shares a factor with %d", st, len(ids))
		}
	}
	var wg sync.WaitGroup
	for g := range strides {
		mine := slices.Clone(ids)
		if g&1 == 1 {
			for i := range mine {
				mine[i] = spiffeRef{strings.Clone(mine[i].trustDomain), strings.Clone(mine[i].path)}
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := range 100 {
				for j := range mine {
					i := (j*strides[g] + round) % len(mine)
					if got := p.byID(mine[i]); got != want[i] {
						t.Errorf("byID(%v) = %v, want %v", mine[i], got, want[i])
						return
					}
				}
			}
		}()
	}
	wg.Wait()
}

// TestHTTPKeyEqual checks httpKey.equal against ==, with keys that differ in one field each;
// a field added to httpKey must be added to equal (and here).
func TestHTTPKeyEqual(t *testing.T) {
	if n, s, r := reflect.TypeFor[httpKey]().NumField(), reflect.TypeFor[Service]().NumField(), reflect.TypeFor[spiffeRef]().NumField(); n != 12 || s != 3 || r != 2 {
		t.Fatalf("httpKey has %d fields, Service %d, spiffeRef %d: update httpKey.equal and this test", n, s, r)
	}
	p1, p2 := &Peer{Workload: local}, &Peer{Workload: local}
	base := httpKey{reporter: Source, code: 200, flags: 4, grpcStatus: "0", cluster: "c", authority: "a",
		service: Service{"h", "n", "ns"}, peer: spiffeRef{"td", "/p"}, local: spiffeRef{"td", "/l"}, peerWL: p1}
	changes := []func(k *httpKey){
		func(k *httpKey) { k.reporter = Destination }, func(k *httpKey) { k.grpc = true }, func(k *httpKey) { k.mtls = true },
		func(k *httpKey) { k.code = 201 }, func(k *httpKey) { k.flags = 5 }, func(k *httpKey) { k.grpcStatus = "1" },
		func(k *httpKey) { k.grpcStatus = "" }, func(k *httpKey) { k.cluster = "d" }, func(k *httpKey) { k.authority = "ab" },
		func(k *httpKey) { k.service.Host = "x" }, func(k *httpKey) { k.service.Name = "x" }, func(k *httpKey) { k.service.Namespace = "x" },
		func(k *httpKey) { k.peer.trustDomain = "x" }, func(k *httpKey) { k.peer.path = "/x" }, func(k *httpKey) { k.local.trustDomain = "x" },
		func(k *httpKey) { k.local.path = "/x" }, func(k *httpKey) { k.peerWL = p2 }, func(k *httpKey) { k.peerWL = nil },
		// Equal content in other storage (equalStrings), one string at a time and all at once.
		func(k *httpKey) { k.cluster = strings.Clone(k.cluster) }, func(k *httpKey) { k.authority = strings.Clone(k.authority) },
		func(k *httpKey) { k.grpcStatus = strings.Clone(k.grpcStatus) }, func(k *httpKey) { k.service.Host = strings.Clone(k.service.Host) },
		func(k *httpKey) { k.service.Name = strings.Clone(k.service.Name) },
		func(k *httpKey) { k.service.Namespace = strings.Clone(k.service.Namespace) },
		func(k *httpKey) { k.peer.trustDomain = strings.Clone(k.peer.trustDomain) },
		func(k *httpKey) { k.peer.path = strings.Clone(k.peer.path) },
		func(k *httpKey) { k.local.trustDomain = strings.Clone(k.local.trustDomain) },
		func(k *httpKey) { k.local.path = strings.Clone(k.local.path) },
		func(k *httpKey) {
			for _, p := range []*string{&k.cluster, &k.authority, &k.grpcStatus, &k.service.Host, &k.service.Name,
				&k.service.Namespace, &k.peer.trustDomain, &k.peer.path, &k.local.trustDomain, &k.local.path} {
				*p = strings.Clone(*p)
			}
		},
		// A string sharing storage with another but shorter (a prefix): the words differ.
		func(k *httpKey) { k.peer.path = k.peer.path[:1] }, func(k *httpKey) { k.local.path = k.local.path[:1] },
		// Other content, other storage, same length.
		func(k *httpKey) { k.service.Namespace = "nz" }, func(k *httpKey) { k.local.path = "/m" },
	}
	for i, change := range changes {
		k := base
		change(&k)
		if got, want := base.equal(&k), base == k; got != want || k.equal(&base) != want {
			t.Errorf("change %d: equal %v, == %v", i, got, want)
		}
	}
	if k := base; !k.equal(&base) {
		t.Error("a key is not equal to itself")
	}
}

// TestUpstreamCacheManyHosts: more upstream hosts in rotation than the cache holds cost an
// allocation on a fraction of the lookups only (replace), and every answer stays right.
func TestUpstreamCacheManyHosts(t *testing.T) {
	table := peerTable(600)
	p := CompilePeers(table, nil)
	hosts := make([]string, 600)
	for i := range hosts {
		hosts[i] = table.Workloads[i].Addresses[0] + ":80"
	}
	lookups := func() {
		for i, h := range hosts {
			if w := p.byUpstream(h); w == nil || w.Name != table.Workloads[i].Name {
				t.Fatalf("byUpstream(%q) = %v", h, w)
			}
		}
	}
	lookups()
	n := testing.AllocsPerRun(10, lookups)
	if n > float64(len(hosts))/4 {
		t.Errorf("%v allocations for %d lookups", n, len(hosts))
	}
	t.Logf("%v allocations for %d lookups", n, len(hosts))
}

// TestOutboundCluster checks outboundCluster against strings.HasPrefix, which it stands for.
func TestOutboundCluster(t *testing.T) {
	for _, name := range []string{"", "outbound", "outbound|", "outbound|9080||reviews.default.svc.cluster.local",
		"outbound_", "outbounD|80||x", "inbound|9080||", "PassthroughCluster", "xoutbound|"} {
		if got, want := outboundCluster(name), strings.HasPrefix(name, "outbound|"); got != want {
			t.Errorf("outboundCluster(%q) = %v, want %v", name, got, want)
		}
	}
}
