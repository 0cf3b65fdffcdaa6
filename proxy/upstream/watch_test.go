package upstream

import (
	"context"
	"testing"

	"github.com/strait-mesh/strait/proxy/h1"
)

// watchCtx is a context that is its own h1.Watcher, as proxy/l7's reqCancel.
type watchCtx struct{ context.Context }

func (w *watchCtx) Value(key any) any {
	if _, ok := key.(WatcherKey); ok {
		return h1.Watcher(w)
	}
	return w.Context.Value(key)
}
func (w *watchCtx) Watch(h1.Aborter, uint64) bool { return true }
func (w *watchCtx) Unwatch(h1.Aborter)            {}

// TestWatcherOfOnlyItself: a context is watched as a Watcher only when it is the Watcher it
// offers; a child that can be canceled on its own, or a value context above it, is watched as
// a context (its cancel must abort the exchange).
func TestWatcherOfOnlyItself(t *testing.T) {
	wc := &watchCtx{context.Background()}
	if watcherOf(wc) == nil {
		t.Fatal("the Watcher context itself is not watched as one")
	}
	child, cancel := context.WithCancel(wc)
	defer cancel()
	if w := watcherOf(child); w != nil {
		t.Errorf("a cancelable child is taken for its parent's Watcher %T", w)
	}
	if w := watcherOf(WithHostReport(wc, &HostReport{})); w != nil {
		t.Errorf("a value child is taken for its parent's Watcher %T", w)
	}
}
