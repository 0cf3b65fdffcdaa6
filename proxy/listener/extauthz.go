package listener

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strait-mesh/strait/proxy/balance"
	"github.com/strait-mesh/strait/proxy/extauthz"
	"github.com/strait-mesh/strait/proxy/sniff"
	"github.com/strait-mesh/strait/proxy/stats"
)

// typeNetworkExtAuthz is the type URL of the network external authorization filter
// (AuthorizationPolicy action CUSTOM on TCP).
const typeNetworkExtAuthz = extauthz.NetworkTypeURL

// MaxExtAuthzHeldBytes bounds what the network ext_authz filter reads from a connection while
// its check runs (to notice the client going away); the bytes are held, not passed on, until
// the check allows the connection. Beyond it the filter stops reading (Envoy disables reading
// during the check).
const MaxExtAuthzHeldBytes = 32 << 10

// connExtAuthz is a compiled envoy.filters.network.ext_authz with its statistics.
type connExtAuthz struct {
	cfg *extauthz.NetworkConfig
	env Env
	ctx context.Context // the chain's: done when the listener closes
	st  netExtAuthzStats
}

var (
	_ netFilter = (*connExtAuthz)(nil)
	_ netFilter = (*connRBAC)(nil)
)

// netExtAuthzStats are Envoy's ext_authz.<stat_prefix>.* statistics of the network filter.
type netExtAuthzStats struct {
	total, ok, denied, errors, failureModeAllowed, disabled, cxClosed *stats.Counter
	active                                                            *stats.Gauge
}

func compileNetworkExtAuthz(ctx context.Context, a *anypb.Any, env Env, path string) (*connExtAuthz, error) {
	s := envStats(env)
	c, err := compileTyped(a, path, extauthz.CompileNetwork)
	if err != nil {
		return nil, err
	}
	counter := func(name string) *stats.Counter { return untaggedCounter(s, c.StatPrefix+name) }
	active := c.StatPrefix + "active"
	return &connExtAuthz{cfg: c, env: env, ctx: ctx, st: netExtAuthzStats{
		total: counter("total"), ok: counter("ok"), denied: counter("denied"), errors: counter("error"),
		failureModeAllowed: counter("failure_mode_allowed"), disabled: counter("disabled"), cxClosed: counter("cx_closed"),
		active: s.Gauge(active, promName(active)),
	}}, nil
}

// onConnection runs the filter with Envoy's semantics: a connection filter_enabled_metadata
// does not match continues unchecked (disabled); otherwise one check is sent and the
// connection's data is held until it answers. An allowing reply continues (its dynamic
// metadata, with ext_authz_duration, goes to the envoy.filters.network.ext_authz namespace); a
// denial closes the connection; a failed check closes it unless failure_mode_allow. A
// connection the client closes (or the listener cuts) during the check is closed and its check
// cancelled, counted in total only. Envoy sends the check on the connection's first byte;
// strait-proxy sends it once the filters before it allowed the connection, before the terminal
// sees it, so a denied connection never reaches the upstream (not even its TCP handshake).
func (f *connExtAuthz) onConnection(cs *connState) bool {
	if !f.cfg.Enabled(cs.md.get) {
		f.st.disabled.Inc()
		return true
	}
	f.st.total.Inc()
	f.st.active.Inc()
	req := &extauthz.Connection{
		Source: cs.info.Source, Destination: cs.info.OriginalDst, TLS: cs.info.TLS, SNI: cs.info.ServerName,
		LocalCertificate: cs.info.LocalCertificate, Metadata: cs.md.get,
	}
	if len(cs.info.PeerCertificates) > 0 {
		req.PeerCertificate = cs.info.PeerCertificates[0]
	}
	start := time.Now()
	var res *extauthz.Response
	gone := holdDuring(f.ctx, cs, func(ctx context.Context) {
		res = f.cfg.Check(ctx, clusterCaller{env: f.env, name: f.cfg.Cluster}, req)
	})
	f.st.active.Dec()
	if gone {
		return false
	}
	switch res.Status {
	case extauthz.StatusOK:
		f.st.ok.Inc()
		md := &structpb.Struct{Fields: make(map[string]*structpb.Value, len(res.Metadata.GetFields())+1)}
		for k, v := range res.Metadata.GetFields() {
			md.Fields[k] = v
		}
		// As Envoy, the duration replaces a key of that name from the service.
		md.Fields[extauthz.DurationMetadataKey] = structpb.NewNumberValue(float64(time.Since(start).Milliseconds()))
		cs.md.set(extauthz.NetworkFilterName, md)
		return true
	case extauthz.StatusDenied:
		f.st.denied.Inc()
	default:
		f.st.errors.Inc()
	}
	if res.Metadata != nil {
		cs.md.set(extauthz.NetworkFilterName, res.Metadata)
	}
	if res.Status == extauthz.StatusError && f.cfg.FailureModeAllow {
		f.st.failureModeAllowed.Inc()
		return true
	}
	f.st.cxClosed.Inc()
	return false
}

// holdDuring runs check (a call to a service about the connection) while the connection's
// first bytes are held (holder): check's context is cancelled when the client resets or closes
// the connection, or when parent is done. gone reports that the connection is gone; otherwise
// cs.conn replays what was held.
func holdDuring(parent context.Context, cs *connState, check func(ctx context.Context)) (gone bool) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	sc := sniff.NewConn(cs.conn)
	h := holdData(sc, cancel)
	check(ctx)
	if h.stop() {
		return true
	}
	if len(sc.Peeked()) > 0 || h.eof {
		cs.conn = sc // replay the held bytes (and the client's end of stream)
	}
	return false
}

// holder reads a connection's first bytes into its sniff.Conn while a check runs, so that a
// client that resets or closes the connection (or a listener that cuts it) cancels the check;
// nothing read is passed on until the caller hands the sniff.Conn on. An end of stream (the
// client's half-close) is kept and replayed after the held bytes, without cancelling: the
// client may still want the answer.
type holder struct {
	sc       *sniff.Conn
	stopping atomic.Bool
	done     chan struct{}
	// Set by the reading goroutine before done is closed.
	gone, eof bool
}

func holdData(sc *sniff.Conn, cancel context.CancelFunc) *holder {
	h := &holder{sc: sc, done: make(chan struct{})}
	limit := len(sc.Peeked()) + MaxExtAuthzHeldBytes
	go func() {
		defer close(h.done)
		for !h.stopping.Load() {
			err := sc.Fill(limit)
			switch {
			case err == nil:
			case errors.Is(err, io.EOF):
				h.eof = true
				return
			case h.stopping.Load(), errors.Is(err, sniff.ErrTooLarge), errors.Is(err, os.ErrDeadlineExceeded):
				return
			default:
				h.gone = true
				cancel()
				return
			}
		}
	}()
	return h
}

// stop ends the reading and reports whether the connection is gone (reset or closed).
func (h *holder) stop() (gone bool) {
	h.stopping.Store(true)
	h.sc.SetReadDeadline(time.Unix(1, 0)) //nolint:errcheck // a closed connection ends the read anyway
	<-h.done
	h.sc.SetReadDeadline(time.Time{}) //nolint:errcheck // as above
	return h.gone
}

// clusterCaller sends checks through the named cluster of the current runtime, with its load
// balancing, pools and mTLS.
type clusterCaller struct {
	env  Env
	name string
}

func (c clusterCaller) RoundTrip(req *http.Request) (*http.Response, error) {
	up := c.env.HTTP().Cluster(c.name)
	if up == nil {
		return nil, fmt.Errorf("cluster %q not found", c.name)
	}
	return up.RoundTrip(req, balance.Context{})
}
