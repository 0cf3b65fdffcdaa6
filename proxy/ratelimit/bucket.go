package ratelimit

import (
	"errors"
	"math"
	"sync/atomic"
	"time"
)

// Clock returns a monotonic time in nanoseconds. Tests inject their own; Monotonic is the
// process clock.
type Clock func() int64

// epoch anchors Monotonic; it is set once at start-up and never changes.
var epoch = time.Now()

// Monotonic is the process's monotonic clock in nanoseconds since start-up.
func Monotonic() int64 { return int64(time.Since(epoch)) }

// TokenBucket is a compiled envoy.type.v3.TokenBucket.
type TokenBucket struct {
	// MaxTokens is the bucket's capacity and its initial content (> 0).
	MaxTokens uint32
	// TokensPerFill tokens are added every FillInterval (> 0; Envoy's default is 1).
	TokensPerFill uint32
	// FillInterval is the refill period (> 0).
	FillInterval time.Duration
}

// Validate reports a bucket Envoy would refuse.
func (tb TokenBucket) Validate() error {
	switch {
	case tb.MaxTokens == 0:
		return errors.New("max_tokens must be greater than 0")
	case tb.TokensPerFill == 0:
		return errors.New("tokens_per_fill must be greater than 0")
	case tb.FillInterval <= 0:
		return errors.New("fill_interval must be greater than 0")
	}
	return nil
}

// fillRate is tokens per second, for ordering descriptor buckets as Envoy does.
func (tb TokenBucket) fillRate() float64 {
	return float64(tb.TokensPerFill) / tb.FillInterval.Seconds()
}

// Bucket is a token bucket safe for concurrent use. Its whole state is the instant at which it
// was (or would have been) empty: the tokens at time now are (now - empty) / perToken, capped at
// MaxTokens. Taking a token moves that instant forward by perToken with one compare-and-swap.
type Bucket struct {
	cfg      TokenBucket
	perToken int64 // nanoseconds to refill one token
	full     int64 // nanoseconds to refill from empty to MaxTokens
	rate     float64
	clock    Clock
	empty    atomic.Int64
}

// NewBucket returns a full bucket. clock nil means Monotonic. tb must be valid (Validate).
func NewBucket(tb TokenBucket, clock Clock) *Bucket {
	if clock == nil {
		clock = Monotonic
	}
	per := int64(tb.FillInterval) / int64(tb.TokensPerFill)
	if per < 1 {
		per = 1
	}
	full := per * int64(tb.MaxTokens)
	if full/per != int64(tb.MaxTokens) { // overflow: a bucket that takes centuries to fill
		full = math.MaxInt64 / 4
	}
	b := &Bucket{cfg: tb, perToken: per, full: full, rate: tb.fillRate(), clock: clock}
	b.empty.Store(clock() - full)
	return b
}

// Config returns the bucket's configuration.
func (b *Bucket) Config() TokenBucket { return b.cfg }

// Take takes one token and reports whether there was one.
func (b *Bucket) Take() bool {
	now := b.clock()
	for {
		e := b.empty.Load()
		base := e
		if now-base > b.full {
			base = now - b.full // the bucket is full: earlier refills overflowed
		}
		if now-base < b.perToken {
			return false
		}
		if b.empty.CompareAndSwap(e, base+b.perToken) {
			return true
		}
	}
}

// Max is the bucket's capacity (x-ratelimit-limit).
func (b *Bucket) Max() uint32 { return b.cfg.MaxTokens }

// Remaining is the whole number of tokens left now (x-ratelimit-remaining).
func (b *Bucket) Remaining() uint32 {
	d := b.clock() - b.empty.Load()
	if d >= b.full {
		return b.cfg.MaxTokens
	}
	if d <= 0 {
		return 0
	}
	return uint32(d / b.perToken)
}

// ResetSeconds is the whole number of seconds, rounded up, until the next token is available:
// 0 while a token is left (x-ratelimit-reset, as Envoy's local rate limiter computes it).
func (b *Bucket) ResetSeconds() uint32 {
	d := b.clock() - b.empty.Load()
	if d >= b.perToken {
		return 0
	}
	wait := b.perToken - d
	return uint32((wait + int64(time.Second) - 1) / int64(time.Second))
}
