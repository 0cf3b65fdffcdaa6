package xdsclient

import "context"

// received is one result of a stream's Recv.
type received[T any] struct {
	resp T
	err  error
}

// pump calls recv on its own goroutine and delivers each result on the returned channel, so the
// stream's loop can select on responses, wake-ups and cancellation together. It stops after the
// first error or when ctx ends.
func pump[T any](ctx context.Context, recv func() (T, error)) <-chan received[T] {
	ch := make(chan received[T])
	go func() {
		for {
			resp, err := recv()
			select {
			case ch <- received[T]{resp, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return ch
}
