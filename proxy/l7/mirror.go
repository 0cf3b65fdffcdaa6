package l7

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"time"

	"github.com/strait-mesh/strait/proxy/balance"
)

// maxMirrorsInFlight bounds concurrent shadow requests per connection manager; beyond it
// mirrors are dropped (they are best effort, as in Envoy).
const maxMirrorsInFlight = 64

// mirrorTimeout bounds a shadow request whose route has no timeout.
const mirrorTimeout = 30 * time.Second

// mirror sends fire-and-forget copies of the request to the route's shadow clusters. The copy
// carries the request headers as sent upstream, the Host with "-shadow" appended, and the body
// when it was read completely and fit the replay buffer (otherwise the mirror is skipped).
func (h *Handler) mirror(s *Stream, body *replayBody) {
	if len(s.Route.Mirrors) > 0 { // small enough to inline: most routes mirror nothing
		h.sendMirrors(s, body)
	}
}

// sendMirrors is mirror for a route with request_mirror_policies.
func (h *Handler) sendMirrors(s *Stream, body *replayBody) {
	rt := s.Route
	var payload []byte
	if body != nil {
		b, ok := body.complete()
		if !ok {
			return
		}
		payload = b
	}
	for i := range rt.Mirrors {
		m := &rt.Mirrors[i]
		if !m.Fraction.Sample() {
			continue
		}
		name := s.mirrorCluster(m)
		if name == "" {
			continue
		}
		up := h.env.Cluster(name)
		if up == nil {
			continue
		}
		select {
		case h.mirrorSem <- struct{}{}:
		default:
			continue
		}
		req := s.upstreamRequest()
		req.Host = m.ShadowHost(s.authority)
		req.ContentLength = int64(len(payload))
		req.Body = http.NoBody
		req.Trailer = nil
		if len(payload) > 0 {
			req.Body = io.NopCloser(bytes.NewReader(payload))
		}
		timeout := rt.Timeout
		if timeout <= 0 {
			timeout = mirrorTimeout
		}
		go func() {
			defer func() { <-h.mirrorSem }()
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			resp, err := up.RoundTrip(req.WithContext(ctx), balance.Context{})
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
		}()
	}
}
