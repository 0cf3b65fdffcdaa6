// Package ratelimit holds the token buckets and the descriptor matching of Envoy's local rate
// limit filters (envoy.filters.http.local_ratelimit and envoy.filters.network.local_ratelimit),
// shared by both so that they count the same way.
//
// A Bucket is Envoy's token bucket as its local rate limiter runs it today (AtomicTokenBucket):
// it starts full with max_tokens, refills continuously at tokens_per_fill per fill_interval up
// to max_tokens, and a request takes one whole token. The bucket is one atomic word refilled
// lazily from the clock when it is used: no timer and no goroutine per bucket, and safe for
// concurrent use without locks.
//
// A Limiter is a default bucket plus the configured descriptor buckets of one filter config.
// Descriptors whose entries all have values have their bucket from the start. A descriptor with
// an entry without a value is a wildcard (Envoy's dynamic descriptors): each distinct request
// descriptor it matches gets a bucket of its own (a client address, a header value), created
// full on first use and kept in a least-recently-used cache of at most max_dynamic_descriptors
// buckets (20 by default); keys longer than 128 bytes are kept as their SHA-256 digest, so a
// Limiter's memory is bounded when it is built. The per-connection mode builds one Limiter per
// downstream connection, which lives as long as the connection.
package ratelimit
