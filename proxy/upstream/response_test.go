package upstream

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/strait-mesh/strait/internal/testenv"
	"github.com/strait-mesh/strait/proxy/balance"
	"github.com/strait-mesh/strait/proxy/httpmsg"
	"github.com/strait-mesh/strait/proxy/xdspb"
	clusterv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/cluster/v3"
	corev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/core/v3"
)

// values returns the values of h's fields named name (any case), in order.
func values(h *httpmsg.Header, name string) []string {
	var vs []string
	for i := h.Index(name, 0); i >= 0; i = h.Index(name, i+1) {
		_, v := h.Field(i)
		vs = append(vs, string(v))
	}
	return vs
}

// TestRoundTripMessageResponse: the router's Response says the same whether an HTTP/1.1 pool's
// codec filled it or net/http's HTTP/2 client read it (FromHTTP): repeated fields in order, no
// Transfer-Encoding, the announced trailers, trailers (with Grpc-Status) once the body ended,
// the protocol; closing the body ends the request's accounting.
func TestRoundTripMessageResponse(t *testing.T) {
	raw := testenv.ServeTCP(t, "127.0.0.1:0", func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			r, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if r.URL.Path == "/10" {
				_, _ = io.WriteString(c, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
				return
			}
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nx-multi: a\r\nTransfer-Encoding: chunked\r\nX-MULTI: b\r\n"+
				"Trailer: grpc-status, x-t\r\nTrailer: Grpc-Status\r\n\r\n5\r\nhello\r\n0\r\ngrpc-status: 7\r\nx-t: v\r\n\r\n")
		}
	})
	h2 := newBackend(t, "h2", h2cBackend, func(b *backend, _ *http.Protocols) {
		b.setHandler(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Trailer", "Grpc-Status, X-T")
			w.Header().Add("X-Multi", "a")
			w.Header().Add("X-Multi", "b")
			_, _ = io.WriteString(w, "hello")
			w.Header().Set("Grpc-Status", "7")
			w.Header().Set("X-T", "v")
		})
	})
	h1c, st1 := compileT(t, xdspb.MustFrom[*clusterv3.Cluster](testenv.StaticCluster("h1", 2*time.Second, raw)), Deps{})
	h2cfg := staticCluster("h2", clusterv3.Cluster_ROUND_ROBIN, h2)
	h2cfg.Http2ProtocolOptions = &corev3.Http2ProtocolOptions{}
	h2c, st2 := compileT(t, h2cfg, Deps{})

	send := func(cl *Cluster, path string) *Response {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		t.Cleanup(cancel)
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://svc.test"+path, nil)
		var h httpmsg.Header
		h.Add("x-req", "1")
		head := &MessageHead{Header: &h, Path: path, Released: true}
		resp, err := cl.RoundTripMessage(req, head, balance.Context{})
		if err != nil {
			t.Fatalf("%s: %v", cl.Name(), err)
		}
		// Only the HTTP/1.1 codec is done with the request when the call returns.
		if want := cl == h1c; head.Released != want {
			t.Errorf("%s: Released %v, want %v", cl.Name(), head.Released, want)
		}
		return resp
	}
	for _, tc := range []struct {
		cl     *Cluster
		proto  httpmsg.Proto
		length int64 // net/http's HTTP/2 server tells the length of a body it buffered whole
	}{{h1c, httpmsg.HTTP11, -1}, {h2c, httpmsg.HTTP2, 5}} {
		resp := send(tc.cl, "/")
		names := slices.Clone(resp.TrailerNames)
		slices.Sort(names)
		if resp.Status != 200 || resp.Proto != tc.proto || resp.ContentLength != tc.length ||
			!reflect.DeepEqual(values(resp.Header, "X-Multi"), []string{"a", "b"}) ||
			resp.Header.Has("Transfer-Encoding") || !reflect.DeepEqual(names, []string{"Grpc-Status", "X-T"}) {
			t.Errorf("%s: %d %v len %d, trailers %q, fields %d", tc.cl.Name(), resp.Status, resp.Proto, resp.ContentLength, names, resp.Header.Len())
		}
		if resp.Trailer.Len() != 0 {
			t.Errorf("%s: trailers before the body ended", tc.cl.Name())
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil || string(b) != "hello" {
			t.Errorf("%s: body %q, %v", tc.cl.Name(), b, err)
		}
		if g, _ := resp.Trailer.Value("Grpc-Status"); string(g) != "7" || resp.Trailer.Get("x-t") != "v" || resp.Trailer.Len() != 2 {
			t.Errorf("%s: trailers: grpc-status %q, %d fields", tc.cl.Name(), g, resp.Trailer.Len())
		}
		resp.Body.Close()
	}
	if g := gauge(st1, "cluster.h1.upstream_rq_active") + gauge(st2, "cluster.h2.upstream_rq_active"); g != 0 {
		t.Errorf("upstream_rq_active %d after the bodies closed", g)
	}

	resp := send(h1c, "/10")
	if b, _ := io.ReadAll(resp.Body); resp.Proto != httpmsg.HTTP10 || resp.ContentLength != 2 || string(b) != "ok" ||
		resp.Header.Get("content-length") != "2" {
		t.Errorf("HTTP/1.0: %v len %d %q", resp.Proto, resp.ContentLength, b)
	}
	resp.Body.Close()
}

// TestFromHTTP: a response of net/http's shape converts field for field; an upgraded
// connection stays writable.
func TestFromHTTP(t *testing.T) {
	hr := &http.Response{StatusCode: 101, ProtoMajor: 1, ProtoMinor: 1, ContentLength: -1,
		Header: http.Header{"Upgrade": {"websocket"}, "Set-Cookie": {"1", "2"}},
		Body:   struct{ io.ReadWriteCloser }{}}
	r := FromHTTP(hr)
	if _, ok := r.Body.(io.Writer); r.Status != 101 || r.Proto != httpmsg.HTTP11 || !ok || r.TrailerNames != nil ||
		!reflect.DeepEqual(values(r.Header, "set-cookie"), []string{"1", "2"}) || r.Header.Get("Upgrade") != "websocket" {
		t.Errorf("converted %+v", r)
	}
}
