// Package balance chooses an upstream host for a request, with Envoy's load-balancing semantics:
// ROUND_ROBIN (smooth weighted), LEAST_REQUEST (power of N choices), RANDOM, RING_HASH and MAGLEV,
// over priority levels (failover by healthy percentage with an overprovisioning factor, healthy
// panic threshold) and, optionally, locality weights.
//
// A *Set is built once per host-set change by New and never mutated afterwards; the owner (an
// upstream cluster) publishes it through an atomic pointer. Pick is safe for concurrent use,
// takes no locks and does not allocate.
package balance

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"sync/atomic"
)

// Context carries the per-request input to host selection. l7 computes Hash from the route's
// hash policy; HasHash is false when the route has none (or none of its policies produced a
// value), in which case hashing balancers pick at random.
type Context struct {
	Hash    uint64
	HasHash bool
}

// Policy is a load-balancing algorithm.
type Policy int

// The supported policies, named as in Envoy's Cluster.LbPolicy.
const (
	RoundRobin Policy = iota
	LeastRequest
	Random
	RingHash
	Maglev
)

// String returns the Envoy name of the policy.
func (p Policy) String() string {
	switch p {
	case RoundRobin:
		return "ROUND_ROBIN"
	case LeastRequest:
		return "LEAST_REQUEST"
	case Random:
		return "RANDOM"
	case RingHash:
		return "RING_HASH"
	case Maglev:
		return "MAGLEV"
	}
	return fmt.Sprintf("Policy(%d)", int(p))
}

// Defaults, as in Envoy.
const (
	DefaultMinRingSize            = 1024
	DefaultMaxRingSize            = 8 * 1024 * 1024
	DefaultMaglevTableSize        = 65537
	DefaultChoiceCount            = 2
	DefaultPanicThreshold         = 50.0
	DefaultOverprovisioningFactor = 140
)

// Config selects and tunes the algorithm. The zero value of a numeric field means "Envoy's
// default" except PanicThreshold, whose zero disables panic mode: use NewConfig for defaults.
type Config struct {
	Policy Policy
	// MinRingSize and MaxRingSize bound the ring of RING_HASH.
	MinRingSize, MaxRingSize uint64
	// MaglevTableSize is the lookup table size of MAGLEV; it must be prime.
	MaglevTableSize uint64
	// ChoiceCount is the number of random candidates LEAST_REQUEST compares.
	ChoiceCount uint32
	// ActiveRequestBias is the exponent of weighted LEAST_REQUEST: effective weight =
	// weight / (active+1)^bias.
	ActiveRequestBias float64
	// LocalityWeighted enables locality-weighted selection inside a priority (Envoy's
	// locality_weighted_lb_config). Ignored by RING_HASH and MAGLEV, as in Envoy.
	LocalityWeighted bool
	// PanicThreshold is the healthy percentage (0-100) under which a priority level is in panic
	// and its hosts are used regardless of health. 0 disables panic mode.
	PanicThreshold float64
	// OverprovisioningFactor is Envoy's overprovisioning factor in percent (140 = 1.4).
	OverprovisioningFactor uint32
}

// NewConfig returns a Config for p with Envoy's defaults.
func NewConfig(p Policy) Config {
	return Config{
		Policy:                 p,
		MinRingSize:            DefaultMinRingSize,
		MaxRingSize:            DefaultMaxRingSize,
		MaglevTableSize:        DefaultMaglevTableSize,
		ChoiceCount:            DefaultChoiceCount,
		ActiveRequestBias:      1,
		PanicThreshold:         DefaultPanicThreshold,
		OverprovisioningFactor: DefaultOverprovisioningFactor,
	}
}

// Host is one endpoint as the balancer sees it. The owner keeps per-host state that outlives
// a Set (active request counts) behind pointers, so rebuilding a Set does not reset it.
type Host struct {
	// Key identifies the host for RING_HASH and MAGLEV placement (Envoy hashes the address,
	// "ip:port"). Keys should be unique within a Set.
	Key string
	// Weight is the endpoint's load_balancing_weight; 0 is treated as 1.
	Weight uint32
	// Priority is the endpoint's priority level; 0 is the highest.
	Priority uint32
	// Locality names the host's locality (region/zone/subzone); LocalityWeight is that
	// locality's load_balancing_weight (0 means the locality gets no traffic when
	// LocalityWeighted is set, as in Envoy).
	Locality       string
	LocalityWeight uint32
	// Healthy reports whether the host may take traffic (EDS health and outlier detection).
	Healthy bool
	// Degraded marks a healthy host that should take traffic only when the healthy hosts of
	// all priorities fall short (EDS DEGRADED): degraded hosts form a further spill-over level.
	Degraded bool
	// Active points at the host's outstanding-request count, used by LEAST_REQUEST. May be nil.
	Active *atomic.Int64
}

// picker chooses a host index (into Set.hosts) among a fixed subset, or -1.
type picker interface {
	pick(c Context) int
}

type locality struct {
	healthy, all picker
}

type level struct {
	healthy, degraded, all picker // over the whole level
	panic                  bool
	// Locality-weighted selection (only when Config.LocalityWeighted and the policy allows).
	localities []locality
	locSched   *schedule // over localities by effective weight (healthy)
	locAll     *schedule // over localities by configured weight (panic)
}

// Set is an immutable, balanced host set. Build one with New.
type Set struct {
	hosts  []Host
	levels []level
	// cumLoad[b] is the cumulative load (percent, 0-100) up to and including bucket b: buckets
	// 0..n-1 are the healthy hosts of levels 0..n-1, buckets n..2n-1 their degraded hosts.
	cumLoad []uint32
	healthy int
	// single is set when Pick always returns host 0 whatever the Context: one healthy host,
	// alone in its priority level, which takes all the load, outside panic and locality
	// weighting. Pick then skips the bucket and picker steps, whose answer is known.
	single bool
}

// New builds a Set over hosts (copied) for cfg. Host indices returned by Pick refer to the
// order of hosts. An empty or all-unhealthy set is valid.
func New(cfg Config, hosts []Host) (*Set, error) {
	if err := validate(&cfg); err != nil {
		return nil, err
	}
	s := &Set{hosts: append([]Host(nil), hosts...)}
	// Group host indices by priority, in ascending priority order.
	byPrio := map[uint32][]int{}
	var prios []uint32
	for i := range s.hosts {
		h := &s.hosts[i]
		if h.Weight == 0 {
			h.Weight = 1
		}
		if h.Healthy {
			s.healthy++
		}
		if _, ok := byPrio[h.Priority]; !ok {
			prios = append(prios, h.Priority)
		}
		byPrio[h.Priority] = append(byPrio[h.Priority], i)
	}
	sort.Slice(prios, func(i, j int) bool { return prios[i] < prios[j] })

	health := make([]uint32, len(prios))
	degradedHealth := make([]uint32, len(prios))
	for li, p := range prios {
		idx := byPrio[p]
		var healthy, degraded []int
		for _, i := range idx {
			switch h := &s.hosts[i]; {
			case h.Healthy && h.Degraded:
				degraded = append(degraded, i)
			case h.Healthy:
				healthy = append(healthy, i)
			}
		}
		lv := level{}
		var err error
		if lv.healthy, err = s.newPicker(cfg, healthy); err != nil {
			return nil, err
		}
		if lv.degraded, err = s.newPicker(cfg, degraded); err != nil {
			return nil, err
		}
		if lv.all, err = s.newPicker(cfg, idx); err != nil {
			return nil, err
		}
		op, n := uint64(cfg.OverprovisioningFactor), uint64(len(idx))
		health[li] = uint32(min(100, op*uint64(len(healthy))/n))
		degradedHealth[li] = uint32(min(100, op*uint64(len(degraded))/n))
		pct := 100 * float64(len(healthy)+len(degraded)) / float64(len(idx))
		lv.panic = cfg.PanicThreshold > 0 && pct < cfg.PanicThreshold
		if cfg.LocalityWeighted && cfg.Policy != RingHash && cfg.Policy != Maglev {
			if err := s.buildLocalities(cfg, &lv, idx); err != nil {
				return nil, err
			}
		}
		s.levels = append(s.levels, lv)
	}
	s.cumLoad = priorityLoad(health, degradedHealth)
	// Envoy disregards panic when the levels together have full capacity.
	var total uint32
	for i := range health {
		total += health[i] + degradedHealth[i]
	}
	if total >= 100 {
		for i := range s.levels {
			s.levels[i].panic = false
		}
	}
	s.single = len(s.hosts) == 1 && s.hosts[0].Healthy && !s.hosts[0].Degraded &&
		len(s.levels) == 1 && s.cumLoad[0] == 100 && !s.levels[0].panic && s.levels[0].locSched == nil
	return s, nil
}

func validate(cfg *Config) error {
	switch cfg.Policy {
	case RoundRobin, LeastRequest, Random, RingHash, Maglev:
	default:
		return fmt.Errorf("unknown load balancing policy %d", int(cfg.Policy))
	}
	if cfg.MinRingSize == 0 {
		cfg.MinRingSize = DefaultMinRingSize
	}
	if cfg.MaxRingSize == 0 {
		cfg.MaxRingSize = DefaultMaxRingSize
	}
	if cfg.MinRingSize > cfg.MaxRingSize {
		return fmt.Errorf("ring hash: minimum_ring_size %d exceeds maximum_ring_size %d", cfg.MinRingSize, cfg.MaxRingSize)
	}
	if cfg.MaxRingSize > DefaultMaxRingSize {
		return fmt.Errorf("ring hash: maximum_ring_size %d exceeds the limit %d", cfg.MaxRingSize, DefaultMaxRingSize)
	}
	if cfg.MaglevTableSize == 0 {
		cfg.MaglevTableSize = DefaultMaglevTableSize
	}
	if !isPrime(cfg.MaglevTableSize) || cfg.MaglevTableSize > 5000011 {
		return fmt.Errorf("maglev: table_size %d must be a prime no larger than 5000011", cfg.MaglevTableSize)
	}
	if cfg.ChoiceCount == 0 {
		cfg.ChoiceCount = DefaultChoiceCount
	}
	if cfg.ChoiceCount > 100 {
		return fmt.Errorf("least request: choice_count %d is too large", cfg.ChoiceCount)
	}
	if cfg.ActiveRequestBias < 0 {
		return fmt.Errorf("least request: active_request_bias %v is negative", cfg.ActiveRequestBias)
	}
	if cfg.OverprovisioningFactor == 0 {
		cfg.OverprovisioningFactor = DefaultOverprovisioningFactor
	}
	if cfg.PanicThreshold < 0 || cfg.PanicThreshold > 100 {
		return fmt.Errorf("healthy_panic_threshold %v is not a percentage", cfg.PanicThreshold)
	}
	return nil
}

func isPrime(n uint64) bool {
	if n < 2 {
		return false
	}
	for d := uint64(2); d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

// priorityLoad turns per-level health and degraded availability (0-100, already scaled by
// overprovisioning) into cumulative bucket loads, as Envoy does: healthy hosts of each level in
// priority order take load up to their availability, then degraded hosts of each level, all
// normalized by the total availability when it is under 100. With no availability anywhere,
// level 0 takes everything (and is in panic).
func priorityLoad(health, degraded []uint32) []uint32 {
	n := len(health)
	avail := append(append([]uint32(nil), health...), degraded...)
	cum := make([]uint32, 2*n)
	if n == 0 {
		return cum
	}
	var total uint32
	for _, a := range avail {
		total += a
	}
	total = min(total, 100)
	load := make([]uint32, 2*n)
	if total == 0 {
		load[0] = 100
	} else {
		remaining := uint32(100)
		for b, a := range avail {
			l := min(remaining, a*100/total)
			load[b] = l
			remaining -= l
		}
		// Rounding leftovers go to the first bucket that has availability.
		if remaining > 0 {
			for b, a := range avail {
				if a > 0 {
					load[b] += remaining
					break
				}
			}
		}
	}
	var acc uint32
	for b, l := range load {
		acc += l
		cum[b] = acc
	}
	return cum
}

func (s *Set) buildLocalities(cfg Config, lv *level, idx []int) error {
	byLoc := map[string][]int{}
	var names []string
	for _, i := range idx {
		l := s.hosts[i].Locality
		if _, ok := byLoc[l]; !ok {
			names = append(names, l)
		}
		byLoc[l] = append(byLoc[l], i)
	}
	sort.Strings(names)
	eff := make([]uint64, len(names))
	conf := make([]uint64, len(names))
	for n, name := range names {
		members := byLoc[name]
		var healthy []int
		for _, i := range members {
			if s.hosts[i].Healthy && !s.hosts[i].Degraded {
				healthy = append(healthy, i)
			}
		}
		var loc locality
		var err error
		if loc.healthy, err = s.newPicker(cfg, healthy); err != nil {
			return err
		}
		if loc.all, err = s.newPicker(cfg, members); err != nil {
			return err
		}
		lv.localities = append(lv.localities, loc)
		w := uint64(s.hosts[members[0]].LocalityWeight)
		conf[n] = w
		// Effective weight = locality weight × availability, availability =
		// min(1, overprovisioning × healthy/total), kept in integer percent.
		avail := min(100, uint64(cfg.OverprovisioningFactor)*uint64(len(healthy))/uint64(len(members)))
		eff[n] = w * avail
	}
	lv.locSched = newSchedule(eff)
	lv.locAll = newSchedule(conf)
	return nil
}

func (s *Set) newPicker(cfg Config, idx []int) (picker, error) {
	if len(idx) == 0 {
		return nil, nil
	}
	switch cfg.Policy {
	case RoundRobin:
		return newRoundRobin(s.hosts, idx), nil
	case LeastRequest:
		return newLeastRequest(s.hosts, idx, cfg), nil
	case Random:
		return &randomPicker{idx: toInt32(idx)}, nil
	case RingHash:
		return newRing(s.hosts, idx, cfg.MinRingSize, cfg.MaxRingSize)
	case Maglev:
		return newMaglev(s.hosts, idx, cfg.MaglevTableSize), nil
	}
	return nil, fmt.Errorf("unknown load balancing policy %d", int(cfg.Policy))
}

func toInt32(idx []int) []int32 {
	out := make([]int32, len(idx))
	for i, v := range idx {
		out[i] = int32(v)
	}
	return out
}

// Len returns the number of hosts in the set; HealthyLen the number of healthy ones.
func (s *Set) Len() int { return len(s.hosts) }

// HealthyLen returns the number of healthy hosts in the set.
func (s *Set) HealthyLen() int { return s.healthy }

// Host returns the i-th host as given to New (with Weight defaulted).
func (s *Set) Host(i int) *Host { return &s.hosts[i] }

// Pick chooses a host for a request and returns its index in the slice given to New, or -1 when
// no host can take traffic (Envoy's UH). It is safe for concurrent use and does not allocate.
// Small enough to be inlined: a set of one host answers without a call.
func (s *Set) Pick(c Context) int {
	if s.single {
		return 0
	}
	return s.pick(c)
}

// pick is Pick for a set of more than one host, or of none.
func (s *Set) pick(c Context) int {
	if len(s.levels) == 0 {
		return -1
	}
	b := s.chooseBucket(c)
	lv := &s.levels[b%len(s.levels)]
	if lv.panic {
		return pickIn(lv.locAll, lv.localities, lv.all, c, true)
	}
	if b >= len(s.levels) {
		if lv.degraded == nil {
			return -1
		}
		return lv.degraded.pick(c)
	}
	if i := pickIn(lv.locSched, lv.localities, lv.healthy, c, false); i >= 0 {
		return i
	}
	// A level without healthy hosts only gets load when every level is empty of them; Envoy
	// then serves from all hosts of that level (panic) unless panic mode is disabled.
	return -1
}

func pickIn(sched *schedule, locs []locality, whole picker, c Context, all bool) int {
	if sched != nil && len(locs) > 0 {
		li, ok := sched.next()
		if !ok {
			return -1
		}
		p := locs[li].healthy
		if all {
			p = locs[li].all
		}
		if p == nil {
			return -1
		}
		return p.pick(c)
	}
	if whole == nil {
		return -1
	}
	return whole.pick(c)
}

// chooseBucket maps the request to a load bucket (a level's healthy or degraded hosts) by its
// hash (so hashing policies keep affinity across the split) or at random.
func (s *Set) chooseBucket(c Context) int {
	if len(s.levels) == 1 && s.cumLoad[0] == 100 {
		return 0
	}
	var x uint32
	if c.HasHash {
		x = uint32(mix(c.Hash) % 100)
	} else {
		x = rand.Uint32N(100)
	}
	for b, cl := range s.cumLoad {
		if x < cl {
			return b
		}
	}
	return 0
}

// PriorityLoad returns the percentage of traffic the healthy hosts of each priority level
// (ascending) receive.
func (s *Set) PriorityLoad() []uint32 { return s.bucketLoads()[:len(s.levels)] }

// DegradedLoad returns the percentage of traffic the degraded hosts of each priority level
// (ascending) receive.
func (s *Set) DegradedLoad() []uint32 { return s.bucketLoads()[len(s.levels):] }

func (s *Set) bucketLoads() []uint32 {
	out := make([]uint32, len(s.cumLoad))
	var prev uint32
	for i, c := range s.cumLoad {
		out[i] = c - prev
		prev = c
	}
	return out
}

// InPanic reports whether any priority level is in panic mode.
func (s *Set) InPanic() bool {
	for i := range s.levels {
		if s.levels[i].panic {
			return true
		}
	}
	return false
}
