package l7

import (
	"strings"
	"testing"

	"github.com/strait-mesh/strait/proxy/httpmsg"
)

// TestReviewSanitizeTokensAliasStorage: sanitizeConnection keeps its tokens as slices of the
// header's storage while it edits the header (DelAt, and Set for a nominated TE, which may
// grow the storage into a new array): every token after the TE still names its field, in
// every order, with the storage full to its capacity or not.
func TestReviewSanitizeTokensAliasStorage(t *testing.T) {
	for _, conn := range []string{
		"te, foo, bar", "foo, te, bar", "foo, bar, te", "TE,Foo,BAR", "te, te, foo, bar",
	} {
		for _, tight := range []bool{false, true} {
			var h httpmsg.Header
			h.Add("Connection", conn)
			h.Add("Te", "gzip, trailers")
			h.Add("Foo", "1")
			h.Add("Bar", "2")
			h.Add("Keep", "3")
			if tight {
				// Copy into a header whose storage has no room left: Set must reallocate.
				var c httpmsg.Header
				c.CopyFrom(&h)
				h = c
			}
			if !sanitizeConnection(&h) {
				t.Fatalf("%q: refused", conn)
			}
			var got []string
			for i := 0; i < h.Len(); i++ {
				k, v := h.Field(i)
				got = append(got, string(k)+"="+string(v))
			}
			want := "Connection=" + conn + " Te=trailers Keep=3"
			if strings.Join(got, " ") != want {
				t.Errorf("%q (tight %v): fields %q, want %q", conn, tight, strings.Join(got, " "), want)
			}
		}
	}
}
