package lds

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// TestSocketHandOverLosesNoConnection switches a socket between feeds while clients connect:
// every connection is served by exactly one generation.
func TestSocketHandOverLosesNoConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := newSocket(ln, netip.MustParseAddrPort(ln.Addr().String()), slog.Default())
	defer s.close()
	serve := func(f *feed, tag string) {
		for {
			c, err := f.Accept()
			if err != nil {
				return
			}
			go func() { io.WriteString(c, tag); c.Close() }()
		}
	}
	f1 := s.newFeed()
	go serve(f1, "1")
	s.switchTo(f1)
	go s.acceptLoop()

	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	seen := make(chan string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			b, err := io.ReadAll(c)
			if err != nil || len(b) != 1 {
				errs <- io.ErrUnexpectedEOF
				return
			}
			seen <- string(b)
		}()
		if i == n/2 {
			f2 := s.newFeed()
			go serve(f2, "2")
			s.switchTo(f2)
			f1.Close()
		}
	}
	wg.Wait()
	close(errs)
	close(seen)
	for err := range errs {
		t.Fatalf("connection failed during hand-over: %v", err)
	}
	count := map[string]int{}
	for tag := range seen {
		count[tag]++
	}
	if count["1"]+count["2"] != n || count["2"] == 0 {
		t.Fatalf("served: %v", count)
	}
}
