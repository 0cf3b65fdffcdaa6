package ratelimit

import (
	"fmt"
	"strings"

	"github.com/strait-mesh/strait/proxy/stats"
	"github.com/strait-mesh/strait/proxy/xdsfield"
	rlnetv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/ratelimit/v3"
)

// NetworkGlobalTypeURL is the type URL of envoy.filters.network.ratelimit, the network (TCP)
// global rate limit filter.
const NetworkGlobalTypeURL = "type.googleapis.com/envoy.extensions.filters.network.ratelimit.v3.RateLimit"

// NetworkGlobalFilterName is the connection's dynamic metadata namespace the rate limit
// service's dynamic_metadata goes to, Envoy's canonical name of the network filter.
const NetworkGlobalFilterName = "envoy.filters.network.ratelimit"

// NetworkGlobal is a compiled envoy.filters.network.ratelimit config: one ShouldRateLimit call
// per new connection with the filter's static descriptors. It is immutable and safe for
// concurrent use.
type NetworkGlobal struct {
	// StatPrefix roots the statistics: ratelimit.<StatPrefix>.*.
	StatPrefix string
	// Domain is the rate limit domain of every call.
	Domain string
	// Descriptors are the configured descriptors, sent as they are with every call.
	Descriptors Descriptors
	// FailureModeDeny closes a connection whose check failed (else it continues).
	FailureModeDeny bool
	// Client calls the rate limit service.
	Client Client
}

// CompileNetworkGlobal compiles c; field names the config in errors. Fields strait-proxy does
// not implement are *xdsfield.UnsupportedError naming them: a descriptor's limit override,
// hits_addend and is_negative_hits; a descriptor value with substitution formatting (a '%') is
// refused as not supported yet.
func CompileNetworkGlobal(field string, c *rlnetv3.RateLimit) (*NetworkGlobal, error) {
	if err := xdsfield.Check(c, field, "stat_prefix", "domain", "descriptors", "timeout", "failure_mode_deny",
		"rate_limit_service"); err != nil {
		return nil, err
	}
	g := &NetworkGlobal{StatPrefix: c.GetStatPrefix(), Domain: c.GetDomain(), FailureModeDeny: c.GetFailureModeDeny()}
	if g.StatPrefix == "" {
		return nil, fmt.Errorf("%s.stat_prefix: empty", field)
	}
	if g.Domain == "" {
		return nil, fmt.Errorf("%s.domain: empty", field)
	}
	if len(c.GetDescriptors()) == 0 {
		return nil, fmt.Errorf("%s.descriptors: at least one descriptor is required", field)
	}
	for i, d := range c.GetDescriptors() {
		df := fmt.Sprintf("%s.descriptors[%d]", field, i)
		if err := xdsfield.Check(d, df, "entries"); err != nil {
			return nil, err
		}
		if len(d.GetEntries()) == 0 {
			return nil, fmt.Errorf("%s.entries: at least one entry is required", df)
		}
		entries := make([]Entry, 0, len(d.GetEntries()))
		for j, e := range d.GetEntries() {
			ef := fmt.Sprintf("%s.entries[%d]", df, j)
			if err := xdsfield.Check(e, ef, "key", "value"); err != nil {
				return nil, err
			}
			if e.GetKey() == "" {
				return nil, fmt.Errorf("%s.key: empty", ef)
			}
			if e.GetValue() == "" {
				return nil, fmt.Errorf("%s.value: empty", ef)
			}
			// Envoy reads the value as a substitution format string (%DOWNSTREAM_REMOTE_ADDRESS%
			// and the like); strait-proxy sends static values only.
			if strings.Contains(e.GetValue(), "%") {
				return nil, fmt.Errorf("%s.value: %q: substitution formatting is not supported yet (static values only)", ef, e.GetValue())
			}
			entries = append(entries, Entry{Key: e.GetKey(), Value: e.GetValue()})
		}
		g.Descriptors.Add(entries...)
	}
	var err error
	if g.Client, err = compileService(field, c.GetTimeout(), c.GetRateLimitService()); err != nil {
		return nil, err
	}
	return g, nil
}

// NetworkGlobalStats are the statistics of a network global rate limit filter,
// ratelimit.<stat_prefix>.* as Envoy names them (Prometheus envoy_ratelimit_<prefix>_<stat>).
type NetworkGlobalStats struct {
	// Total counts calls to the rate limit service; OK, OverLimit and Error their outcomes.
	Total, OK, OverLimit, Error *stats.Counter
	// CxClosed counts connections closed by the filter: over the limit, or a failed check with
	// failure_mode_deny.
	CxClosed *stats.Counter
	// FailureModeAllowed counts failed checks that let the connection through.
	FailureModeAllowed *stats.Counter
	// Active is the number of calls in flight.
	Active *stats.Gauge
}

// NewNetworkGlobalStats registers the statistics of stat prefix prefix in s.
func NewNetworkGlobalStats(s *stats.Store, prefix string) *NetworkGlobalStats {
	c := func(stat string) *stats.Counter {
		name := "ratelimit." + prefix + "." + stat
		return s.Counter(name, promName(name))
	}
	active := "ratelimit." + prefix + ".active"
	return &NetworkGlobalStats{Total: c("total"), OK: c("ok"), OverLimit: c("over_limit"), Error: c("error"),
		CxClosed: c("cx_closed"), FailureModeAllowed: c("failure_mode_allowed"), Active: s.Gauge(active, promName(active))}
}
