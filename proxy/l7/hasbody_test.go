package l7

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/strait-mesh/strait/proxy/httpmsg"
)

// TestHasBodyNoBody checks hasBody's type-word test: http.NoBody (also a copy of its value)
// is no body whatever the length says, any other reader with a non-zero length is one.
func TestHasBodyNoBody(t *testing.T) {
	var s Stream
	s.req = new(httpmsg.Request)
	s.req.ContentLength = -1
	for _, c := range []struct {
		name string
		body io.ReadCloser
		want bool
	}{
		{"nil", nil, false},
		{"NoBody", http.NoBody, false},
		{"NoBody copy", func() io.ReadCloser { nb := http.NoBody; return nb }(), false},
		{"reader", io.NopCloser(strings.NewReader("x")), true},
	} {
		s.body = c.body
		if got := s.hasBody(); got != c.want {
			t.Errorf("%s: hasBody = %v, want %v", c.name, got, c.want)
		}
	}
	s.body, s.req.ContentLength = io.NopCloser(strings.NewReader("")), 0
	if s.hasBody() {
		t.Error("length 0: hasBody = true, want false")
	}
}
