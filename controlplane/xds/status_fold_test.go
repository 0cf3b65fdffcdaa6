package xds

import "testing"

// TestFoldVHDS: a stale virtual host makes RDS stale in proxy-status; a synced one changes nothing.
func TestFoldVHDS(t *testing.T) {
	types := map[string]TypeStatus{"RDS": {Status: Synced}, "VHDS": {Status: Stale}}
	foldVHDS(types)
	if types["RDS"].Status != Stale || types["VHDS"].Status != Stale {
		t.Errorf("stale VHDS: %+v", types)
	}
	types = map[string]TypeStatus{"RDS": {Status: Synced}, "VHDS": {Status: Synced}}
	foldVHDS(types)
	if types["RDS"].Status != Synced {
		t.Errorf("synced VHDS: %+v", types)
	}
	types = map[string]TypeStatus{"RDS": {Status: NotSent}}
	foldVHDS(types)
	if types["RDS"].Status != NotSent {
		t.Errorf("no VHDS: %+v", types)
	}
}
