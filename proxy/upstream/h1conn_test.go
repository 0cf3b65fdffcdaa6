package upstream

import (
	"net/http"
	"reflect"
	"testing"
)

// TestHTTPResponseHeader: the codec's response head converts to net/http's map as net/http's
// client would build it: canonical names, repeated fields in order, framing fields left out,
// declared trailers announced.
func TestHTTPResponseHeader(t *testing.T) {
	var x h1Exchange
	x.resp.Status = 299
	h := &x.resp.Header
	h.Add("content-type", "text/plain")
	h.Add("x-custom-thing", "a")
	h.Add("Set-Cookie", "1")
	h.Add("X-CUSTOM-THING", "b")
	h.Add("transfer-encoding", "chunked")
	h.Add("trailer", "grpc-status, x-t")
	h.Add("SET-COOKIE", "2")
	x.response(nil, true, true)
	resp := x.httpResponse(&http.Request{})
	want := http.Header{
		"Content-Type":   {"text/plain"},
		"X-Custom-Thing": {"a", "b"},
		"Set-Cookie":     {"1", "2"},
		"Trailer":        {"grpc-status, x-t"},
	}
	if !reflect.DeepEqual(resp.Header, want) {
		t.Errorf("Header = %v, want %v", resp.Header, want)
	}
	if !reflect.DeepEqual(resp.Trailer, http.Header{"Grpc-Status": nil, "X-T": nil}) || len(resp.TransferEncoding) != 1 {
		t.Errorf("Trailer = %v, TransferEncoding = %v", resp.Trailer, resp.TransferEncoding)
	}
	if resp.Status != "299 " || statusLine(200) != "200 OK" || statusLine(799) != "799 " {
		t.Errorf("Status = %q", resp.Status)
	}
	resp.Header["X-Custom-Thing"] = append(resp.Header["X-Custom-Thing"], "c")
	if resp.Header["Set-Cookie"][1] != "2" {
		t.Error("values share storage")
	}
}
