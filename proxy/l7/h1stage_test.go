package l7

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestH1ResponseBeforeBodyEnd: on proxy/h1's connections the codec's writer does the stream
// stage's HTTP/1.1 part (h1Down.watchBody): a response that begins before the request body
// ended is counted (downstream_rq_response_before_rq_complete) and closes the connection, while
// one after a body read to its end keeps it open.
func TestH1ResponseBeforeBodyEnd(t *testing.T) {
	p := slowProxy(t, 0, nil)
	const counter = "http.test.downstream_rq_response_before_rq_complete"

	// The whole body, then the answer: the connection stays open for the next request.
	c := dial(t, p.addr)
	br := bufio.NewReader(c)
	for i := 0; i < 2; i++ {
		io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Close {
			t.Fatalf("request %d: status %d close %v, want 200 kept open", i, resp.StatusCode, resp.Close)
		}
	}
	c.Close()
	if n := p.counter(counter); n != 0 {
		t.Fatalf("%s = %d after whole bodies", counter, n)
	}

	// A direct response to a request whose body has not all arrived: counted, and the
	// connection closes after it without waiting for the rest.
	c = dial(t, p.addr)
	io.WriteString(c, "POST /direct HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nabc")
	got, _ := readUntilClosed(t, c, 5*time.Second)
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(got)), nil)
	if err != nil {
		t.Fatalf("reading %q: %v", got, err)
	}
	if resp.StatusCode != 404 || !resp.Close {
		t.Errorf("status %d close %v, want 404 with Connection: close", resp.StatusCode, resp.Close)
	}
	if n := p.counter(counter); n != 1 {
		t.Errorf("%s = %d, want 1", counter, n)
	}
}

// TestH1DateNow: the connection's Date value is the current time in http.TimeFormat, formatted
// once per second and the same for the responses within it.
func TestH1DateNow(t *testing.T) {
	c := &h1Conn{}
	before := time.Now().Truncate(time.Second)
	first := string(c.dateNow())
	got, err := http.ParseTime(first)
	if err != nil {
		t.Fatalf("Date %q: %v", first, err)
	}
	if after := time.Now(); got.Before(before) || got.After(after) {
		t.Errorf("Date %q not between %v and %v", first, before, after)
	}
	if c.dateSec == 0 || string(c.date[:]) != first {
		t.Errorf("Date %q not kept (second %d, kept %q)", first, c.dateSec, c.date[:])
	}
	// A second later (as the connection sees it), the value is formatted again.
	c.dateSec--
	c.date[0] = 'X'
	if again := string(c.dateNow()); again[0] == 'X' {
		t.Errorf("Date of a new second not formatted again: %q", again)
	}
}
