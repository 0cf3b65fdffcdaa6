package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSelfSignedRootPersistsAcrossRestarts(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "data", "ca") // created, with its parent
	clock := newFakeClock()
	log, _ := testLogger(t)
	o := Options{Dir: dir, Logger: log, Now: clock.Now, TrustDomain: "example.org"}
	a, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := a.SigningCertificate()
	if !root.IsCA || root.Subject.Organization[0] != "example.org" || root.CheckSignatureFrom(root) != nil {
		t.Fatalf("root: CA=%v subject=%q", root.IsCA, root.Subject)
	}
	if got := root.NotAfter.Sub(clock.Now()); got != DefaultRootLifetime {
		t.Errorf("root lifetime %v", got)
	}
	if k, ok := root.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("root key %T, want ECDSA P-256", root.PublicKey)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %04o, want 0700", fi.Mode().Perm())
	}
	if fi, _ := os.Stat(filepath.Join(dir, rootFile)); fi.Mode().Perm() != 0o600 {
		t.Errorf("root file mode %04o, want 0600", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("dir holds %d entries (temporary files left?)", len(entries))
	}

	// A restart (a later clock, too) loads the same root; certificates signed before verify after.
	csr := mustParseCSR(t, makeCSR(t, testP256(), nil))
	before, err := a.Sign(SignRequest{CSR: csr, Identity: Identity{"example.org", "a", "b"}})
	if err != nil {
		t.Fatal(err)
	}
	clock.Add(time.Hour)
	b, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	root2, _ := b.SigningCertificate()
	if !root2.Equal(root) {
		t.Fatal("restart created a new root")
	}
	if _, err := before.Leaf.Verify(x509.VerifyOptions{Roots: b.TrustPool(), CurrentTime: clock.Now()}); err != nil {
		t.Fatalf("certificate from before the restart: %v", err)
	}

	// A dir made too open by someone else is restricted again on start.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := New(o); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode after restart %04o", fi.Mode().Perm())
	}
}

func TestSelfSignedRootRefusals(t *testing.T) {
	log, _ := testLogger(t)
	newDir := func(t *testing.T) (string, *Authority) {
		dir := t.TempDir()
		a, err := New(Options{Dir: dir, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		return dir, a
	}
	t.Run("key file readable by others", func(t *testing.T) {
		dir, _ := newDir(t)
		os.Chmod(filepath.Join(dir, rootFile), 0o644)
		if _, err := New(Options{Dir: dir, Logger: log}); err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("root lost but previous roots exist", func(t *testing.T) {
		dir, a := newDir(t)
		a.StageRoot()
		a.ActivateStagedRoot()
		os.Remove(filepath.Join(dir, rootFile))
		if _, err := New(Options{Dir: dir, Logger: log}); err == nil || !strings.Contains(err.Error(), "refusing to create a new root") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("key does not match", func(t *testing.T) {
		dir, a := newDir(t)
		root, _ := a.SigningCertificate()
		writeRootFile(filepath.Join(dir, rootFile), root, testP256b())
		if _, err := New(Options{Dir: dir, Logger: log}); err == nil || !strings.Contains(err.Error(), "does not match") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("expired root", func(t *testing.T) {
		dir, _ := newDir(t)
		later := func() time.Time { return time.Now().Add(11 * 365 * 24 * time.Hour) }
		if _, err := New(Options{Dir: dir, Logger: log, Now: later}); err == nil || !strings.Contains(err.Error(), "expired") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("garbage", func(t *testing.T) {
		dir, _ := newDir(t)
		os.WriteFile(filepath.Join(dir, rootFile), []byte("nope"), 0o600)
		if _, err := New(Options{Dir: dir, Logger: log}); err == nil {
			t.Fatal("loaded a garbage root file")
		}
	})
	t.Run("options", func(t *testing.T) {
		if _, err := New(Options{Logger: log}); err == nil {
			t.Error("no dir accepted")
		}
		if _, err := New(Options{Dir: t.TempDir(), PluginDir: t.TempDir(), Logger: log}); err == nil {
			t.Error("both dirs accepted")
		}
		if _, err := New(Options{Dir: t.TempDir(), TrustDomain: "Bad Domain", Logger: log}); err == nil {
			t.Error("bad trust domain accepted")
		}
	})
}

// TestRootRotation walks a self-signed root rotation: stage (both trusted, old signs), activate
// (both trusted, new signs), remove the old; each step survives a restart.
func TestRootRotation(t *testing.T) {
	dir := t.TempDir()
	log, _ := testLogger(t)
	var bundles [][]*x509.Certificate
	o := Options{Dir: dir, Logger: log, OnTrustBundleChange: func(r []*x509.Certificate) { bundles = append(bundles, r) }}
	a, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	restart := func() *Authority {
		t.Helper()
		b, err := New(Options{Dir: dir, Logger: log})
		if err != nil {
			t.Fatalf("restart: %v", err)
		}
		return b
	}
	csr := mustParseCSR(t, makeCSR(t, testP256(), nil))
	sign := func(a *Authority) *x509.Certificate {
		t.Helper()
		c, err := a.Sign(SignRequest{CSR: csr, Identity: testID})
		if err != nil {
			t.Fatal(err)
		}
		return c.Leaf
	}
	verifies := func(a *Authority, c *x509.Certificate) bool {
		_, err := c.Verify(x509.VerifyOptions{Roots: a.TrustPool()})
		return err == nil
	}
	old, _ := a.SigningCertificate()
	oldLeaf := sign(a)
	gen := a.Generation()

	staged, err := a.StageRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.StageRoot(); err == nil {
		t.Error("staged a second root")
	}
	for _, x := range []*Authority{a, restart()} {
		if got := x.TrustBundle(); len(got) != 2 || !got[1].Equal(old) || !got[0].Equal(staged) {
			t.Fatalf("staged bundle = %d roots, signing root last: %v", len(got), got)
		}
		if c, _ := x.SigningCertificate(); !c.Equal(old) {
			t.Fatal("staging changed the signing root")
		}
	}
	if a.Generation() == gen || len(bundles) != 1 || len(bundles[0]) != 2 {
		t.Fatalf("generation %d→%d, bundle notifications %d", gen, a.Generation(), len(bundles))
	}

	if err := a.ActivateStagedRoot(); err != nil {
		t.Fatal(err)
	}
	if err := a.ActivateStagedRoot(); err == nil {
		t.Error("activated with nothing staged")
	}
	for _, x := range []*Authority{a, restart()} {
		if c, _ := x.SigningCertificate(); !c.Equal(staged) {
			t.Fatal("activation did not switch the signing root")
		}
		if got := x.TrustBundle(); len(got) != 2 || !got[1].Equal(staged) {
			t.Fatalf("activated bundle: %v", got)
		}
		newLeaf := sign(x)
		if !verifies(x, oldLeaf) || !verifies(x, newLeaf) {
			t.Fatal("old and new leaves must both verify during the rotation")
		}
	}
	if err := a.RemoveRoot(Fingerprint(staged)); err == nil {
		t.Error("removed the signing root")
	}
	if err := a.RemoveRoot("00ff"); err == nil {
		t.Error("removed an unknown root")
	}
	if err := a.RemoveRoot(strings.ToUpper(Fingerprint(old))); err != nil {
		t.Fatal(err)
	}
	for _, x := range []*Authority{a, restart()} {
		if got := x.TrustBundle(); len(got) != 1 || !got[0].Equal(staged) {
			t.Fatalf("bundle after removal: %v", got)
		}
		if verifies(x, oldLeaf) {
			t.Fatal("a leaf of the removed root still verifies")
		}
	}
	if _, err := os.Stat(filepath.Join(dir, previousRootsFile)); !os.IsNotExist(err) {
		t.Errorf("empty previous-roots file left: %v", err)
	}
	if len(bundles) != 3 {
		t.Errorf("bundle notifications %d, want 3", len(bundles))
	}

	// A staged root can be discarded.
	s2, err := a.StageRoot()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.RemoveRoot(Fingerprint(s2)); err != nil {
		t.Fatal(err)
	}
	if got := restart().TrustBundle(); len(got) != 1 {
		t.Fatalf("bundle after discarding the staged root: %d", len(got))
	}
	if _, err := a.StageRoot(); err != nil {
		t.Fatalf("staging after a discard: %v", err)
	}
}

// TestRootRotationCrashBetweenSteps simulates a crash inside ActivateStagedRoot after the old root
// was recorded as trusted and before the rename: the state loads, with the old root not
// duplicated.
func TestRootRotationCrashBetweenSteps(t *testing.T) {
	dir := t.TempDir()
	log, _ := testLogger(t)
	a, err := New(Options{Dir: dir, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	old, _ := a.SigningCertificate()
	if _, err := a.StageRoot(); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(filepath.Join(dir, previousRootsFile), encodeCerts([]*x509.Certificate{old}), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := New(Options{Dir: dir, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if got := b.TrustBundle(); len(got) != 2 || !got[1].Equal(old) {
		t.Fatalf("bundle %d roots", len(got))
	}
	if err := b.ActivateStagedRoot(); err != nil {
		t.Fatal(err)
	}
}
