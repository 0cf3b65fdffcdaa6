package httpmsg

import (
	"io"
	"strings"
	"testing"
)

// TestBytesBodyTake: Take returns the next bytes without a copy and reads past them, and
// refuses (reading nothing) more than is left.
func TestBytesBodyTake(t *testing.T) {
	src := []byte("0123456789")
	b := NewBytesBody(src)
	if p := b.Take(4); string(p) != "0123" || &p[0] != &src[0] || cap(p) != 4 {
		t.Fatalf("Take(4) = %q (cap %d)", p, cap(p))
	}
	if p := b.Take(7); p != nil || b.Len() != 6 {
		t.Fatalf("Take past the end = %q, %d left", p, b.Len())
	}
	rest := make([]byte, 2)
	if n, _ := b.Read(rest); n != 2 || string(rest) != "45" {
		t.Fatalf("Read after Take: %q", rest[:n])
	}
	if p := b.Take(4); string(p) != "6789" || b.Len() != 0 {
		t.Fatalf("Take(4) = %q, %d left", p, b.Len())
	}
	b.ResetBody([]byte("ab"))
	if p := b.Take(2); string(p) != "ab" {
		t.Fatalf("Take after ResetBody = %q", p)
	}
	b.Reset([]byte("xyz"))
	if p := b.Take(2); string(p) != "xy" {
		t.Fatalf("Take after Reset = %q", p)
	}

}

// TestIsNoBody: IsNoBody is body == NoBody, for NoBody, nil and other bodies.
func TestIsNoBody(t *testing.T) {
	var zero noBody
	for _, c := range []struct {
		body io.Reader
		want bool
	}{
		{NoBody, true},
		{zero, true},
		{nil, false},
		{NewBytesBody(nil), false},
		{strings.NewReader(""), false},
	} {
		if got := IsNoBody(c.body); got != c.want || got != (c.body == NoBody) {
			t.Errorf("IsNoBody(%T) = %v, want %v", c.body, got, c.want)
		}
	}
}

// TestSetTargetString: SetTargetString and SetTarget set both parts, growing the storage when
// needed and reusing it without allocations.
func TestSetTargetString(t *testing.T) {
	var r Request
	r.SetTargetString("example.com", "/a?b")
	if string(r.Authority()) != "example.com" || string(r.Path()) != "/a?b" {
		t.Fatalf("got %q %q", r.Authority(), r.Path())
	}
	// Reused storage: a shorter target fits, a longer one grows it; values set before stay.
	r.Reset()
	r.SetTargetString("h", "/")
	if string(r.Authority()) != "h" || string(r.Path()) != "/" {
		t.Fatalf("after reset: %q %q", r.Authority(), r.Path())
	}
	long := strings.Repeat("p", 3*cap(r.pseudo))
	r.SetTargetString("host:8080", "/"+long)
	if string(r.Authority()) != "host:8080" || string(r.Path()) != "/"+long {
		t.Fatalf("grown: %q %q", r.Authority(), r.Path())
	}
	// Empty parts (CONNECT has no path).
	r.Reset()
	r.SetTargetString("", "")
	if len(r.Authority()) != 0 || len(r.Path()) != 0 {
		t.Fatalf("empty: %q %q", r.Authority(), r.Path())
	}
	// The []byte form, after the string form's parts.
	r.SetTarget([]byte("b.example:80"), []byte("/x"))
	if string(r.Authority()) != "b.example:80" || string(r.Path()) != "/x" {
		t.Fatalf("SetTarget: %q %q", r.Authority(), r.Path())
	}
	if got := testing.AllocsPerRun(100, func() {
		r.Reset()
		r.SetTargetString("example.com", "/a?b")
	}); got != 0 {
		t.Fatalf("%v allocations per reused request, want 0", got)
	}
}
