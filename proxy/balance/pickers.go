package balance

import (
	"math"
	"math/rand/v2"
	"sync/atomic"
)

// maxSchedule bounds the length of a precomputed weighted round-robin sequence. Weights whose
// sum exceeds it are scaled down proportionally (every non-zero weight keeps at least one slot).
const maxSchedule = 1 << 14

// schedule is a precomputed smooth weighted round-robin sequence (the interleaving nginx's
// algorithm produces: each step adds every weight to its current value, picks the largest and
// subtracts the total). Walking it with an atomic counter gives the same exact, evenly spread
// proportions as a locked scheduler, without a lock on the request path.
type schedule struct {
	seq []int32
	n   atomic.Uint64
}

// newSchedule returns a schedule over entries with the given weights (index = entry), or nil
// when every weight is zero.
func newSchedule(weights []uint64) *schedule {
	var g, sum uint64
	for _, w := range weights {
		g = gcd(g, w)
	}
	if g == 0 {
		return &schedule{}
	}
	w := make([]uint64, len(weights))
	for i, v := range weights {
		w[i] = v / g
		sum += w[i]
	}
	if sum > maxSchedule {
		sum = 0
		for i, v := range w {
			if v == 0 {
				continue
			}
			// Scale in float to avoid overflow of v*maxSchedule for huge weights.
			s := uint64(float64(v) * maxSchedule / float64(sumOf(weights)/g))
			w[i] = max(1, s)
			sum += w[i]
		}
	}
	seq := make([]int32, 0, sum)
	cur := make([]int64, len(w))
	for range sum {
		best := -1
		for i, v := range w {
			if v == 0 {
				continue
			}
			cur[i] += int64(v)
			if best < 0 || cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= int64(sum)
		seq = append(seq, int32(best))
	}
	s := &schedule{seq: seq}
	// Start at a random point so that rebuilt sets do not all begin with the same entry.
	s.n.Store(rand.Uint64N(uint64(len(seq))))
	return s
}

func sumOf(ws []uint64) uint64 {
	var s uint64
	for _, w := range ws {
		s += w
	}
	return s
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// next returns the next entry, or false when the schedule is empty.
func (s *schedule) next() (int, bool) {
	if s == nil || len(s.seq) == 0 {
		return 0, false
	}
	if len(s.seq) == 1 {
		// One entry (a single host, or equal weights reduced by their gcd to one slot each
		// of one host): no turn to take, so no atomic add per request.
		return int(s.seq[0]), true
	}
	i := s.n.Add(1) - 1
	return int(s.seq[i%uint64(len(s.seq))]), true
}

// roundRobin is Envoy's ROUND_ROBIN: in turn, weighted by load_balancing_weight.
type roundRobin struct {
	idx   []int32
	sched *schedule
}

var _ picker = (*roundRobin)(nil)

func newRoundRobin(hosts []Host, idx []int) *roundRobin {
	w := make([]uint64, len(idx))
	for i, h := range idx {
		w[i] = uint64(hosts[h].Weight)
	}
	return &roundRobin{idx: toInt32(idx), sched: newSchedule(w)}
}

func (r *roundRobin) pick(Context) int {
	i, ok := r.sched.next()
	if !ok {
		return -1
	}
	return int(r.idx[i])
}

// randomPicker is Envoy's RANDOM: uniform over the available hosts (Envoy ignores weights here).
type randomPicker struct {
	idx []int32
}

var _ picker = (*randomPicker)(nil)

func (r *randomPicker) pick(Context) int {
	return int(r.idx[rand.IntN(len(r.idx))])
}

// leastRequest is Envoy's LEAST_REQUEST. With equal weights it draws ChoiceCount hosts at random
// and takes the one with the fewest active requests (power of two choices). With unequal weights
// Envoy schedules hosts (EDF) by the effective weight weight/(active+1)^bias; to stay lock-free
// this picks at random in proportion to the same effective weights, which gives the same expected
// shares: proportional to weight when load is even, shifted towards less busy hosts otherwise.
type leastRequest struct {
	hosts    []Host
	idx      []int32
	choices  uint32
	bias     float64
	weighted bool
}

var _ picker = (*leastRequest)(nil)

func newLeastRequest(hosts []Host, idx []int, cfg Config) *leastRequest {
	l := &leastRequest{hosts: hosts, idx: toInt32(idx), choices: cfg.ChoiceCount, bias: cfg.ActiveRequestBias}
	for _, h := range idx[1:] {
		if hosts[h].Weight != hosts[idx[0]].Weight {
			l.weighted = true
		}
	}
	return l
}

func active(h *Host) int64 {
	if h.Active == nil {
		return 0
	}
	return h.Active.Load()
}

func (l *leastRequest) pick(Context) int {
	if len(l.idx) == 1 {
		return int(l.idx[0])
	}
	if l.weighted {
		return l.pickWeighted()
	}
	best := l.idx[rand.IntN(len(l.idx))]
	ba := active(&l.hosts[best])
	for i := uint32(1); i < l.choices; i++ {
		c := l.idx[rand.IntN(len(l.idx))]
		if a := active(&l.hosts[c]); a < ba {
			best, ba = c, a
		}
	}
	return int(best)
}

// pickWeighted draws a host with probability proportional to its effective weight. It reads the
// active counts once into a fixed-size stack buffer when the set is small enough.
func (l *leastRequest) pickWeighted() int {
	var buf [64]float64
	var eff []float64
	if len(l.idx) <= len(buf) {
		eff = buf[:len(l.idx)]
	}
	var sum float64
	for i, h := range l.idx {
		w := l.effective(h)
		if eff != nil {
			eff[i] = w
		}
		sum += w
	}
	x := rand.Float64() * sum
	for i, h := range l.idx {
		var w float64
		if eff != nil {
			w = eff[i]
		} else {
			w = l.effective(h)
		}
		if x < w {
			return int(h)
		}
		x -= w
	}
	return int(l.idx[len(l.idx)-1])
}

func (l *leastRequest) effective(i int32) float64 {
	h := &l.hosts[i]
	a := float64(active(h) + 1)
	switch l.bias {
	case 0:
		return float64(h.Weight)
	case 1:
		return float64(h.Weight) / a
	}
	return float64(h.Weight) / math.Pow(a, l.bias)
}
