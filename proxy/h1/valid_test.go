package h1

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/strait-mesh/strait/proxy/http1"
	"github.com/strait-mesh/strait/proxy/httpmsg"
)

// TestParsedFieldsPassWriterChecks guards the valid mark (httpmsg.Header.AddValid) that the
// server and client put on the fields their parsers accept, which the writer then copies
// unchecked: every byte the parser accepts in a name or value, the writer's checks accept.
func TestParsedFieldsPassWriterChecks(t *testing.T) {
	var p http1.Parser
	p.Init(http1.Limits{}, true)
	accepted := 0
	for c := 0; c < 256; c++ {
		for _, head := range []string{
			"GET / HTTP/1.1\r\nHost: h\r\nX" + string(rune(0)) + "Y: v\r\n\r\n",
			"GET / HTTP/1.1\r\nHost: h\r\nX: a" + string(rune(0)) + "b\r\n\r\n",
			"GET / HTTP/1.1\r\nHost: h\r\nX: " + string(rune(0)) + "\r\n\r\n",
		} {
			b := []byte(head)
			b[strings.IndexByte(head, 0)] = byte(c)
			p.Reset()
			if _, err := p.Feed(b); err != nil || !p.Done() {
				continue
			}
			accepted++
			for i := 0; i < p.NumFields(); i++ {
				name, value := p.Field(i)
				if !httpmsg.ValidName(name) || !httpmsg.ValidValue(value) {
					t.Errorf("parser accepted %q: %q, which the writer refuses", name, value)
				}
			}
		}
	}
	if accepted < 3*128 {
		t.Errorf("the parser accepted only %d heads", accepted) // the test would test nothing
	}
}

// TestWriterRefusesChangedValidField: a field received (marked valid) and then given a value
// with CR/LF by a filter or header op (Set, SetBytes) is checked again and refused, and
// nothing of it reaches the wire; a field added after received ones likewise.
func TestWriterRefusesChangedValidField(t *testing.T) {
	for _, edit := range []func(h *httpmsg.Header){
		func(h *httpmsg.Header) { h.Set("x-a", "v\r\nInjected: 1") },
		func(h *httpmsg.Header) { h.SetBytes("X-A", []byte("v\nInjected: 1")) },
		func(h *httpmsg.Header) { h.Add("x-c", "v\r\nInjected: 1") },
		func(h *httpmsg.Header) { h.AddBytes([]byte("x-c\r\nInjected"), []byte("1")) },
		func(h *httpmsg.Header) { h.Set("x-a\r\nInjected", "1") },
	} {
		req := newRequest("GET", "/", "", 0)
		req.Header.AddValid([]byte("x-a"), []byte("1"))
		req.Header.AddValid([]byte("x-b"), []byte("2"))
		edit(&req.Header)
		seenCh := make(chan []byte, 1)
		addr := listen(t, func(c net.Conn) { b, _ := io.ReadAll(c); c.Close(); seenCh <- b })
		p := newPool(addr)
		if err := p.RoundTrip(context.Background(), req, new(httpmsg.Response)); err != ErrInvalidField {
			t.Errorf("%v: %v", fieldsOf(&req.Header), err)
		}
		p.Close()
		if seen := <-seenCh; strings.Contains(string(seen), "Injected") {
			t.Errorf("wrote an invalid field: %q", seen)
		}
	}

	// The same on a response: a header the handler changed after copying received fields.
	s := &Server{Handler: HandlerFunc(func(w *ResponseWriter, r *httpmsg.Request) {
		for i := 0; i < r.Header.Len(); i++ {
			w.Header().AddField(&r.Header, i)
		}
		w.Header().Set("x-a", "v\r\nInjected: 1")
		w.Write([]byte("body"))
	})}
	out, _ := serve(t, s, "GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nX-B: 2\r\n\r\n")
	if strings.Contains(out, "Injected") {
		t.Errorf("wrote an invalid field: %q", out)
	}
}

// TestWriterCopiesValidRuns: received fields are written as they came, in order, around
// changed, added and deleted ones and without the fields the codec writes itself.
func TestWriterCopiesValidRuns(t *testing.T) {
	var h httpmsg.Header
	for _, f := range [][2]string{{"A", "1"}, {"Content-Length", "5"}, {"b", "2"}, {"C", "3"}, {"Host", "x"}, {"D", "4"}, {"E", "5"}, {"Transfer-Encoding", "chunked"}, {"F", "6"}} {
		h.AddValid([]byte(f[0]), []byte(f[1]))
	}
	h.Set("c", "three")
	h.Del("e")
	h.Add("G", "7")
	w := writer{dst: io.Discard, buf: make([]byte, 0, bufSize)}
	if err := w.writeFields(&h, skipFraming|skipHost); err != nil {
		t.Fatal(err)
	}
	if got, want := string(w.buf), "A: 1\r\nb: 2\r\nC: three\r\nD: 4\r\nF: 6\r\nG: 7\r\n"; got != want {
		t.Errorf("wrote %q, want %q", got, want)
	}
	w.buf = w.buf[:0]
	if err := w.writeFields(&h, skipNone); err != nil {
		t.Fatal(err)
	}
	if got, want := string(w.buf), "A: 1\r\nContent-Length: 5\r\nb: 2\r\nC: three\r\nHost: x\r\nD: 4\r\nTransfer-Encoding: chunked\r\nF: 6\r\nG: 7\r\n"; got != want {
		t.Errorf("wrote %q, want %q", got, want)
	}
	// A run longer than the buffer.
	var big httpmsg.Header
	for i := 0; i < 100; i++ {
		big.AddValid([]byte("x-long"), []byte(strings.Repeat("v", 100)))
	}
	var sink strings.Builder
	w = writer{dst: &sink, buf: make([]byte, 0, bufSize)}
	w.writeString("head\r\n")
	if err := w.writeFields(&big, skipNone); err != nil || w.flush() != nil {
		t.Fatal(err)
	}
	if want := "head\r\n" + strings.Repeat("x-long: "+strings.Repeat("v", 100)+"\r\n", 100); sink.String() != want {
		t.Errorf("long run: %d bytes, want %d", sink.Len(), len(want))
	}
}

func fieldsOf(h *httpmsg.Header) []string {
	var l []string
	h.Range(func(n, v []byte) bool { l = append(l, string(n)+"="+string(v)); return true })
	return l
}
