package ca

import (
	"errors"
	"strings"
	"testing"
)

func TestParseSPIFFEID(t *testing.T) {
	good := Identity{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "bookinfo-ratings"}
	tests := []struct {
		in   string
		want Identity
		ok   bool
	}{
		{"spiffe://cluster.local/ns/default/sa/bookinfo-ratings", good, true},
		{"spiffe://example.org/ns/a/sa/b.c", Identity{"example.org", "a", "b.c"}, true},
		{"spiffe://td_1/ns/0/sa/x", Identity{"td_1", "0", "x"}, true},
		{"", Identity{}, false},
		{"SPIFFE://cluster.local/ns/default/sa/x", Identity{}, false},
		{"https://cluster.local/ns/default/sa/x", Identity{}, false},
		{"spiffe://Cluster.local/ns/default/sa/x", Identity{}, false},
		{"spiffe://cluster.local/ns/Default/sa/x", Identity{}, false},
		{"spiffe://cluster.local:443/ns/default/sa/x", Identity{}, false},
		{"spiffe://user@cluster.local/ns/default/sa/x", Identity{}, false},
		{"spiffe://cluster.local/ns/default/sa/x?y", Identity{}, false},
		{"spiffe://cluster.local/ns/default/sa/x#y", Identity{}, false},
		{"spiffe://cluster.local/ns/default/sa/x/", Identity{}, false},
		{"spiffe://cluster.local/ns/default/sa/x/extra", Identity{}, false},
		{"spiffe://cluster.local/ns//sa/x", Identity{}, false},
		{"spiffe://cluster.local/ns/default/sa/", Identity{}, false},
		{"spiffe://cluster.local/sa/x/ns/default", Identity{}, false},
		{"spiffe://cluster.local//ns/default/sa/x", Identity{}, false},
		{"spiffe://cluster.local/ns/def%61ult/sa/x", Identity{}, false},
		{"spiffe://cluster.local/ns/default/sa/x\x00.evil", Identity{}, false},
		{"spiffe://cluster.local\x00.evil/ns/default/sa/x", Identity{}, false},
		{"spiffe://cluster.local/ns/default/sa/x\n", Identity{}, false},
		{"spiffe://cluster.local/ns/-a/sa/x", Identity{}, false},
		{"spiffe://cluster.local/ns/a/sa/x..y", Identity{}, false},
		{"spiffe:///ns/a/sa/x", Identity{}, false},
		{"spiffe://cluster.local/ns/" + strings.Repeat("a", 64) + "/sa/x", Identity{}, false},
		{"spiffe://cluster.local/ns/a/sa/" + strings.Repeat("b", 2100), Identity{}, false},
	}
	for _, tc := range tests {
		got, err := ParseSPIFFEID(tc.in)
		if tc.ok != (err == nil) {
			t.Errorf("ParseSPIFFEID(%q) error = %v, want ok=%v", tc.in, err, tc.ok)
			continue
		}
		if err != nil && !errors.Is(err, ErrInvalidSPIFFEID) {
			t.Errorf("ParseSPIFFEID(%q) error %v does not wrap ErrInvalidSPIFFEID", tc.in, err)
		}
		if tc.ok && (got != tc.want || got.SPIFFEID() != tc.in || got.URL().String() != tc.in) {
			t.Errorf("ParseSPIFFEID(%q) = %+v (%s, %s), want %+v", tc.in, got, got.SPIFFEID(), got.URL(), tc.want)
		}
	}
}
