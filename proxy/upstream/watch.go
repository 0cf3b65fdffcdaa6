package upstream

import (
	"context"

	"github.com/strait-mesh/strait/proxy/h1"
)

// WatcherKey is the context key under which a request's context may offer an h1.Watcher
// (ctx.Value(WatcherKey{}) returns it): a cancellation that ends exactly when the context does,
// which the HTTP/1.1 connections watch instead of the context (h1.Conn.RoundTripWatch), at no
// allocation per request. A context whose Value answers this key with a Watcher is canceled
// whenever, and only when, that Watcher aborts its exchanges; a context derived from it that
// can be canceled on its own must answer the key itself (nil, or a Watcher of its own).
type WatcherKey struct{}

// watcherOf returns the Watcher ctx offers, or nil.
func watcherOf(ctx context.Context) h1.Watcher {
	w, _ := ctx.Value(WatcherKey{}).(h1.Watcher)
	return w
}
