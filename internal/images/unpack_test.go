package images

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// entry is a tar entry of a test layer.
type entry struct {
	name, link, body string
	typ              byte
	mode             int64
}

func layerOf(t *testing.T, entries ...entry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode, Size: int64(len(e.body))}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func imageOf(t *testing.T, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// TestUnpackRefuses checks that entries that would write outside the root are refused, and that
// nothing is written outside it.
func TestUnpackRefuses(t *testing.T) {
	for name, c := range map[string]struct {
		entries []entry
		want    string
	}{
		"absolute":            {[]entry{{name: "/etc/evil", body: "x"}}, "absolute name"},
		"dotdot":              {[]entry{{name: "a/../../evil", body: "x"}}, `".." in name`},
		"dotdot only":         {[]entry{{name: "..", typ: tar.TypeDir}}, `".." in name`},
		"absolute symlink":    {[]entry{{name: "link", link: "/etc", typ: tar.TypeSymlink}}, "absolute path"},
		"escaping symlink":    {[]entry{{name: "a/link", link: "../../etc", typ: tar.TypeSymlink}}, "leaves the root"},
		"write through link":  {[]entry{{name: "d", typ: tar.TypeDir, mode: 0o755}, {name: "link", link: "d", typ: tar.TypeSymlink}, {name: "link/evil", body: "x"}}, "symbolic link"},
		"hard link outside":   {[]entry{{name: "h", link: "../outside", typ: tar.TypeLink}}, `".." in name`},
		"hard link absolute":  {[]entry{{name: "h", link: "/etc/passwd", typ: tar.TypeLink}}, "absolute name"},
		"hard link via link":  {[]entry{{name: "d", typ: tar.TypeDir, mode: 0o755}, {name: "l", link: "d", typ: tar.TypeSymlink}, {name: "h", link: "l/f", typ: tar.TypeLink}}, "symbolic link"},
		"device":              {[]entry{{name: "dev/sda", typ: tar.TypeBlock}}, "not supported"},
		"char device":         {[]entry{{name: "null", typ: tar.TypeChar}}, "not supported"},
		"whiteout dotdot":     {[]entry{{name: "a/.wh...", body: ""}}, "bad whiteout"},
		"whiteout via link":   {[]entry{{name: "d", typ: tar.TypeDir, mode: 0o755}, {name: "l", link: "d", typ: tar.TypeSymlink}, {name: "l/.wh.x"}}, "symbolic link"},
		"file as parent":      {[]entry{{name: "f", body: "x"}, {name: "f/g", body: "y"}}, "not a directory"},
		"symlink then file":   {[]entry{{name: "s", link: "t", typ: tar.TypeSymlink}, {name: "s/x", body: "y"}}, "symbolic link"},
		"fifo":                {[]entry{{name: "p", typ: tar.TypeFifo}}, "not supported"},
		"symlink then dotdot": {[]entry{{name: "a/b", link: "..", typ: tar.TypeSymlink}, {name: "a/b/c", body: "x"}}, "symbolic link"},
	} {
		t.Run(name, func(t *testing.T) {
			base := t.TempDir()
			root := filepath.Join(base, "root")
			if err := os.Mkdir(root, 0o755); err != nil {
				t.Fatal(err)
			}
			err := Unpack(imageOf(t, layerOf(t, c.entries...)), root, Limits{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Unpack: %v, want an error with %q", err, c.want)
			}
			ents, _ := os.ReadDir(base)
			if len(ents) != 1 {
				t.Errorf("something was written beside the root: %v", ents)
			}
		})
	}
}

func TestUnpackWhiteoutsAndLinks(t *testing.T) {
	root := t.TempDir()
	lower := layerOf(t,
		entry{name: "etc/", typ: tar.TypeDir, mode: 0o755},
		entry{name: "etc/keep", body: "keep"},
		entry{name: "etc/gone", body: "gone"},
		entry{name: "opq/", typ: tar.TypeDir, mode: 0o755},
		entry{name: "opq/old", body: "old"},
		entry{name: "bin/", typ: tar.TypeDir, mode: 0o755},
		entry{name: "bin/tool", body: "tool", mode: 0o4755}, // setuid is dropped
	)
	upper := layerOf(t,
		entry{name: "etc/.wh.gone"},
		entry{name: "opq/new", body: "new"},
		entry{name: "opq/.wh..wh..opq"},
		entry{name: "usr/bin", link: "../bin", typ: tar.TypeSymlink},
		entry{name: "hard", link: "etc/keep", typ: tar.TypeLink},
		entry{name: "etc/keep", body: "replaced"},
	)
	if err := Unpack(imageOf(t, lower, upper), root, Limits{}); err != nil {
		t.Fatal(err)
	}
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			return "<" + err.Error() + ">"
		}
		return string(b)
	}
	for p, want := range map[string]string{"etc/keep": "replaced", "opq/new": "new", "hard": "keep"} {
		if got := read(p); got != want {
			t.Errorf("%s = %q, want %q", p, got, want)
		}
	}
	for _, p := range []string{"etc/gone", "opq/old", "etc/.wh.gone", "opq/.wh..wh..opq"} {
		if _, err := os.Lstat(filepath.Join(root, p)); !os.IsNotExist(err) {
			t.Errorf("%s exists (%v)", p, err)
		}
	}
	fi, err := os.Stat(filepath.Join(root, "bin/tool"))
	if err != nil || fi.Mode() != 0o755 {
		t.Errorf("bin/tool mode %v (%v), want 0755 without setuid", fi.Mode(), err)
	}
	got, err := Resolve(root, "/usr/bin/tool")
	if err != nil || got != filepath.Join(root, "bin/tool") {
		t.Errorf("Resolve(/usr/bin/tool) = %q, %v", got, err)
	}
}

func TestUnpackLimits(t *testing.T) {
	big := layerOf(t, entry{name: "big", body: strings.Repeat("x", 4096)})
	if err := Unpack(imageOf(t, big), t.TempDir(), Limits{MaxBytes: 1024}); err == nil || !strings.Contains(err.Error(), "more than 1024 bytes") {
		t.Errorf("size limit: %v", err)
	}
	many := layerOf(t, entry{name: "a"}, entry{name: "b"}, entry{name: "c"})
	if err := Unpack(imageOf(t, many), t.TempDir(), Limits{MaxEntries: 2}); err == nil || !strings.Contains(err.Error(), "more than 2 entries") {
		t.Errorf("entry limit: %v", err)
	}
}

// TestUnpackDigests checks that a layer whose bytes do not match its diff ID is refused.
func TestUnpackDigests(t *testing.T) {
	img := imageOf(t, layerOf(t, entry{name: "a", body: "a"}))
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.RootFS.DiffIDs[0] = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("0", 64)}
	bad, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	if err := Unpack(bad, t.TempDir(), Limits{}); err == nil || !strings.Contains(err.Error(), "diff ID") {
		t.Errorf("Unpack of a wrong diff ID: %v", err)
	}
}

func TestResolveStaysInside(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "usr/bin/x"), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	// Links made by hand (Unpack refuses these), resolved as a chroot would.
	os.Symlink("/usr/bin", filepath.Join(root, "abs"))
	os.Symlink("../../../../usr/bin", filepath.Join(root, "up"))
	os.Symlink("loop", filepath.Join(root, "loop"))
	// Each link stays inside as written, but the kernel would leave the root through the chain.
	os.MkdirAll(filepath.Join(root, "a/b"), 0o755)
	os.Symlink("../..", filepath.Join(root, "a/b/s"))
	os.Symlink("a/b/s/..", filepath.Join(root, "chain"))
	for in, want := range map[string]string{"/abs/x": "usr/bin/x", "/up/x": "usr/bin/x", "/../../usr/bin/x": "usr/bin/x", "/chain/usr/bin/x": "usr/bin/x"} {
		got, err := Resolve(root, in)
		if err != nil || got != filepath.Join(root, want) {
			t.Errorf("Resolve(%s) = %q, %v", in, got, err)
		}
	}
	if _, err := Resolve(root, "/loop/x"); err == nil || !strings.Contains(err.Error(), "too many") {
		t.Errorf("Resolve(/loop/x): %v", err)
	}
	if _, err := Resolve(root, "relative"); err == nil {
		t.Error("Resolve of a relative path: no error")
	}
}
