// Package ratelimit is straitd's in-memory rate limit service: Envoy's rate limit service API
// (envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit), which strait-proxy's global
// rate limit filter (envoy.filters.http.ratelimit) calls, configured in the YAML format of
// Envoy's own reference service (github.com/envoyproxy/ratelimit), so that `strait up` gets
// global limits without Redis. Beyond one machine, proxies use any service speaking the API.
//
// # Configuration
//
// A file holds one or more YAML documents, one per domain:
//
//	domain: ratelimit
//	descriptors:
//	  - key: PATH
//	    value: /productpage
//	    rate_limit: {unit: minute, requests_per_unit: 1}
//	  - key: PATH
//	    rate_limit: {unit: minute, requests_per_unit: 100}
//	  - key: remote_address
//	    descriptors:                     # nested: matches descriptors of two entries
//	      - key: PATH
//	        rate_limit: {unit: second, requests_per_unit: 10, name: per-client}
//	  - key: header_match
//	    value: internal
//	    rate_limit: {unlimited: true}
//	  - key: generic_key
//	    value: shadowed
//	    shadow_mode: true
//	    rate_limit: {unit: hour, requests_per_unit: 5}
//
// Decoding is strict (unknown fields, a missing key, a unit other than second, minute, hour,
// day, week, month or year, duplicate keys at one level, a limit with unlimited, nesting deeper
// than MaxDepth are errors naming the place). A value ending in "*" matches values with that
// prefix; an exact value wins over a prefix, and a prefix over the key alone (no value).
//
// # Semantics (those of Envoy's reference service)
//
// Each descriptor of a request is matched entry by entry down the domain's tree: an entry
// selects the child with its key and value, else a matching prefix value, else its key alone.
// The descriptor has a limit when its last entry selects a node with a rate_limit. Limits are
// fixed windows aligned to the Unix epoch (a minute limit's window is the calendar minute);
// each request adds hits_addend (1 when 0; a descriptor's own hits_addend wins) to the count
// of its descriptor in the current window, for every limited descriptor of the request. A
// descriptor whose count exceeds requests_per_unit is OVER_LIMIT, unless shadow_mode (counted,
// reported OK). The reply's statuses follow the request's descriptors: code, current_limit
// (requests_per_unit, unit, name), limit_remaining and duration_until_reset; the overall code
// is OVER_LIMIT when any descriptor is. Unlimited descriptors and descriptors without a limit
// are OK and not counted. An unknown domain has no limits.
//
// # Bounds
//
// Counters live in memory for their window only: an expired window's counter is dropped when
// the table is swept (when full, and at least once a minute). The table holds at most
// Options.MaxKeys counters (default DefaultMaxKeys); a request that needs a new counter while
// the table is full of live windows fails with RESOURCE_EXHAUSTED, so the proxy applies its
// failure_mode_deny. Requests are bounded too: at most MaxDescriptors descriptors of at most
// MaxEntries entries, keys and values of at most MaxValueBytes bytes.
//
// # RateLimit objects
//
// The Global rules of Strait's RateLimit kind (docs/ratelimit.md) bring their own limits:
// straitd hands every snapshot's RateLimits to SetRateLimits, and each Global rule becomes the
// descriptor [ratelimit_rule=NS/NAME/RULE, ratelimit_match=1 × its to entries] of domain Domain
// ("strait") with its requests per unit (kind.go); package controlplane/translate/ratelimit
// emits the filters and route actions that send exactly that descriptor. Domain belongs to the
// RateLimits: a configuration file's document for it is ignored.
//
// The configuration file is read again when its modification time or size changes (checked
// every second); counters survive a reload. A file that fails to decode keeps the previous
// configuration and is logged.
package ratelimit
