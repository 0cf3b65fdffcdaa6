package ratelimit

import (
	"fmt"
	"strings"
)

// Entry is one key/value pair of a rate limit descriptor.
type Entry struct {
	Key, Value string
}

// Descriptors is the list of descriptors a request produced (from route rate_limits actions),
// stored flat so that building it needs no allocation per descriptor: descriptor i is
// Entries[Ends[i-1]:Ends[i]] (Ends[-1] being 0). The zero value is empty.
type Descriptors struct {
	Entries []Entry
	Ends    []int
}

// Len is the number of descriptors.
func (d *Descriptors) Len() int { return len(d.Ends) }

// At returns descriptor i's entries.
func (d *Descriptors) At(i int) []Entry {
	start := 0
	if i > 0 {
		start = d.Ends[i-1]
	}
	return d.Entries[start:d.Ends[i]]
}

// Add appends a descriptor made of entries.
func (d *Descriptors) Add(entries ...Entry) {
	d.Entries = append(d.Entries, entries...)
	d.Ends = append(d.Ends, len(d.Entries))
}

// Reset empties d, keeping its storage.
func (d *Descriptors) Reset() {
	d.Entries, d.Ends = d.Entries[:0], d.Ends[:0]
}

// String renders the descriptors as Envoy logs them, for tests and debugging.
func (d *Descriptors) String() string {
	var b strings.Builder
	for i := 0; i < d.Len(); i++ {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteByte('[')
		for j, e := range d.At(i) {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString(e.Key)
			b.WriteByte('=')
			b.WriteString(e.Value)
		}
		b.WriteByte(']')
	}
	return b.String()
}

// DescriptorConfig is a configured descriptor with its own bucket (LocalRateLimitDescriptor).
// An entry with an empty Value makes it a wildcard (Envoy's dynamic descriptor): each distinct
// request descriptor it matches gets a bucket of its own.
type DescriptorConfig struct {
	Entries []Entry
	Bucket  TokenBucket
}

// Config is what a Limiter is built from.
type Config struct {
	// Default is the default bucket (token_bucket); nil means requests that match no
	// descriptor are not limited.
	Default *TokenBucket
	// Descriptors are the descriptor buckets; each set of entries must be unique.
	Descriptors []DescriptorConfig
	// AlwaysConsumeDefault takes a token from the default bucket even when a descriptor
	// matched (always_consume_default_token_bucket, true by default in Envoy).
	AlwaysConsumeDefault bool
	// MaxDynamic bounds the buckets each wildcard descriptor keeps
	// (max_dynamic_descriptors); 0 means DefaultMaxDynamicDescriptors.
	MaxDynamic uint32
}

// Validate checks the configuration as Envoy does: valid buckets, unique descriptors with at
// least one entry and non-empty keys (an empty value makes a wildcard descriptor).
func (c *Config) Validate() error {
	if c.Default != nil {
		if err := c.Default.Validate(); err != nil {
			return fmt.Errorf("token_bucket: %w", err)
		}
	}
	seen := make(map[string]bool, len(c.Descriptors))
	for i, d := range c.Descriptors {
		if len(d.Entries) == 0 {
			return fmt.Errorf("descriptors[%d].entries: empty", i)
		}
		for j, e := range d.Entries {
			if e.Key == "" {
				return fmt.Errorf("descriptors[%d].entries[%d].key: empty", i, j)
			}
		}
		if err := d.Bucket.Validate(); err != nil {
			return fmt.Errorf("descriptors[%d].token_bucket: %w", i, err)
		}
		k := string(appendKey(nil, d.Entries))
		if seen[k] {
			return fmt.Errorf("descriptors[%d]: duplicate descriptor", i)
		}
		seen[k] = true
	}
	return nil
}

// Limiter is one local rate limit configuration's buckets: a default bucket, the buckets of
// the configured descriptors, and those the wildcard descriptors create per distinct request
// descriptor (at most MaxDynamic each, least recently used dropped first). It is safe for
// concurrent use; its memory is bounded at construction.
type Limiter struct {
	def                  *Bucket
	byKey                map[string]*Bucket
	wild                 []*wildcard
	alwaysConsumeDefault bool
}

// NewLimiter builds the buckets of c, all full, on clock (nil: Monotonic).
func NewLimiter(c Config, clock Clock) (*Limiter, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	l := &Limiter{alwaysConsumeDefault: c.AlwaysConsumeDefault}
	if c.Default != nil {
		l.def = NewBucket(*c.Default, clock)
	}
	maxDynamic := int(c.MaxDynamic)
	if maxDynamic == 0 {
		maxDynamic = DefaultMaxDynamicDescriptors
	}
	for _, d := range c.Descriptors {
		if isWildcard(d.Entries) {
			l.wild = append(l.wild, newWildcard(d, maxDynamic, clock))
			continue
		}
		if l.byKey == nil {
			l.byKey = make(map[string]*Bucket, len(c.Descriptors))
		}
		l.byKey[string(appendKey(nil, d.Entries))] = NewBucket(d.Bucket, clock)
	}
	return l, nil
}

// HasDescriptors reports whether descriptor buckets are configured (else request descriptors
// need not be computed).
func (l *Limiter) HasDescriptors() bool { return len(l.byKey) > 0 || len(l.wild) > 0 }

// Default returns the default bucket, or nil.
func (l *Limiter) Default() *Bucket { return l.def }

// Allow decides one request as Envoy's local rate limiter does. Each of reqs selects the bucket
// of the configured descriptor it equals or, failing that, its own bucket of the first wildcard
// descriptor it matches; those buckets are tried strictest (lowest fill rate) first, each taking
// a token; the first without one limits the request. The default bucket is then tried when no
// descriptor matched or AlwaysConsumeDefault. It returns whether the request is allowed and the
// bucket whose state the x-ratelimit-* headers report (nil: none): the bucket that refused, or
// the strictest matched descriptor's, or the default one. Allow does not allocate for up to 8
// matching descriptors.
func (l *Limiter) Allow(reqs *Descriptors) (bool, *Bucket) {
	var arr [8]*Bucket
	matched := arr[:0]
	if l.HasDescriptors() && reqs != nil {
		var kb [256]byte
		for i := 0; i < reqs.Len(); i++ {
			req := reqs.At(i)
			key := appendKey(kb[:0], req)
			if b := l.byKey[string(key)]; b != nil {
				matched = append(matched, b) // a repeated descriptor takes a token again, as in Envoy
				continue
			}
			for _, w := range l.wild {
				if w.matches(req) {
					matched = append(matched, w.bucket(key))
					break
				}
			}
		}
	}
	for i := 1; i < len(matched); i++ { // insertion sort by fill rate, stable
		for j := i; j > 0 && matched[j].rate < matched[j-1].rate; j-- {
			matched[j], matched[j-1] = matched[j-1], matched[j]
		}
	}
	for _, b := range matched {
		if !b.Take() {
			return false, b
		}
	}
	if len(matched) == 0 || l.alwaysConsumeDefault {
		if l.def == nil {
			if len(matched) == 0 {
				return true, nil
			}
			return true, matched[0]
		}
		if !l.def.Take() {
			return false, l.def
		}
		if len(matched) == 0 {
			return true, l.def
		}
	}
	return true, matched[0]
}

// appendKey encodes entries unambiguously (length-prefixed keys and values).
func appendKey(dst []byte, entries []Entry) []byte {
	for _, e := range entries {
		dst = appendString(dst, e.Key)
		dst = appendString(dst, e.Value)
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	n := uint64(len(s))
	for n >= 0x80 {
		dst = append(dst, byte(n)|0x80)
		n >>= 7
	}
	dst = append(dst, byte(n))
	return append(dst, s...)
}
