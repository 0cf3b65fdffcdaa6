package h1

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/strait-mesh/strait/proxy/http1"
	"github.com/strait-mesh/strait/proxy/httpmsg"
)

// TestValidAuthority: reg-names of every length around the four-byte steps, with a bad byte at
// each position, ports, and IPv6 literals.
func TestValidAuthority(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"", true}, {"a", true}, {"ab", true}, {"abc", true}, {"abcd", true}, {"abcde", true},
		{"example.com", true}, {"example.com:8080", true}, {"a:", true}, {":80", true},
		{"a-b_c~d!$&'()*+,;=", true}, {"[::1]", true}, {"[::1]:443", true}, {"[fe80::A:b]", true},
		{"a:8x", false}, {"a:80:81", false}, {"a:-1", false}, {"a/b", false}, {"a@b", false},
		{"a%41", false}, {"[::1", false}, {"[::g]", false}, {"[::1]x", false}, {"[::1]:a", false},
		{"host name", false}, {"a\x00", false}, {"\xff", false},
	} {
		if got := validAuthority([]byte(tc.in)); got != tc.want {
			t.Errorf("validAuthority(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
	name := "abcdefghijk"
	for n := 1; n <= len(name); n++ {
		for bad := 0; bad < n; bad++ {
			for _, c := range []byte{' ', '/', '@', '%', 0x7f, 0x80, '['} {
				b := []byte(name[:n])
				b[bad] = c
				if validAuthority(b) {
					t.Errorf("validAuthority(%q) = true", b)
				}
				if validAuthority(append(b, ":80"...)) {
					t.Errorf("validAuthority(%q:80) = true", b)
				}
			}
		}
		if !validAuthority([]byte(name[:n])) || !validAuthority([]byte(name[:n]+":1")) {
			t.Errorf("validAuthority(%q) = false", name[:n])
		}
	}
}

// TestConnChecksEachAuthority: a Conn remembers the last authority it found valid, but checks
// every other one, and every method and path.
func TestConnChecksEachAuthority(t *testing.T) {
	addr := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Method+" "+r.Host)
	}))
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := NewConn(nc, http1.Limits{}, func(bool) {})
	defer c.Close()
	send := func(method, auth, path string) error {
		t.Helper()
		req := &httpmsg.Request{Method: method}
		req.SetAuthorityString(auth)
		req.SetPathString(path)
		var resp httpmsg.Response
		if err := c.RoundTrip(context.Background(), req, &resp); err != nil {
			return err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(b) != method+" "+auth {
			t.Errorf("%s %s: answer %q, %v", method, auth, b, err)
		}
		return nil
	}
	for _, tc := range []struct {
		method, auth, path string
		ok                 bool
	}{
		{"GET", "a.example", "/", true},
		{"GET", "a.example", "/again", true},
		{"GET", "a.exampl", "/", true},
		{"GET", "a.exampl e", "/", false},
		{"GET", "a.exampl", "/", true},
		{"GET", "a@example", "/", false},
		{"GET", "", "/", true},
		{"GET", "b.example:80", "/", true},
		{"PURGE", "b.example:80", "/", true},
		{"G T", "b.example:80", "/", false},
		{"", "b.example:80", "/", false},
		{"GET", "b.example:80", "/a b", false},
		{"GET", "b.example:80", "", false},
		{"GET", "b.example:8x", "/", false},
		{"GET", "b.example:80", "/", true},
	} {
		err := send(tc.method, tc.auth, tc.path)
		if tc.ok && err != nil || !tc.ok && err != ErrInvalidTarget {
			t.Errorf("%q %q %q: %v", tc.method, tc.auth, tc.path, err)
		}
	}
}
