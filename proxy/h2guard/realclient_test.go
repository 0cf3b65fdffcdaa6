package h2guard

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// httpHandler answers /big?n=N with N bytes, echoes the size of a request body, and otherwise
// answers "ok".
func httpHandler(served *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		switch r.URL.Path {
		case "/big":
			n, _ := strconv.Atoi(r.URL.Query().Get("n"))
			chunk := bytes.Repeat([]byte("z"), 32<<10)
			for n > 0 {
				k := min(n, len(chunk))
				if _, err := w.Write(chunk[:k]); err != nil {
					return
				}
				n -= k
			}
		case "/upload":
			n, _ := io.Copy(io.Discard, r.Body)
			fmt.Fprint(w, n)
		case "/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		default:
			io.WriteString(w, "ok")
		}
	})
}

// roundTrips is a well-behaved client's session on one connection.
func roundTrips(cc *http2.ClientConn, host string) error {
	do := func(ctx context.Context, method, path string, body io.Reader) (int, []byte, error) {
		req, _ := http.NewRequestWithContext(ctx, method, "http://"+host+path, body)
		resp, err := cc.RoundTrip(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 0; i < 3; i++ {
		if code, b, err := do(ctx, "GET", "/big?n=4194304", nil); err != nil || code != 200 || len(b) != 4<<20 {
			return fmt.Errorf("download %d: %d, %d bytes, %v", i, code, len(b), err)
		}
	}
	if code, b, err := do(ctx, "POST", "/upload", bytes.NewReader(make([]byte, 4<<20))); err != nil || code != 200 || string(b) != "4194304" {
		return fmt.Errorf("upload: %d %q %v", code, b, err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if code, b, err := do(ctx, "GET", "/small", nil); err != nil || code != 200 || string(b) != "ok" {
				errs <- fmt.Errorf("small: %d %q %v", code, b, err)
			}
		}()
	}
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
			defer cancel()
			do(c, "GET", "/slow", nil) // cancelled: the client resets the stream
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	for i := 0; i < 100; i++ {
		if err := cc.Ping(ctx); err != nil {
			return fmt.Errorf("ping %d: %v", i, err)
		}
	}
	if code, b, err := do(ctx, "GET", "/after", nil); err != nil || code != 200 || string(b) != "ok" {
		return fmt.Errorf("last request: %d %q %v", code, b, err)
	}
	return nil
}

// TestRealLibrary serves a guarded connection with x/net/http2's server and a well-behaved
// x/net/http2 client over loopback TCP: uploads and downloads of several MiB, pings and
// cancelled requests trip no check.
func TestRealLibrary(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var vs violations
	var served atomic.Int64
	srv := &http2.Server{MaxConcurrentStreams: 100, MaxReadFrameSize: 16384} // the SETTINGS_MAX_FRAME_SIZE the guard enforces
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			g := New(c, Limits{OnViolation: vs.on})
			go srv.ServeConn(g, &http2.ServeConnOpts{Handler: httpHandler(&served)})
		}
	}()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	tr := &http2.Transport{AllowHTTP: true}
	h2c, err := tr.NewClientConn(cc)
	if err != nil {
		t.Fatal(err)
	}
	defer h2c.Close()
	if err := roundTrips(h2c, ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
	if v := vs.list(); len(v) != 0 {
		t.Fatalf("well-behaved client tripped %v", v)
	}
}
