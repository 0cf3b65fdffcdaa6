package h1

import (
	"bufio"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/httpmsg"
)

// TestReviewWatchPanicLeavesConnInShard: a handler that panics (as proxy/l7 does with
// http.ErrAbortHandler to abort a response mid-body) after its request was armed leaves the
// connection linked in its shard: when the shard fires, the watch reads the connection that
// ServeConn already closed, takes the read error for the client going away and calls
// OnPeerGone after ServeConn returned — OnPeerGone is documented to run while the handler
// runs. (The per-connection timer before the shards did the same.) Fixed: ServeConn's recover
// path ends the watch.
func TestReviewWatchPanicLeavesConnInShard(t *testing.T) {
	const delay = 53 * time.Millisecond
	sh := oneWatchShard(delay)
	var goneAfterReturn atomic.Bool
	var returned atomic.Bool
	s := &Server{
		WatchDelay: delay,
		OnPeerGone: func() {
			if returned.Load() {
				goneAfterReturn.Store(true)
			}
		},
		Handler: HandlerFunc(func(w *ResponseWriter, r *httpmsg.Request) {
			panic(http.ErrAbortHandler)
		}),
	}
	c, done := serveAndDial(t, s, false)
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	err := <-done
	returned.Store(true)
	if _, ok := err.(*PanicError); !ok {
		t.Fatalf("ServeConn: %v, want a PanicError", err)
	}
	sh.mu.Lock()
	linked := sh.head != nil
	sh.mu.Unlock()
	time.Sleep(3 * delay)
	if linked {
		t.Errorf("the connection of a panicked handler is still in its watch shard after ServeConn returned")
	}
	if goneAfterReturn.Load() {
		t.Errorf("OnPeerGone was called after ServeConn returned (the watch read the closed connection)")
	}
}

// TestReviewWatchSharedShardStress: connections sharing one shard, with keep-alive and
// pipelined requests, bodies read to their end on another goroutine (arming there), and
// handlers that end before, around and after WatchDelay, so that requests are stopped and
// re-armed while the shard fires. No live client is taken for gone, no byte of a pipelined
// request is lost, every response is the request's, and the shard's list ends empty. Run
// with -race.
func TestReviewWatchSharedShardStress(t *testing.T) {
	const delay = 1013 * time.Microsecond
	sh := oneWatchShard(delay)
	s := &Server{
		WatchDelay: delay,
		OnPeerGone: func() { t.Error("a live client was taken for gone") },
		Handler: HandlerFunc(func(w *ResponseWriter, r *httpmsg.Request) {
			var body []byte
			if r.Body != nil && r.Body != httpmsg.NoBody {
				ch := make(chan []byte)
				go func() { b, _ := io.ReadAll(r.Body); ch <- b }() // arms on this goroutine
				body = <-ch
			}
			if d := r.Header.Get("X-Sleep"); d != "" {
				us := 0
				fmt.Sscan(d, &us)
				time.Sleep(time.Duration(us) * time.Microsecond)
			}
			w.Header().Add("X-Path", r.PathString())
			w.Header().Add("X-Body", string(body))
			w.WriteHeader(200)
		}),
	}
	const conns, reqs = 6, 40
	var wg sync.WaitGroup
	for i := 0; i < conns; i++ {
		c, _ := serveAndDial(t, s, i%3 == 2)
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r := rand.New(rand.NewSource(int64(i)))
			br := bufio.NewReader(c)
			for j := 0; j < reqs; {
				// One to three requests written at once (pipelined).
				n := 1 + r.Intn(3)
				if j+n > reqs {
					n = reqs - j
				}
				var paths []string
				var out []byte
				for k := 0; k < n; k++ {
					p := fmt.Sprintf("/c%d/r%d", i, j+k)
					paths = append(paths, p)
					sleep := []int{0, 500, 900, 1000, 1100, 1500, 3000}[r.Intn(7)]
					if r.Intn(2) == 0 {
						out = fmt.Appendf(out, "GET %s HTTP/1.1\r\nHost: a\r\nX-Sleep: %d\r\n\r\n", p, sleep)
					} else {
						out = fmt.Appendf(out, "POST %s HTTP/1.1\r\nHost: a\r\nX-Sleep: %d\r\nContent-Length: %d\r\n\r\n%s", p, sleep, len(p), p)
					}
				}
				if _, err := c.Write(out); err != nil {
					t.Error(err)
					return
				}
				for _, p := range paths {
					resp, err := http.ReadResponse(br, nil)
					if err != nil {
						t.Errorf("conn %d %s: %v", i, p, err)
						return
					}
					resp.Body.Close()
					if got := resp.Header.Get("X-Path"); got != p {
						t.Errorf("conn %d: response for %q, want %q", i, got, p)
						return
					}
					if b := resp.Header.Get("X-Body"); b != "" && b != p {
						t.Errorf("conn %d: body %q, want %q", i, b, p)
					}
				}
				j += n
			}
		}(i)
	}
	wg.Wait()
	testenv.WaitFor(t, "the shard's list to empty", 10*time.Second, func() bool {
		sh.mu.Lock()
		defer sh.mu.Unlock()
		return sh.head == nil && sh.tail == nil
	})
}
