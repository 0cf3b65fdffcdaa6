package protoshallow

import (
	"testing"

	routev3 "github.com/strait-mesh/strait/proxy/xdspb/envoy/config/route/v3"
)

func TestCopy(t *testing.T) {
	vh := &routev3.VirtualHost{Name: "a", Domains: []string{"x"}, Routes: []*routev3.Route{{Name: "r"}}}
	c := Copy(vh, "name")
	if c.Name != "" || len(c.Domains) != 1 || c.Routes[0] != vh.Routes[0] || vh.Name != "a" {
		t.Errorf("copy %v of %v", c, vh)
	}
}

// TestCopyKeepsUnknownFields: a field unknown to this build (a newer control plane's, or one the
// proxy's trimmed xDS types leave out) survives the copy, so the compiler still refuses it.
func TestCopyKeepsUnknownFields(t *testing.T) {
	vh := &routev3.VirtualHost{Name: "a"}
	vh.ProtoReflect().SetUnknown([]byte{0xb8, 0x3e, 0x01}) // field 999, varint 1
	c := Copy(vh, "name")
	if got := c.ProtoReflect().GetUnknown(); len(got) != 3 {
		t.Errorf("unknown fields after the copy: %x", got)
	}
}
