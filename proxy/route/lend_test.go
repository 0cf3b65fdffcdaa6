package route

import (
	"testing"
	"unsafe"

	"github.com/strait-mesh/strait/proxy/httpmsg"
)

// lendingRequest is a Request over an httpmsg.Header that lends its values, as the connection
// manager's stream does.
type lendingRequest struct{ headerOnly }

func (l lendingRequest) Authority() string { return "svc.test:80" }

func (l lendingRequest) LendHeaderField(name string, from int) (string, int) {
	i := l.h.Index(name, from)
	if i < 0 {
		return "", -1
	}
	_, v := l.h.Field(i)
	return unsafe.String(unsafe.SliceData(v), len(v)), i
}

// copyingRequest is the same request without lending.
type copyingRequest struct{ headerOnly }

func (c copyingRequest) Authority() string { return "svc.test:80" }

// TestLentHeaderValue: the lent value equals headerValue's copy in every case (absent, one
// field, repeated fields joined, Host from the authority, pseudo-headers), and the cookie
// lookup finds the same cookie lent or copied, across Cookie fields.
func TestLentHeaderValue(t *testing.T) {
	var h httpmsg.Header
	h.Add("End-User", "jason")
	h.Add("X-Multi", "a")
	h.Add("Other", "o")
	h.Add("x-multi", "b, c")
	h.Add("Empty", "")
	h.Add("Cookie", "a=1; session=xyz")
	h.Add("Cookie", `other="q"`)
	lend, cp := lendingRequest{headerOnly{&h}}, copyingRequest{headerOnly{&h}}
	for _, key := range []string{"End-User", "end-user", "X-Multi", "Empty", "Absent", "Host", ":authority", ":method"} {
		lv, lok := lentHeaderValue(lend, key)
		cv, cok := headerValue(cp, key)
		if lv != cv || lok != cok {
			t.Errorf("%s: lent %q %v, copied %q %v", key, lv, lok, cv, cok)
		}
	}
	if v, ok := lentHeaderValue(lend, "X-Multi"); v != "a,b, c" || !ok {
		t.Errorf("repeated fields: %q %v", v, ok)
	}
	for _, name := range []string{"a", "session", "other", "none"} {
		lv, lok := cookieValue(lend, name)
		cv, cok := cookieValue(cp, name)
		if lv != cv || lok != cok {
			t.Errorf("cookie %s: lent %q %v, copied %q %v", name, lv, lok, cv, cok)
		}
	}
	if v, _ := cookieValue(lend, "other"); v != "q" {
		t.Errorf("cookie in the second field: %q", v)
	}
}
