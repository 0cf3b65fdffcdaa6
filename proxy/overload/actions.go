package overload

import (
	"fmt"
	"strconv"
	"strings"
)

// Action is an overload action. Its String is Envoy's name for it.
type Action int

// The overload actions, in the order of their default thresholds.
const (
	// DisableHTTPKeepalive: HTTP/1.x responses carry "Connection: close" and end their
	// connection; HTTP/2 connections get GOAWAY once idle (envoy.overload_actions.disable_http_keepalive).
	DisableHTTPKeepalive Action = iota
	// StopAcceptingRequests: new HTTP requests get a 503 local reply "envoy overloaded" with
	// response flag OM (envoy.overload_actions.stop_accepting_requests).
	StopAcceptingRequests
	// StopAcceptingConnections: listeners close new connections at once, counted in
	// listener.<addr>.downstream_cx_overload_reject (envoy.overload_actions.stop_accepting_connections).
	StopAcceptingConnections
	// ShrinkHeap: return free memory to the OS (debug.FreeOSMemory), at most every
	// Config.ShrinkHeapInterval (envoy.overload_actions.shrink_heap).
	ShrinkHeap
	numActions
)

var actionNames = [numActions]string{
	"envoy.overload_actions.disable_http_keepalive",
	"envoy.overload_actions.stop_accepting_requests",
	"envoy.overload_actions.stop_accepting_connections",
	"envoy.overload_actions.shrink_heap",
}

const actionPrefix = "envoy.overload_actions."

// String returns Envoy's name of the action, e.g. "envoy.overload_actions.shrink_heap".
func (a Action) String() string {
	if a < 0 || a >= numActions {
		return "Action(" + strconv.Itoa(int(a)) + ")"
	}
	return actionNames[a]
}

// Actions returns every action, in order.
func Actions() []Action {
	out := make([]Action, numActions)
	for a := range numActions {
		out[a] = a
	}
	return out
}

// Off, as a threshold, disables an action.
const Off = -1.0

// Thresholds holds, per Action, the memory pressure (memory in use / limit) at or above which
// the action is active. A zero entry selects the action's default; Off disables it.
type Thresholds [numActions]float64

// DefaultThresholds returns the default thresholds: keep-alive off at 80 % of the limit, new
// requests refused at 90 %, new connections refused and the heap shrunk at 95 %. They are
// staggered so that the cheap, gentle actions come first and each leaves headroom for the
// next; Envoy's own example uses 92 % / 95 % / 95 % for the first three, with its heap limit
// set below the container's (Envoy Gateway: 80 % of it), where strait-proxy's limit is the
// container's or --memory-limit itself.
func DefaultThresholds() Thresholds { return Thresholds{0.80, 0.90, 0.95, 0.95} }

// withDefaults fills zero entries with the defaults.
func (t Thresholds) withDefaults() Thresholds {
	d := DefaultThresholds()
	for a := range numActions {
		if t[a] == 0 {
			t[a] = d[a]
		}
	}
	return t
}

// String renders the thresholds as ParseThresholds reads them, with short action names.
func (t Thresholds) String() string {
	var b strings.Builder
	for a := range numActions {
		if a > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strings.TrimPrefix(a.String(), actionPrefix))
		b.WriteByte('=')
		switch {
		case t[a] < 0:
			b.WriteString("off")
		case t[a] == 0:
			b.WriteString("default")
		default:
			b.WriteString(strconv.FormatFloat(t[a], 'g', -1, 64))
		}
	}
	return b.String()
}

// ParseThresholds reads a comma-separated list of action=value, where action is Envoy's name
// with or without the "envoy.overload_actions." prefix and value is a fraction in (0, 1] or
// "off". Actions not named keep their default. Example:
// "disable_http_keepalive=0.7,stop_accepting_connections=off".
func ParseThresholds(s string) (Thresholds, error) {
	var t Thresholds
	s = strings.TrimSpace(s)
	if s == "" {
		return t, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return Thresholds{}, fmt.Errorf("%q: want action=value", kv)
		}
		a, ok := actionByName(strings.TrimSpace(k))
		if !ok {
			return Thresholds{}, fmt.Errorf("%q: unknown overload action (known: disable_http_keepalive, stop_accepting_requests, stop_accepting_connections, shrink_heap)", k)
		}
		v = strings.TrimSpace(v)
		if v == "off" {
			t[a] = Off
			continue
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f > 0 && f <= 1) {
			return Thresholds{}, fmt.Errorf("%s=%s: want a fraction in (0, 1] or off", k, v)
		}
		t[a] = f
	}
	return t, nil
}

func actionByName(n string) (Action, bool) {
	n = strings.TrimPrefix(n, actionPrefix)
	for a := range numActions {
		if strings.TrimPrefix(actionNames[a], actionPrefix) == n {
			return a, true
		}
	}
	return 0, false
}
