package ratelimit

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Bounds of requests and of the counter table.
const (
	// DefaultMaxKeys is the default cap on live counters.
	DefaultMaxKeys = 100_000
	// MaxDescriptors bounds a request's descriptors, MaxEntries each descriptor's entries.
	MaxDescriptors = 64
	MaxEntries     = 16
	// MaxValueBytes bounds each key and value of a descriptor entry.
	MaxValueBytes = 1024
	// sweepEvery is the longest time between sweeps of expired counters.
	sweepEvery = time.Minute
)

// Options configure a Service.
type Options struct {
	// ConfigFile is the configuration (see the package doc); "" serves no limits.
	ConfigFile string
	// MaxKeys caps the live counters (default DefaultMaxKeys).
	MaxKeys int
	// Logger receives reload errors; nil is slog.Default().
	Logger *slog.Logger
	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time
}

// Service is the in-memory rate limit service. Its methods are safe for concurrent use.
type Service struct {
	rlsv3.UnimplementedRateLimitServiceServer

	opts Options
	log  *slog.Logger
	cfg  atomic.Pointer[Config] // what requests are answered from: file and rules (publish)

	cfgMu sync.Mutex // guards file and rules
	file  *Config    // the configuration file's
	rules *Config    // Domain, from the RateLimit objects (SetRateLimits); nil until set

	// modTime and size identify the loaded file's version (Watch).
	modTime time.Time
	size    int64

	mu        sync.Mutex
	counters  map[string]*counter
	lastSweep time.Time
}

// counter is a descriptor's count in one window.
type counter struct {
	hits uint64
	end  int64 // Unix second the window ends
}

var _ rlsv3.RateLimitServiceServer = (*Service)(nil)

// New builds a Service, loading Options.ConfigFile (an error if it does not compile).
func New(o Options) (*Service, error) {
	if o.MaxKeys <= 0 {
		o.MaxKeys = DefaultMaxKeys
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Service{opts: o, log: o.Logger, counters: map[string]*counter{}}
	if s.log == nil {
		s.log = slog.Default()
	}
	cfg := &Config{domains: map[string]*level{}}
	if o.ConfigFile != "" {
		s.modTime, s.size = s.stamp()
		var err error
		if cfg, err = LoadConfig(o.ConfigFile); err != nil {
			return nil, err
		}
	}
	s.setFile(cfg)
	return s, nil
}

// SetConfig replaces the configuration file's domains (Domain stays the RateLimit objects',
// once SetRateLimits was called); counters are kept.
func (s *Service) SetConfig(c *Config) { s.setFile(c) }

// Register adds the service to a gRPC server.
func (s *Service) Register(g *grpc.Server) { rlsv3.RegisterRateLimitServiceServer(g, s) }

// Watch reloads the configuration file whenever its modification time or size changes,
// checking every interval (1 s when 0), until ctx is done. A file that fails to compile keeps
// the previous configuration and is logged.
func (s *Service) Watch(ctx context.Context, interval time.Duration) error {
	if s.opts.ConfigFile == "" {
		return nil
	}
	if interval <= 0 {
		interval = time.Second
	}
	mod, size := s.modTime, s.size
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		m, sz := s.stamp()
		if m.Equal(mod) && sz == size {
			continue
		}
		mod, size = m, sz
		cfg, err := LoadConfig(s.opts.ConfigFile)
		if err != nil {
			s.log.Error("rate limit config not reloaded; keeping the previous one", "error", err)
			continue
		}
		s.setFile(cfg)
		s.log.Info("rate limit config reloaded", "file", s.opts.ConfigFile)
	}
}

// stamp is the configuration file's modification time and size (-1 when it cannot be read).
func (s *Service) stamp() (time.Time, int64) {
	fi, err := os.Stat(s.opts.ConfigFile)
	if err != nil {
		return time.Time{}, -1
	}
	return fi.ModTime(), fi.Size()
}

// errTableFull is returned when a new counter is needed and the table is full of live windows.
var errTableFull = errors.New("rate limit counter table full")

// ShouldRateLimit implements envoy.service.ratelimit.v3.RateLimitService (see the package doc).
func (s *Service) ShouldRateLimit(_ context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	if req.GetDomain() == "" {
		return nil, status.Error(codes.InvalidArgument, "domain: empty")
	}
	ds := req.GetDescriptors()
	if len(ds) == 0 {
		return nil, status.Error(codes.InvalidArgument, "descriptors: empty")
	}
	if len(ds) > MaxDescriptors {
		return nil, status.Errorf(codes.InvalidArgument, "descriptors: more than %d", MaxDescriptors)
	}
	cfg := s.cfg.Load()
	type want struct {
		limit *Limit
		key   string
		hits  uint64
	}
	wants := make([]want, len(ds))
	for i, d := range ds {
		if d.GetLimit() != nil {
			return nil, status.Errorf(codes.InvalidArgument, "descriptors[%d].limit: not supported", i)
		}
		es := d.GetEntries()
		if len(es) == 0 || len(es) > MaxEntries {
			return nil, status.Errorf(codes.InvalidArgument, "descriptors[%d].entries: between 1 and %d wanted", i, MaxEntries)
		}
		entries := make([]entry, len(es))
		for j, e := range es {
			if e.GetKey() == "" || len(e.GetKey()) > MaxValueBytes || len(e.GetValue()) > MaxValueBytes {
				return nil, status.Errorf(codes.InvalidArgument, "descriptors[%d].entries[%d]: empty key, or key or value longer than %d bytes", i, j, MaxValueBytes)
			}
			entries[j] = entry{e.GetKey(), e.GetValue()}
		}
		l := cfg.find(req.GetDomain(), entries)
		if l == nil || l.Unlimited {
			wants[i].limit = l
			continue
		}
		hits := uint64(req.GetHitsAddend())
		if h := d.GetHitsAddend(); h != nil {
			hits = h.GetValue()
		}
		if hits == 0 {
			hits = 1
		}
		var b strings.Builder
		b.WriteString(req.GetDomain())
		b.WriteString("\x00")
		b.WriteString(l.id)
		for _, e := range entries {
			b.WriteString("\x01")
			b.WriteString(e.key)
			b.WriteString("\x00")
			b.WriteString(e.value)
		}
		wants[i] = want{limit: l, key: b.String(), hits: hits}
	}

	now := s.opts.Now()
	sec := now.Unix()
	resp := &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK, Statuses: make([]*rlsv3.RateLimitResponse_DescriptorStatus, len(ds))}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, w := range wants {
		st := &rlsv3.RateLimitResponse_DescriptorStatus{Code: rlsv3.RateLimitResponse_OK}
		resp.Statuses[i] = st
		if w.limit == nil || w.limit.Unlimited {
			continue
		}
		l := w.limit
		start := sec - sec%l.Seconds
		end := start + l.Seconds
		key := w.key + "\x02" + strconv.FormatInt(start, 10)
		c := s.counters[key]
		if c == nil {
			if err := s.makeRoom(now); err != nil {
				return nil, status.Error(codes.ResourceExhausted, err.Error())
			}
			c = &counter{end: end}
			s.counters[key] = c
		}
		c.hits += w.hits
		st.CurrentLimit = &rlsv3.RateLimitResponse_RateLimit{RequestsPerUnit: l.RequestsPerUnit, Unit: l.Unit, Name: l.Name}
		if c.hits <= uint64(l.RequestsPerUnit) {
			st.LimitRemaining = uint32(uint64(l.RequestsPerUnit) - c.hits)
		}
		st.DurationUntilReset = durationpb.New(time.Unix(end, 0).Sub(now))
		if c.hits > uint64(l.RequestsPerUnit) && !l.ShadowMode {
			st.Code = rlsv3.RateLimitResponse_OVER_LIMIT
			resp.OverallCode = rlsv3.RateLimitResponse_OVER_LIMIT
		}
	}
	return resp, nil
}

// makeRoom ensures the table can take one more counter: it drops expired windows when the
// table is full or the last sweep is older than sweepEvery. Callers hold s.mu.
func (s *Service) makeRoom(now time.Time) error {
	if len(s.counters) < s.opts.MaxKeys && now.Sub(s.lastSweep) < sweepEvery {
		return nil
	}
	s.lastSweep = now
	sec := now.Unix()
	for k, c := range s.counters {
		if c.end <= sec {
			delete(s.counters, k)
		}
	}
	if len(s.counters) >= s.opts.MaxKeys {
		return errTableFull
	}
	return nil
}

// Keys is the number of live counters (tests, metrics).
func (s *Service) Keys() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.counters)
}
