package ratelimit

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() int64              { return c.ns.Load() }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func TestBucket(t *testing.T) {
	type step struct {
		advance   time.Duration
		takes     int // attempts
		want      int // successes
		remaining uint32
		reset     uint32
	}
	for _, tc := range []struct {
		name  string
		tb    TokenBucket
		steps []step
	}{
		{"five per ten seconds", TokenBucket{5, 5, 10 * time.Second}, []step{
			{0, 20, 5, 0, 2},
			{time.Second, 1, 0, 0, 1},
			{time.Second, 1, 1, 0, 2}, // 2 s: one token refilled
			{10 * time.Second, 10, 5, 0, 2},
		}},
		{"starts full and caps at max", TokenBucket{3, 1, time.Second}, []step{
			{time.Hour, 10, 3, 0, 1},
			{1500 * time.Millisecond, 0, 0, 1, 0},
			{500 * time.Millisecond, 0, 0, 2, 0},
			{time.Minute, 0, 0, 3, 0},
		}},
		{"fractional token per fill", TokenBucket{1, 3, time.Second}, []step{
			{0, 2, 1, 0, 1},
			{333 * time.Millisecond, 1, 0, 0, 1},
			{time.Millisecond, 1, 1, 0, 1},
		}},
		{"tokens per fill larger than max", TokenBucket{2, 10, time.Second}, []step{
			{0, 3, 2, 0, 1},
			{100 * time.Millisecond, 3, 1, 0, 1},
			{time.Second, 3, 2, 0, 1},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.tb.Validate(); err != nil {
				t.Fatal(err)
			}
			var c fakeClock
			c.advance(time.Hour) // an arbitrary start
			b := NewBucket(tc.tb, c.now)
			for i, s := range tc.steps {
				c.advance(s.advance)
				got := 0
				for n := 0; n < s.takes; n++ {
					if b.Take() {
						got++
					}
				}
				if got != s.want {
					t.Errorf("step %d: %d of %d taken, want %d", i, got, s.takes, s.want)
				}
				if r := b.Remaining(); r != s.remaining {
					t.Errorf("step %d: remaining %d, want %d", i, r, s.remaining)
				}
				if r := b.ResetSeconds(); r != s.reset {
					t.Errorf("step %d: reset %d, want %d", i, r, s.reset)
				}
			}
		})
	}
}

func TestTokenBucketValidate(t *testing.T) {
	for _, tb := range []TokenBucket{{0, 1, time.Second}, {1, 0, time.Second}, {1, 1, 0}} {
		if tb.Validate() == nil {
			t.Errorf("%+v: valid, want an error", tb)
		}
	}
}

// TestBucketConcurrent checks that concurrent takers never take more tokens than there are.
func TestBucketConcurrent(t *testing.T) {
	var c fakeClock
	b := NewBucket(TokenBucket{1000, 1, time.Hour}, c.now)
	var taken atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 500 {
				if b.Take() {
					taken.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := taken.Load(); n != 1000 {
		t.Fatalf("taken %d, want 1000", n)
	}
}

func descs(ds ...[]Entry) *Descriptors {
	var d Descriptors
	for _, e := range ds {
		d.Add(e...)
	}
	return &d
}

func TestLimiterDescriptors(t *testing.T) {
	addr := func(a string) []Entry { return []Entry{{"remote_address", a}} }
	cfg := Config{
		Default: &TokenBucket{10, 10, time.Minute},
		Descriptors: []DescriptorConfig{
			{Entries: addr("127.0.0.1"), Bucket: TokenBucket{2, 2, time.Minute}},
			{Entries: addr("127.0.0.2"), Bucket: TokenBucket{3, 3, time.Minute}},
			{Entries: []Entry{{"generic_key", "a"}, {"path", "/x"}}, Bucket: TokenBucket{1, 1, time.Minute}},
		},
		AlwaysConsumeDefault: false,
	}
	var c fakeClock
	l, err := NewLimiter(cfg, c.now)
	if err != nil {
		t.Fatal(err)
	}
	count := func(d *Descriptors, n int) int {
		ok := 0
		for i := 0; i < n; i++ {
			if allowed, _ := l.Allow(d); allowed {
				ok++
			}
		}
		return ok
	}
	if n := count(descs(addr("127.0.0.1")), 5); n != 2 {
		t.Errorf("client 1: %d allowed, want 2", n)
	}
	if n := count(descs(addr("127.0.0.2")), 5); n != 3 {
		t.Errorf("client 2: %d allowed, want 3 (its own bucket)", n)
	}
	// Entries match as a whole and in order.
	if n := count(descs([]Entry{{"path", "/x"}, {"generic_key", "a"}}), 1); n != 1 {
		t.Errorf("reordered entries: %d allowed, want 1 from the default bucket", n)
	}
	if n := count(descs([]Entry{{"generic_key", "a"}, {"path", "/x"}}), 3); n != 1 {
		t.Errorf("two-entry descriptor: %d allowed, want 1", n)
	}
	// Unmatched descriptors use the default bucket: 1 token was taken above, 9 left.
	if n := count(descs(addr("10.0.0.1")), 20); n != 9 {
		t.Errorf("default bucket: %d allowed, want 9", n)
	}
	if n := count(nil, 1); n != 0 {
		t.Errorf("no descriptors: %d allowed, want 0 (default bucket empty)", n)
	}
	ok, b := l.Allow(descs(addr("127.0.0.1")))
	if ok || b.Max() != 2 {
		t.Errorf("refused by descriptor: allowed %v, bucket max %d; want false, 2", ok, b.Max())
	}
}

func TestLimiterAlwaysConsumeDefault(t *testing.T) {
	var c fakeClock
	l, err := NewLimiter(Config{
		Default:              &TokenBucket{3, 3, time.Minute},
		Descriptors:          []DescriptorConfig{{Entries: []Entry{{"k", "v"}}, Bucket: TokenBucket{10, 10, time.Minute}}},
		AlwaysConsumeDefault: true,
	}, c.now)
	if err != nil {
		t.Fatal(err)
	}
	d := descs([]Entry{{"k", "v"}})
	ok := 0
	for i := 0; i < 10; i++ {
		if allowed, _ := l.Allow(d); allowed {
			ok++
		}
	}
	if ok != 3 {
		t.Errorf("%d allowed, want 3: the default bucket is consumed too", ok)
	}
}

func TestLimiterStrictestFirst(t *testing.T) {
	var c fakeClock
	l, err := NewLimiter(Config{
		Descriptors: []DescriptorConfig{
			{Entries: []Entry{{"a", "1"}}, Bucket: TokenBucket{100, 100, time.Second}},
			{Entries: []Entry{{"b", "1"}}, Bucket: TokenBucket{2, 1, time.Hour}},
		},
	}, c.now)
	if err != nil {
		t.Fatal(err)
	}
	d := descs([]Entry{{"a", "1"}}, []Entry{{"b", "1"}})
	for i := 0; i < 5; i++ {
		l.Allow(d)
	}
	// The strict bucket refused 3 times before the loose one was tried: it lost only 2.
	loose := l.byKey[string(appendKey(nil, []Entry{{"a", "1"}}))]
	if r := loose.Remaining(); r != 98 {
		t.Errorf("loose bucket remaining %d, want 98", r)
	}
	ok, b := l.Allow(descs([]Entry{{"a", "1"}}))
	if !ok || b != loose {
		t.Errorf("loose alone: allowed %v, want true with its bucket", ok)
	}
}

func TestConfigValidate(t *testing.T) {
	tb := TokenBucket{1, 1, time.Second}
	for name, c := range map[string]Config{
		"empty entries": {Descriptors: []DescriptorConfig{{Bucket: tb}}},
		"empty key":     {Descriptors: []DescriptorConfig{{Entries: []Entry{{"", "v"}}, Bucket: tb}}},
		"duplicate wildcard": {Descriptors: []DescriptorConfig{
			{Entries: []Entry{{"k", ""}}, Bucket: tb}, {Entries: []Entry{{"k", ""}}, Bucket: tb}}},
		"duplicate": {Descriptors: []DescriptorConfig{
			{Entries: []Entry{{"k", "v"}}, Bucket: tb}, {Entries: []Entry{{"k", "v"}}, Bucket: tb}}},
		"bad bucket": {Default: &TokenBucket{}},
	} {
		if _, err := NewLimiter(c, nil); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// unlimited is a Limiter whose default bucket and one remote_address descriptor never run out.
func unlimited(tb testing.TB) *Limiter {
	tb.Helper()
	huge := TokenBucket{1 << 30, 1 << 30, time.Second}
	l, err := NewLimiter(Config{
		Default:     &huge,
		Descriptors: []DescriptorConfig{{Entries: []Entry{{"remote_address", "127.0.0.1"}}, Bucket: huge}},
	}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

func TestAllowDoesNotAllocate(t *testing.T) {
	l := unlimited(t)
	d := descs([]Entry{{"remote_address", "127.0.0.1"}}, []Entry{{"generic_key", "x"}})
	if n := testing.AllocsPerRun(100, func() { l.Allow(d) }); n != 0 {
		t.Errorf("Allow allocates %v times", n)
	}
}

func BenchmarkAllow(b *testing.B) {
	l := unlimited(b)
	d := descs([]Entry{{"remote_address", "127.0.0.1"}})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Allow(d)
		}
	})
}
