package dns

import (
	"context"
	"errors"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// FuzzRespond feeds arbitrary client messages to the query handler (mesh table, a fake upstream
// that echoes the query as a response or fails). The handler must not panic, and whatever it
// sends back must parse as a response to the query's ID, within the UDP size limit over UDP.
// Seeds: testdata/fuzz/FuzzRespond.
func FuzzRespond(f *testing.F) {
	f.Add(buildQuery(f, 1, "reviews.", dnsmessage.TypeA, false), false)
	f.Add(buildQuery(f, 2, "many.example.com.", dnsmessage.TypeA, true), false)
	table := testTable(f)
	f.Fuzz(func(t *testing.T, msg []byte, tcp bool) {
		h := &handler{
			table:  func() *Table { return table },
			search: []string{"default.svc.cluster.local", "svc.cluster.local"},
			forward: func(_ context.Context, q []byte, _ bool) ([]byte, error) {
				if len(q) > 12 && q[len(q)-1]&1 == 1 {
					return nil, errors.New("upstream down")
				}
				r := append([]byte(nil), q...)
				r[2] = (r[2] | 0x80) &^ 0x04 // a response, not authoritative: ours are
				return r, nil
			},
		}
		resp := h.respond(context.Background(), msg, tcp)
		if resp == nil {
			return
		}
		var p dnsmessage.Parser
		hdr, err := p.Start(resp)
		if err != nil {
			t.Fatalf("response does not parse: %v", err)
		}
		if !hdr.Response || len(msg) < 2 || hdr.ID != uint16(msg[0])<<8|uint16(msg[1]) {
			t.Fatalf("response header %+v for query %x", hdr, msg)
		}
		if !tcp && len(resp) > maxUDPSize && hdr.Authoritative {
			t.Fatalf("UDP answer of %d bytes", len(resp))
		}
		var m dnsmessage.Message
		if hdr.Authoritative {
			if err := m.Unpack(resp); err != nil {
				t.Fatalf("mesh answer does not unpack: %v", err)
			}
		}
	})
}
