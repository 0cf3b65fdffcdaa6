package ratelimit

import "github.com/strait-mesh/strait/proxy/stats"

// HTTPStats are the counters of an HTTP local rate limit config, under
// <stat_prefix>.http_local_rate_limit as Envoy names them.
type HTTPStats struct {
	// Enabled counts requests the filter checked (filter_enabled sampled true).
	Enabled *stats.Counter
	// OK counts checked requests that got a token.
	OK *stats.Counter
	// RateLimited counts checked requests that found no token.
	RateLimited *stats.Counter
	// Enforced counts rate-limited requests that were answered with the limit status.
	Enforced *stats.Counter
}

// NewHTTPStats registers the counters of stat prefix prefix in s. They are exported to
// Prometheus as envoy_<prefix>_http_local_rate_limit_<stat>, Envoy's name with dots as underscores.
func NewHTTPStats(s *stats.Store, prefix string) *HTTPStats {
	c := func(stat string) *stats.Counter {
		name := prefix + ".http_local_rate_limit." + stat
		return s.Counter(name, promName(name))
	}
	return &HTTPStats{Enabled: c("enabled"), OK: c("ok"), RateLimited: c("rate_limited"), Enforced: c("enforced")}
}

// NetworkStats are the counters of a network local rate limit filter.
type NetworkStats struct {
	// RateLimited counts connections closed over the limit.
	RateLimited *stats.Counter
}

// NewNetworkStats registers local_rate_limit.<prefix>.rate_limited in s.
func NewNetworkStats(s *stats.Store, prefix string) *NetworkStats {
	name := "local_rate_limit." + prefix + ".rate_limited"
	return &NetworkStats{RateLimited: s.Counter(name, promName(name))}
}

// promName is Envoy's Prometheus name of an untagged stat: envoy_ and the name with the
// characters Prometheus does not allow as underscores.
func promName(name string) string {
	b := []byte("envoy_" + name)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == ':') {
			b[i] = '_'
		}
	}
	return string(b)
}

// GlobalStats are the counters of the global rate limit filter for one route target cluster,
// cluster.<cluster>.ratelimit.* as Envoy names them (Prometheus envoy_cluster_ratelimit_<stat>
// with the label envoy_cluster_name).
type GlobalStats struct {
	// OK counts under-limit replies from the rate limit service.
	OK *stats.Counter
	// OverLimit counts over-limit replies.
	OverLimit *stats.Counter
	// Error counts failures to get an answer from the service.
	Error *stats.Counter
	// FailureModeAllowed counts errors that let the request through (failure_mode_deny false).
	FailureModeAllowed *stats.Counter
}

// NewGlobalStats registers the global rate limit counters of cluster in s.
func NewGlobalStats(s *stats.Store, cluster string) *GlobalStats {
	tag := stats.Tag{Name: "envoy_cluster_name", Value: cluster}
	c := func(stat string) *stats.Counter {
		return s.Counter("cluster."+cluster+".ratelimit."+stat, "envoy_cluster_ratelimit_"+stat, tag)
	}
	return &GlobalStats{OK: c("ok"), OverLimit: c("over_limit"), Error: c("error"), FailureModeAllowed: c("failure_mode_allowed")}
}
