package testenv

import (
	"context"
	"sync"
	"testing"
	"time"
)

// Running is a Run method (a component's whole life, until its context is cancelled) that Go
// runs on a goroutine of its own.
type Running struct {
	t      testing.TB
	name   string
	wait   time.Duration
	cancel context.CancelFunc
	done   chan struct{}
	err    error
	stop   sync.Once
}

// Go calls run on a goroutine of its own with a context that Stop cancels, and stops it at the
// end of the test. name is what the test's failures call it ("Run", "straitd").
func Go(t testing.TB, name string, wait time.Duration, run func(context.Context) error) *Running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{t: t, name: name, wait: wait, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = run(ctx)
	}()
	t.Cleanup(r.Stop)
	return r
}

// Done is closed when run has returned; Err is then what it returned.
func (r *Running) Done() <-chan struct{} { return r.done }

// Err is what run returned, once Done is closed.
func (r *Running) Err() error {
	<-r.done
	return r.err
}

// Stop cancels run's context and waits up to the wait given to Go for it to return. The test fails
// (t.Errorf) if run returned an error or did not return in time. Only the first Stop waits and
// checks; later ones return at once.
func (r *Running) Stop() {
	r.stop.Do(func() {
		r.cancel()
		select {
		case <-r.done:
			if r.err != nil {
				r.t.Errorf("%s: %v", r.name, r.err)
			}
		case <-time.After(r.wait):
			r.t.Errorf("%s did not return within %v of its cancellation", r.name, r.wait)
		}
	})
}

// ServeUntilEnd runs serve (a server's Serve method) on a goroutine of its own until the end of
// the test, when it calls stop (the server's Close), waits for serve to return and fails the test
// if serve returned an error.
func ServeUntilEnd(t testing.TB, serve, stop func() error) {
	done := make(chan error, 1)
	go func() { done <- serve() }()
	t.Cleanup(func() {
		_ = stop()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
}
