package ca

import (
	"maps"
	"testing"
)

// TestRootsStatesThroughARotation: Roots names the signing, staged and trusted roots at each step
// of a rotation (in TrustBundle's order), and the same after a restart.
func TestRootsStatesThroughARotation(t *testing.T) {
	var o Options
	a := newTestAuthority(t, func(opts *Options) { o = *opts })
	check := func(step string, a *Authority, want map[string]RootState) {
		t.Helper()
		roots, bundle := a.Roots(), a.TrustBundle()
		got := map[string]RootState{}
		for i, r := range roots {
			got[Fingerprint(r.Cert)] = r.State
			if i >= len(bundle) || !r.Cert.Equal(bundle[i]) {
				t.Errorf("%s: root %d is not the trust bundle's", step, i)
			}
		}
		if len(roots) != len(bundle) {
			t.Errorf("%s: %d roots, the trust bundle has %d", step, len(roots), len(bundle))
		}
		if !maps.Equal(got, want) {
			t.Errorf("%s: states %v, want %v", step, got, want)
		}
	}
	first, _ := a.SigningCertificate()
	old := Fingerprint(first)
	check("new", a, map[string]RootState{old: RootSigning})

	staged, err := a.StageRoot()
	if err != nil {
		t.Fatal(err)
	}
	next := Fingerprint(staged)
	check("staged", a, map[string]RootState{old: RootSigning, next: RootStaged})
	b, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	check("staged, restarted", b, map[string]RootState{old: RootSigning, next: RootStaged})

	if err := a.ActivateStagedRoot(); err != nil {
		t.Fatal(err)
	}
	check("activated", a, map[string]RootState{old: RootTrusted, next: RootSigning})
	if b, err = New(o); err != nil {
		t.Fatal(err)
	}
	check("activated, restarted", b, map[string]RootState{old: RootTrusted, next: RootSigning})

	if err := a.RemoveRoot(old); err != nil {
		t.Fatal(err)
	}
	check("removed", a, map[string]RootState{next: RootSigning})
}
