package l7

import (
	"context"
	"testing"
)

// peerStream returns a Stream on the HTTP/1.1 connection c, as serve makes it for c's
// requests (its context is the connection's, which the connection cancels directly).
func peerStream(t *testing.T, c *h1Conn) *Stream {
	s := &Stream{}
	s.plink = c
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s.ctx, s.baseCtx = ctx, ctx
	return s
}

// TestPeerGoneRacesRequestStart: a client that goes away while its connection's request
// starts (cancelScope) cancels that request, whichever side comes first; run it with -race.
func TestPeerGoneRacesRequestStart(t *testing.T) {
	for i := range 2000 {
		c := &h1Conn{}
		s := peerStream(t, c)
		if i%2 == 1 {
			// The Stream's reqCancel served an earlier request of the connection.
			s.endRequest(s.cancelScope(), false)
		}
		gone := make(chan struct{})
		go func() { c.peerGone(); close(gone) }()
		rc := s.cancelScope()
		<-gone
		if rc.Err() == nil {
			t.Fatalf("iteration %d: a request started as its client went away is not canceled", i)
		}
		s.endRequest(rc, false)
	}
}

// TestPeerGoneDuringRequest: the client going away cancels the request in flight with
// context.Canceled, and a request the connection starts after that is canceled at once.
func TestPeerGoneDuringRequest(t *testing.T) {
	c := &h1Conn{}
	s := peerStream(t, c)
	rc := s.cancelScope()
	done := make(chan struct{})
	go func() { c.peerGone(); close(done) }()
	<-done
	if rc.Err() != context.Canceled || causeOf(rc) != context.Canceled {
		t.Fatalf("request in flight: err %v cause %v, want context.Canceled", rc.Err(), causeOf(rc))
	}
	s.endRequest(rc, false)
	rc = s.cancelScope()
	if rc.Err() == nil {
		t.Fatal("a request of a connection whose client is gone is not canceled")
	}
	s.endRequest(rc, false)
}

// TestPeerGoneAfterStreamMoved: a Stream (and its reqCancel) goes back to the pool after its
// request on one connection and serves the next request on another; the first connection's
// client going away then (its link still names the reqCancel) does not cancel that request,
// nor does it after that request ended and the reqCancel serves a later one.
func TestPeerGoneAfterStreamMoved(t *testing.T) {
	a, b := &h1Conn{}, &h1Conn{}
	s := peerStream(t, a)
	rc := s.cancelScope()
	s.endRequest(rc, false)
	if s.rc != rc {
		t.Fatal("reqCancel not kept")
	}
	s.plink = b
	rc2 := s.cancelScope()
	if rc2 != rc {
		t.Fatal("reqCancel not reused")
	}
	done := make(chan struct{})
	go func() { a.peerGone(); close(done) }()
	<-done
	if rc2.Err() != nil {
		t.Fatal("connection a's client going away canceled a request of connection b")
	}
	s.endRequest(rc2, false)
	rc3 := s.cancelScope()
	b.peerGone() // b's client leaves during its next request: that one is canceled
	if rc3.Err() == nil {
		t.Fatal("connection b's request not canceled by its client going away")
	}
	s.endRequest(rc3, false)
	a.peerGone() // late and repeated: reaches nothing
}
