package upstream

import (
	"context"

	"github.com/strait-mesh/strait/proxy/h1"
)

// WatcherKey is the context key under which a request's context may offer an h1.Watcher
// (ctx.Value(WatcherKey{}) returns it): a cancellation that ends exactly when the context does,
// which the HTTP/1.1 connections watch instead of the context (h1.Conn.RoundTripWatch), at no
// allocation per request. Only a context that is itself the Watcher is watched that way: a
// context derived from it (a value, a cancelable child) passes the key through to its parent,
// and a child that can be canceled on its own must not be taken for its parent, so it is
// watched as any other context.
type WatcherKey struct{}

// watcherOf returns the Watcher ctx is and offers, or nil.
func watcherOf(ctx context.Context) h1.Watcher {
	w, _ := ctx.Value(WatcherKey{}).(h1.Watcher)
	if w == nil || any(w) != any(ctx) {
		return nil
	}
	return w
}
