// Package overload is strait-proxy's overload manager, after Envoy's: it protects the process
// from being killed for its memory use and from connection floods.
//
//   - A memory monitor (Envoy's envoy.resource_monitors.fixed_heap) samples the Go runtime's
//     memory on a timer (every 250 ms by default; never per request) and divides it by a limit,
//     giving the pressure. The limit comes from --memory-limit / GOMEMLIMIT or the cgroup (see
//     CgroupMemoryLimit); without one the monitor is off and no memory action ever fires.
//   - Each overload action turns on while the pressure is at or above its threshold (Envoy's
//     threshold trigger): disable_http_keepalive, stop_accepting_requests,
//     stop_accepting_connections and shrink_heap (see Action and DefaultThresholds).
//   - A global downstream connection limit (Envoy's overload.global_downstream_max_connections)
//     caps the connections open across all listeners.
//
// The Manager publishes its state through atomics: the accept loop (package listener) and the
// HTTP connection manager (package l7) read it through their own small interfaces, which
// *Manager implements, without taking a lock. Its state is in /stats under Envoy's names:
// overload.<action>.active and .scale_percent, overload.<monitor>.pressure (see New).
package overload

import (
	"context"
	"log/slog"
	"math"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strait-mesh/strait/proxy/stats"
)

// Defaults of Config.
const (
	// DefaultInterval is how often the memory monitor samples: Envoy's documented
	// refresh_interval (250 ms). A sample reads runtime/metrics, a few microseconds.
	DefaultInterval = 250 * time.Millisecond
	// DefaultShrinkHeapInterval is the least time between two heap shrinks while shrink_heap is
	// active, as Envoy's shrink_heap timer (10 s): each one forces a full garbage collection.
	DefaultShrinkHeapInterval = 10 * time.Second
)

// MonitorName is the memory monitor's name in stats, Envoy's fixed-heap monitor.
const MonitorName = "envoy.resource_monitors.fixed_heap"

// Config configures a Manager. The zero value of each field selects the default noted.
type Config struct {
	// MemoryLimit is the memory the process may use, in bytes (Envoy's fixed_heap
	// max_heap_size_bytes). 0 turns the memory monitor and every memory action off.
	MemoryLimit int64
	// MaxConnections is the global downstream connection limit (Envoy's
	// overload.global_downstream_max_connections): 0 selects DefaultMaxConnections(), a
	// negative value means unlimited.
	MaxConnections int
	// Thresholds are the pressures at which the actions turn on (zero entries: the defaults of
	// DefaultThresholds; Off disables an action).
	Thresholds Thresholds
	// Interval is the memory sampling period (default DefaultInterval).
	Interval time.Duration
	// ShrinkHeapInterval is the least time between two heap shrinks (default
	// DefaultShrinkHeapInterval).
	ShrinkHeapInterval time.Duration
	// ReadMemory returns the memory in use, in bytes (default ReadGoMemory). Tests inject
	// readings here.
	ReadMemory func() (uint64, error)
	// FreeOSMemory shrinks the heap (default debug.FreeOSMemory).
	FreeOSMemory func()
	// Stats receives the overload statistics (default: a private store).
	Stats *stats.Store
	// Logger records action changes (default: discard).
	Logger *slog.Logger
}

// Manager is the overload manager. Create it with New; Run samples memory until its context
// ends. All methods are safe for concurrent use; the ones the request path calls
// (AcceptingConnections, AcquireConnection, ReleaseConnection, StopAcceptingRequests,
// DisableHTTPKeepalive) are one or two atomic operations.
type Manager struct {
	cfg        Config
	limit      float64 // bytes, 0: no memory monitor
	thresholds Thresholds
	maxConns   int64 // <= 0: unlimited
	log        *slog.Logger
	now        func() time.Time // tests replace the clock

	state    atomic.Uint32 // bit a set: action a is active
	pressure atomic.Uint64 // math.Float64bits of the last pressure
	conns    atomic.Int64  // open downstream connections (AcquireConnection)

	mu         sync.Mutex // serializes Sample
	lastShrink time.Time

	st struct {
		pressure       *stats.Gauge
		failedUpdates  *stats.Counter
		active, scale  [numActions]*stats.Gauge
		shrinkCount    *stats.Counter
		totalConns     *stats.Gauge
		maxConnections *stats.Gauge
	}
}

// New builds a Manager from cfg and registers its statistics. It does not start sampling.
func New(cfg Config) *Manager {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.ShrinkHeapInterval <= 0 {
		cfg.ShrinkHeapInterval = DefaultShrinkHeapInterval
	}
	if cfg.ReadMemory == nil {
		cfg.ReadMemory = ReadGoMemory
	}
	if cfg.FreeOSMemory == nil {
		cfg.FreeOSMemory = debug.FreeOSMemory
	}
	if cfg.Stats == nil {
		cfg.Stats = stats.NewStore()
	}
	m := &Manager{cfg: cfg, thresholds: cfg.Thresholds.withDefaults(), log: cfg.Logger, now: time.Now}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if cfg.MemoryLimit > 0 {
		m.limit = float64(cfg.MemoryLimit)
	}
	switch {
	case cfg.MaxConnections == 0:
		m.maxConns = int64(DefaultMaxConnections())
	case cfg.MaxConnections > 0:
		m.maxConns = int64(cfg.MaxConnections)
	}
	s := cfg.Stats
	// Envoy extracts no tags from overload stats: the Prometheus name is the whole name.
	m.st.pressure = s.Gauge("overload."+MonitorName+".pressure", "envoy_overload_envoy_resource_monitors_fixed_heap_pressure")
	m.st.failedUpdates = s.Counter("overload."+MonitorName+".failed_updates", "envoy_overload_envoy_resource_monitors_fixed_heap_failed_updates")
	for a := range numActions {
		n := a.String()
		prom := "envoy_overload_" + promName(n)
		m.st.active[a] = s.Gauge("overload."+n+".active", prom+"_active")
		m.st.scale[a] = s.Gauge("overload."+n+".scale_percent", prom+"_scale_percent")
	}
	m.st.shrinkCount = s.Counter("overload."+ShrinkHeap.String()+".shrink_count", "envoy_overload_envoy_overload_actions_shrink_heap_shrink_count")
	m.st.totalConns = s.Gauge("server.total_connections", "envoy_server_total_connections")
	// Not an Envoy stat (Envoy keeps the limit in its runtime): the limit in force, for
	// operators comparing it with server.total_connections. 0 means unlimited.
	m.st.maxConnections = s.Gauge("overload.global_downstream_max_connections", "envoy_overload_global_downstream_max_connections")
	m.st.maxConnections.Set(max(m.maxConns, 0))
	return m
}

func promName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c == '.' {
			b[i] = '_'
		}
	}
	return string(b)
}

// MemoryLimit returns the memory monitor's limit in bytes (0: no monitor).
func (m *Manager) MemoryLimit() int64 { return int64(m.limit) }

// MaxConnections returns the global downstream connection limit (0: unlimited).
func (m *Manager) MaxConnections() int { return int(max(m.maxConns, 0)) }

// Thresholds returns the thresholds in force (defaults filled in).
func (m *Manager) Thresholds() Thresholds { return m.thresholds }

// Run samples memory every Config.Interval until ctx ends; without a memory limit it returns at
// once. The first sample is taken immediately.
func (m *Manager) Run(ctx context.Context) {
	m.log.Info("overload manager", "memory_limit", m.MemoryLimit(), "max_connections", m.MaxConnections(),
		"thresholds", m.thresholds.String())
	if m.limit <= 0 {
		return
	}
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	for {
		m.Sample()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sample reads memory once and updates the pressure, the actions and their statistics; it
// shrinks the heap when shrink_heap is active and the last shrink is old enough. Run calls it;
// tests call it directly. A failed reading keeps the previous state and counts in
// failed_updates.
func (m *Manager) Sample() {
	if m.limit <= 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	used, err := m.cfg.ReadMemory()
	if err != nil {
		m.st.failedUpdates.Inc()
		m.log.Debug("overload: reading memory failed", "error", err)
		return
	}
	m.update(float64(used) / m.limit)
}

// update applies pressure p: action states, statistics, transitions' logs and heap shrinking.
func (m *Manager) update(p float64) {
	m.pressure.Store(math.Float64bits(p))
	m.st.pressure.Set(int64(p * 100)) // Envoy: a percent, truncated, not capped at 100
	var state uint32
	for a := range numActions {
		if t := m.thresholds[a]; t > 0 && p >= t {
			state |= 1 << a
		}
	}
	old := m.state.Swap(state)
	for a := range numActions {
		on := state&(1<<a) != 0
		var v int64
		if on {
			v = 1
		}
		m.st.active[a].Set(v)
		m.st.scale[a].Set(100 * v) // threshold triggers: 0 or saturated
		if was := old&(1<<a) != 0; was != on {
			if on {
				m.log.Warn("overload action active", "action", a.String(), "pressure", p, "threshold", m.thresholds[a])
			} else {
				m.log.Info("overload action inactive", "action", a.String(), "pressure", p)
			}
		}
	}
	if state&(1<<ShrinkHeap) != 0 {
		if now := m.now(); m.lastShrink.IsZero() || now.Sub(m.lastShrink) >= m.cfg.ShrinkHeapInterval {
			m.lastShrink = now
			m.cfg.FreeOSMemory()
			m.st.shrinkCount.Inc()
		}
	}
}

// Pressure returns the last memory pressure: memory in use divided by the limit (0 before the
// first sample or without a limit; above 1 when the limit is exceeded).
func (m *Manager) Pressure() float64 { return math.Float64frombits(m.pressure.Load()) }

// Active reports whether action a is active.
func (m *Manager) Active(a Action) bool { return m.state.Load()&(1<<a) != 0 }

// AcceptingConnections reports false while envoy.overload_actions.stop_accepting_connections
// is active: listeners then close new connections at once.
func (m *Manager) AcceptingConnections() bool { return !m.Active(StopAcceptingConnections) }

// StopAcceptingRequests reports whether envoy.overload_actions.stop_accepting_requests is
// active: new HTTP requests then get a 503 local reply.
func (m *Manager) StopAcceptingRequests() bool { return m.Active(StopAcceptingRequests) }

// DisableHTTPKeepalive reports whether envoy.overload_actions.disable_http_keepalive is active:
// HTTP/1 responses then close their connection and idle HTTP/2 connections get GOAWAY.
func (m *Manager) DisableHTTPKeepalive() bool { return m.Active(DisableHTTPKeepalive) }

// AcquireConnection takes one slot of the global downstream connection limit for a newly
// accepted connection. It returns false, taking nothing, when all slots are in use; the caller
// then closes the connection (downstream_global_cx_overflow). A true result must be paired with
// one ReleaseConnection when the connection closes.
func (m *Manager) AcquireConnection() bool {
	for {
		n := m.conns.Load()
		if m.maxConns > 0 && n >= m.maxConns {
			return false
		}
		if m.conns.CompareAndSwap(n, n+1) {
			m.st.totalConns.Inc()
			return true
		}
	}
}

// ReleaseConnection returns a slot taken by AcquireConnection.
func (m *Manager) ReleaseConnection() {
	m.conns.Add(-1)
	m.st.totalConns.Dec()
}

// Connections returns the number of downstream connections holding a slot.
func (m *Manager) Connections() int { return int(m.conns.Load()) }
