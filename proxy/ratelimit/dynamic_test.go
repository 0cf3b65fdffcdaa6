package ratelimit

import (
	"strings"
	"sync"
	"testing"
	"time"
)

// wildcardLimiter limits [rule=r, remote_address=*] to 5 per minute per address, keeping at
// most max addresses, with a static bucket of 1 for 10.0.0.9 and no default bucket.
func wildcardLimiter(t *testing.T, max uint32, c *fakeClock) *Limiter {
	t.Helper()
	l, err := NewLimiter(Config{
		Descriptors: []DescriptorConfig{
			{Entries: []Entry{{"rule", "r"}, {"remote_address", "10.0.0.9"}}, Bucket: TokenBucket{1, 1, time.Minute}},
			{Entries: []Entry{{"rule", "r"}, {"remote_address", ""}}, Bucket: TokenBucket{5, 5, time.Minute}},
		},
		MaxDynamic: max,
	}, c.now)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func client(addr string) *Descriptors { return descs([]Entry{{"rule", "r"}, {"remote_address", addr}}) }

func allowed(l *Limiter, d *Descriptors, n int) int {
	ok := 0
	for range n {
		if a, _ := l.Allow(d); a {
			ok++
		}
	}
	return ok
}

func TestWildcardBucketPerValue(t *testing.T) {
	var c fakeClock
	l := wildcardLimiter(t, 0, &c)
	if !l.HasDescriptors() {
		t.Fatal("a wildcard descriptor alone: HasDescriptors false")
	}
	for _, a := range []string{"127.0.0.26", "127.0.0.27"} {
		if n := allowed(l, client(a), 20); n != 5 {
			t.Errorf("client %s: %d of 20 allowed, want its own 5", a, n)
		}
	}
	// A configured descriptor wins over the wildcard.
	if n := allowed(l, client("10.0.0.9"), 3); n != 1 {
		t.Errorf("10.0.0.9: %d allowed, want 1 (its configured bucket)", n)
	}
	// Static values of a wildcard must match, and so must the number of entries.
	for _, d := range []*Descriptors{
		descs([]Entry{{"rule", "other"}, {"remote_address", "127.0.0.26"}}),
		descs([]Entry{{"rule", "r"}}),
		descs([]Entry{{"rule", "r"}, {"remote_address", "127.0.0.26"}, {"x", "y"}}),
	} {
		if n := allowed(l, d, 10); n != 10 {
			t.Errorf("%s: %d of 10 allowed, want all (no bucket, no default)", d, n)
		}
	}
	// The buckets refill as any other.
	c.advance(time.Minute)
	if n := allowed(l, client("127.0.0.26"), 20); n != 5 {
		t.Errorf("after a minute: %d allowed, want 5", n)
	}
	ok, b := l.Allow(client("127.0.0.26"))
	if ok || b == nil || b.Max() != 5 || b.Remaining() != 5-5 {
		t.Errorf("limited: allowed %v, bucket %+v; want false and the client's bucket", ok, b)
	}
}

func TestWildcardLRU(t *testing.T) {
	var c fakeClock
	l := wildcardLimiter(t, 2, &c)
	w := l.wild[0]
	allowed(l, client("a"), 5) // a: empty
	allowed(l, client("b"), 5) // b: empty
	allowed(l, client("a"), 1) // a is now the most recently used
	if n := allowed(l, client("c"), 1); n != 1 {
		t.Fatalf("c: %d allowed, want 1", n)
	}
	if w.Len() != 2 {
		t.Errorf("%d buckets kept, want at most 2", w.Len())
	}
	// b was the least recently used: dropped, it starts again full; a kept its empty bucket.
	if n := allowed(l, client("a"), 1); n != 0 {
		t.Errorf("a: %d allowed, want 0 (kept)", n)
	}
	if n := allowed(l, client("b"), 10); n != 5 {
		t.Errorf("b: %d allowed, want 5 (dropped, new bucket)", n)
	}
}

func TestWildcardLongValues(t *testing.T) {
	var c fakeClock
	l := wildcardLimiter(t, 0, &c)
	long1, long2 := strings.Repeat("x", 5000)+"1", strings.Repeat("x", 5000)+"2"
	if n := allowed(l, client(long1), 10); n != 5 {
		t.Errorf("long value 1: %d allowed, want 5", n)
	}
	if n := allowed(l, client(long2), 10); n != 5 {
		t.Errorf("long value 2: %d allowed, want its own 5", n)
	}
	for k := range l.wild[0].m {
		if len(k) > maxExactKeyBytes+1 {
			t.Errorf("a key of %d bytes kept, want at most %d", len(k), maxExactKeyBytes+1)
		}
	}
}

func TestWildcardConcurrent(t *testing.T) {
	var c fakeClock
	l := wildcardLimiter(t, 3, &c)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			addr := string(rune('a' + g%4))
			for range 200 {
				l.Allow(client(addr))
			}
		}()
	}
	wg.Wait()
	if n := l.wild[0].Len(); n > 3 {
		t.Errorf("%d buckets kept, want at most 3", n)
	}
}

func TestWildcardHitDoesNotAllocate(t *testing.T) {
	var c fakeClock
	l := wildcardLimiter(t, 0, &c)
	d := client("127.0.0.26")
	l.Allow(d)
	if n := testing.AllocsPerRun(100, func() { l.Allow(d) }); n != 0 {
		t.Errorf("Allow of a known client allocates %v times", n)
	}
}
