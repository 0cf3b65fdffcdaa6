package h1

import (
	"math"
	"strconv"
	"testing"
)

// endHead's Content-Length is the length in decimal, as before.
func TestEndHeadContentLength(t *testing.T) {
	for _, n := range []int64{0, 7, 10, 1024, 123456789, math.MaxInt64} {
		var w writer
		w.buf = make([]byte, 0, bufSize)
		w.endHead(n, false, "connection: close\r\n")
		want := "content-length: " + strconv.FormatInt(n, 10) + "\r\nconnection: close\r\n\r\n"
		if string(w.buf) != want {
			t.Errorf("endHead(%d) = %q, want %q", n, w.buf, want)
		}
	}
	var w writer
	w.buf = make([]byte, 0, bufSize)
	w.endHead(-1, true, "")
	if want := "transfer-encoding: chunked\r\n\r\n"; string(w.buf) != want {
		t.Errorf("endHead(-1, chunked) = %q, want %q", w.buf, want)
	}
}
