package jwtauthn

import "sync"

// Defaults of Envoy's JwtCacheConfig.
const (
	defaultCacheSize     = 100
	defaultCacheMaxToken = 4096
)

// sigCache remembers the tokens whose signature verified with one provider's keys, so that a
// client repeating its token pays the signature check (tens of microseconds for ES256) once, as
// Envoy's jwt_cache_config does. Only the signature is remembered: the issuer, audiences, expiry
// and not-before are checked on every request, so a cached token that expires is refused at
// once. The cache belongs to a compiled provider: new keys come with a new, empty cache. It is
// bounded to size tokens (the oldest is evicted first); tokens longer than maxToken bytes are
// not cached.
type sigCache struct {
	mu       sync.Mutex
	set      map[string]struct{}
	ring     []string // insertion order, for eviction
	next     int
	maxToken int
}

func newSigCache(size, maxToken int) *sigCache {
	if size <= 0 {
		return nil
	}
	return &sigCache{set: make(map[string]struct{}, size), ring: make([]string, size), maxToken: maxToken}
}

// has reports whether token's signature was verified before.
func (c *sigCache) has(token string) bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	_, ok := c.set[token]
	c.mu.Unlock()
	return ok
}

// add remembers a token whose signature verified.
func (c *sigCache) add(token string) {
	if c == nil || len(token) > c.maxToken {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.set[token]; ok {
		return
	}
	if old := c.ring[c.next]; old != "" {
		delete(c.set, old)
	}
	c.ring[c.next] = token
	c.set[token] = struct{}{}
	c.next = (c.next + 1) % len(c.ring)
}
