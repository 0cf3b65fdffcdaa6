package h1

// Watcher is a cancellation source that an exchange watches without a context: Conn's
// RoundTripWatch registers the connection's exchange with Watch when it starts and removes it
// with Unwatch when it ends (the response body closed, or the round trip failed). A caller that
// owns a per-request cancellation object implements it so that an exchange costs no
// context.AfterFunc (its allocations and the context tree's bookkeeping).
//
// An Abort that races with Unwatch is harmless: one that comes after the exchange's watch
// ended does nothing, and the codec waits for one that began before.
type Watcher interface {
	// Watch registers a for exchange gen: unless Unwatch removes it first, a.Abort(gen) runs
	// once, when the source is canceled, on the canceling goroutine. It returns false, and
	// registers nothing, when the source is canceled already.
	Watch(a Aborter, gen uint64) bool
	// Unwatch removes a's registration.
	Unwatch(a Aborter)
}

// Aborter is what a Watcher aborts: the exchanges of one connection.
type Aborter interface {
	// Abort interrupts the I/O of exchange gen; it does nothing once that exchange is over
	// (a cancellation racing with the end of an exchange never reaches the next one). It does
	// not block.
	Abort(gen uint64)
}
