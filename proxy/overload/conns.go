package overload

// defaultMaxConnectionsCap is the global downstream connection limit when the file-descriptor
// limit allows it: Envoy Gateway's default for its proxies'
// envoy.resource_monitors.global_downstream_max_connections monitor. A sidecar serves one
// workload; 50,000 concurrent connections is far beyond a healthy one and still bounds a flood.
const defaultMaxConnectionsCap = 50000

// DefaultMaxConnections returns the global downstream connection limit used when none is
// configured: 50,000, or half of the process's file-descriptor limit (RLIMIT_NOFILE) if that is
// lower, as Envoy recommends ("less than half of the system's file descriptor limit, to account
// for upstream connections, files, and other usage of file descriptors").
func DefaultMaxConnections() int {
	if n := fdLimit(); n > 0 && n/2 < defaultMaxConnectionsCap {
		return max(int(n/2), 1)
	}
	return defaultMaxConnectionsCap
}
