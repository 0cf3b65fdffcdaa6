package l7

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
	"unsafe"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/strait-mesh/strait/proxy/httpmsg"
	hcmv3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/extensions/filters/network/http_connection_manager/v3"
)

// TestReviewXFFZoneKeepsNothingOfHeader: xffAddr lends the header's bytes to netip.ParseAddr;
// an IPv6 address with a zone (a zone never seen before, so that it is interned from these
// bytes) keeps nothing of them: the header's storage reused by the next request, overwritten
// byte for byte, leaves the address and its zone as parsed.
func TestReviewXFFZoneKeepsNothingOfHeader(t *testing.T) {
	var h httpmsg.Header
	zone := fmt.Sprintf("review%d", time.Now().UnixNano())
	for _, tc := range []struct {
		fields []string
		skip   int
	}{
		{[]string{"fe80::1%" + zone}, 0},
		{[]string{"198.18.0.1, fe80::2%" + zone + "b , 10.0.0.1"}, 1},
		{[]string{"fe80::3%" + zone + "c", "10.0.0.1"}, 1},
	} {
		h.Reset()
		for _, f := range tc.fields {
			h.Add("X-Forwarded-For", f)
		}
		a, _, ok := xffAddr(&h, tc.skip)
		if !ok || a.Zone() == "" {
			t.Fatalf("%q skip %d: %v %v", tc.fields, tc.skip, a, ok)
		}
		want, wantZone := a.String(), a.Zone()
		_, v := h.Field(0)
		lent := unsafe.String(unsafe.SliceData(v), len(v)) // a control: aliases the storage
		before := strings.Clone(lent)
		// The next request reuses the storage: every byte of it is written again.
		h.Reset()
		for _, f := range tc.fields {
			h.Add("X-Forwarded-For", strings.Repeat("Z", len(f)))
		}
		if lent == before {
			t.Fatal("the storage was not reused: the test proves nothing")
		}
		if a.String() != want || a.Zone() != wantZone || !strings.HasPrefix(wantZone, zone) {
			t.Errorf("%q: after the header's storage was reused the address is %q (zone %q), was %q (zone %q)",
				tc.fields, a.String(), a.Zone(), want, wantZone)
		}
	}
}

// TestReviewRequestIDsStayPut: the request ids a Stream hands out (generated UUIDs and the
// client's own ids copied into the id slab) stay as they were when the Stream serves many more
// requests on the same keep-alive connection (more than one slab's worth, of varied lengths),
// as OnComplete and the response see them.
func TestReviewRequestIDsStayPut(t *testing.T) {
	rig := newRawRig(t, false, func(h *hcmv3.HttpConnectionManager) {
		h.AlwaysSetRequestIdInResponse = true
		h.UseRemoteAddress = wrapperspb.Bool(false)
	})
	c, err := net.Dial("tcp", rig.p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	type kept struct {
		sent string // "" when the proxy generated the id
		info *RequestInfo
		resp string
	}
	var all []kept
	for i := 0; i < 3*idSlabIDs; i++ {
		var id string
		switch i % 4 {
		case 0: // none: generated
		case 1:
			id = strings.Repeat(string(rune('a'+i%26)), 1+i%72)
		case 2:
			id = fmt.Sprintf("client-%03d-%s", i, strings.Repeat("x", i%50))
		case 3:
			id = strings.Repeat("L", 2*uuidLen+1+i) // longer than a slab cut
		}
		fields := ""
		if id != "" {
			fields = "X-Request-Id: " + id + "\r\n"
		}
		if _, err := io.WriteString(c, "GET /x HTTP/1.1\r\nHost: svc\r\n"+fields+"\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		info := rig.p.nextInfo(t)
		got := resp.Header.Get("X-Request-Id")
		if id != "" && (got != id || info.RequestID != id) {
			t.Fatalf("request %d: sent id %q, response %q, recorded %q", i, id, got, info.RequestID)
		}
		if id == "" && (len(got) != uuidLen || info.RequestID != got) {
			t.Fatalf("request %d: generated id: response %q, recorded %q", i, got, info.RequestID)
		}
		all = append(all, kept{id, info, got})
	}
	for i, k := range all {
		if k.info.RequestID != k.resp {
			t.Errorf("request %d: the recorded id changed after later requests: %q, was %q", i, k.info.RequestID, k.resp)
		}
	}
}
