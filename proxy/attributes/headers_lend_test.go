package attributes

import (
	"net/http"
	"testing"

	"github.com/strait-mesh/strait/proxy/httpmsg"
)

// TestLendFirstValue: the lent first value equals FirstValue's copy, over a codec's fields and
// over a net/http map, present, repeated, empty and absent; a nil Headers has none.
func TestLendFirstValue(t *testing.T) {
	var m httpmsg.Header
	m.Add("User-Agent", "curl/8")
	m.Add("X-Multi", "a")
	m.Add("x-multi", "b")
	m.Add("Empty", "")
	hh := http.Header{"User-Agent": {"curl/8"}, "X-Multi": {"a", "b"}, "Empty": {""}}
	for _, h := range []Headers{(*MessageHeaders)(&m), HTTPHeaders(hh), nil} {
		for _, name := range []string{"User-Agent", "X-Multi", "Empty", "Absent"} {
			if got, want := LendFirstValue(h, name), FirstValue(h, name); got != want {
				t.Errorf("%T %s: lent %q, copied %q", h, name, got, want)
			}
		}
	}
}
