package l7

import (
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/strait-mesh/strait/proxy/stats"
)

// Overload is the overload manager's state as the connection manager reads it (package
// overload implements it). Both methods are called on every request and must be cheap (an
// atomic load) and safe for concurrent use.
type Overload interface {
	// StopAcceptingRequests reports whether envoy.overload_actions.stop_accepting_requests is
	// active: new requests then get a 503 local reply.
	StopAcceptingRequests() bool
	// DisableHTTPKeepalive reports whether envoy.overload_actions.disable_http_keepalive is
	// active.
	DisableHTTPKeepalive() bool
}

// overloadState is a Handler's side of the overload actions.
type overloadState struct {
	once sync.Once
	// downstream_rq_overload_close: requests answered 503 by stop_accepting_requests.
	// downstream_cx_overload_disable_keepalive: HTTP/1 responses sent with keep-alive off
	// (each ends its connection).
	rqOverloadClose, cxDisableKeepalive *stats.Counter

	mu           sync.Mutex  // serializes keep-alive changes
	keepaliveOff atomic.Bool // keep-alive is off on h.srv
}

// shedOverload applies the overload actions to a new request, before anything else looks at it.
// disable_http_keepalive switches keep-alive off on the handler's server (and back on when it
// ends): HTTP/1.x responses then carry "Connection: close" and end their connection, idle
// HTTP/1 connections are closed, and HTTP/2 connections get GOAWAY once idle.
// stop_accepting_requests answers 503 "envoy overloaded" with response flag OM and details
// "overload", as Envoy does. It reports whether the request was answered.
//
// Cost without overload: two atomic loads (and a sync.Once check).
func (h *Handler) shedOverload(s *Stream) bool {
	o := h.opts.Overload
	if o == nil {
		return false
	}
	st := &h.overload
	st.once.Do(func() {
		c := func(n string) *stats.Counter {
			return h.opts.Stats.Counter("http."+h.statPrefix+"."+n, "envoy_http_"+n,
				stats.Tag{Name: "envoy_http_conn_manager_prefix", Value: h.statPrefix})
		}
		st.rqOverloadClose = c("downstream_rq_overload_close")
		st.cxDisableKeepalive = c("downstream_cx_overload_disable_keepalive")
	})
	if off := o.DisableHTTPKeepalive(); off != st.keepaliveOff.Load() {
		h.setKeepalive(o)
	}
	if st.keepaliveOff.Load() && s.HTTP1() {
		st.cxDisableKeepalive.Inc()
	}
	if o.StopAcceptingRequests() {
		h.rejectOverloaded(s)
		return true
	}
	return false
}

// rejectOverloaded answers a request the overload manager's stop_accepting_requests sheds. Out
// of shedOverload's common path.
//
//go:noinline
func (h *Handler) rejectOverloaded(s *Stream) {
	h.overload.rqOverloadClose.Inc()
	s.localReply(http.StatusServiceUnavailable, FlagOverloadManager, "overload", "envoy overloaded", -1)
}

// setKeepalive brings the server's keep-alive setting in line with disable_http_keepalive. It
// runs only when the action changes; SetKeepAlivesEnabled(false) closes idle HTTP/1 connections.
func (h *Handler) setKeepalive(o Overload) {
	st := &h.overload
	st.mu.Lock()
	defer st.mu.Unlock()
	off := o.DisableHTTPKeepalive()
	if off == st.keepaliveOff.Load() || h.srv == nil {
		return
	}
	h.srv.SetKeepAlivesEnabled(!off)
	st.keepaliveOff.Store(off)
	if off {
		h.closeIdleH1()
		h.log.Warn("overload: HTTP keep-alive disabled", "stat_prefix", h.statPrefix)
	} else {
		h.log.Info("overload: HTTP keep-alive enabled again", "stat_prefix", h.statPrefix)
	}
}
