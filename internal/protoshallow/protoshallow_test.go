package protoshallow

import (
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

func TestCopy(t *testing.T) {
	vh := &routev3.VirtualHost{Name: "a", Domains: []string{"x"}, Routes: []*routev3.Route{{Name: "r"}}}
	c := Copy(vh, "name")
	if c.Name != "" || len(c.Domains) != 1 || c.Routes[0] != vh.Routes[0] || vh.Name != "a" {
		t.Errorf("copy %v of %v", c, vh)
	}
}
