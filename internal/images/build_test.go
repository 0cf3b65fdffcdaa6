package images

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// testSpec is a spec whose "binaries" are small files, one per platform.
func testSpec(t *testing.T) Spec {
	t.Helper()
	dir := t.TempDir()
	bins := map[string]string{}
	for _, p := range []string{"linux/arm64", "linux/amd64"} {
		f := filepath.Join(dir, strings.ReplaceAll(p, "/", "_"))
		if err := os.WriteFile(f, []byte("#!binary for "+p+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		bins[p] = f
	}
	return Spec{Name: "strait-proxy", Binaries: bins, CACertificates: []byte("-----BEGIN CERTIFICATE-----\n"),
		User: "1337:1337", Source: "https://example.com/strait", Version: "v1.2.3", Revision: "abc123",
		Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func TestBuildIndex(t *testing.T) {
	s := testSpec(t)
	idx, err := Build(s)
	if err != nil {
		t.Fatal(err)
	}
	if mt, _ := idx.MediaType(); mt != types.OCIImageIndex {
		t.Errorf("index media type %s", mt)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range im.Manifests {
		got = append(got, m.Platform.String())
		img, err := idx.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.OS != m.Platform.OS || cf.Architecture != m.Platform.Architecture {
			t.Errorf("%s: config says %s/%s", m.Platform, cf.OS, cf.Architecture)
		}
		c := cf.Config
		if strings.Join(c.Entrypoint, " ") != "/usr/local/bin/strait-proxy" || len(c.Cmd) != 0 {
			t.Errorf("%s: entrypoint %q cmd %q", m.Platform, c.Entrypoint, c.Cmd)
		}
		if strings.Join(c.Env, " ") != "PATH="+DefaultPath || c.User != "1337:1337" || c.WorkingDir != "/" {
			t.Errorf("%s: env %q user %q workdir %q", m.Platform, c.Env, c.User, c.WorkingDir)
		}
		for k, want := range map[string]string{LabelSource: "https://example.com/strait", LabelVersion: "v1.2.3", LabelRevision: "abc123"} {
			if c.Labels[k] != want {
				t.Errorf("%s: label %s = %q, want %q", m.Platform, k, c.Labels[k], want)
			}
		}
		if !cf.Created.Time.Equal(s.Created) {
			t.Errorf("%s: created %v", m.Platform, cf.Created)
		}
		checkFiles(t, img, s, m.Platform.String())
	}
	if strings.Join(got, " ") != "linux/amd64 linux/arm64" {
		t.Errorf("platforms %v", got)
	}
}

// checkFiles checks the layer's entries: names, types, modes, owners and times.
func checkFiles(t *testing.T, img v1.Image, s Spec, platform string) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %v, %v", len(layers), err)
	}
	if mt, _ := layers[0].MediaType(); mt != types.OCILayer {
		t.Errorf("layer media type %s", mt)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	want := map[string]int64{
		"etc/": 0o755, "etc/ssl/": 0o755, "etc/ssl/certs/": 0o755, "root/": 0o700, "tmp/": 0o1777, "usr/": 0o755,
		"usr/local/": 0o755, "usr/local/bin/": 0o755, "etc/passwd": 0o644, "etc/group": 0o644,
		"etc/ssl/certs/ca-certificates.crt": 0o644, "usr/local/bin/strait-proxy": 0o755,
	}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		mode, ok := want[h.Name]
		if !ok {
			t.Errorf("unexpected entry %q", h.Name)
			continue
		}
		delete(want, h.Name)
		if h.Mode != mode || h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(s.Created) {
			t.Errorf("%s: mode %o uid %d gid %d mtime %v", h.Name, h.Mode, h.Uid, h.Gid, h.ModTime)
		}
		body, _ := io.ReadAll(tr)
		switch h.Name {
		case "usr/local/bin/strait-proxy":
			if string(body) != "#!binary for "+platform+"\n" {
				t.Errorf("binary %q", body)
			}
		case "etc/passwd":
			if !strings.Contains(string(body), "root:x:0:0:") || !strings.Contains(string(body), ":x:1337:1337:") {
				t.Errorf("passwd %q", body)
			}
		case "etc/group":
			if !strings.Contains(string(body), "root:x:0:") || !strings.Contains(string(body), ":x:1337:") {
				t.Errorf("group %q", body)
			}
		}
	}
	for name := range want {
		t.Errorf("missing %s", name)
	}
}

func TestBuildReproducible(t *testing.T) {
	s := testSpec(t)
	digest := func(s Spec) v1.Hash {
		idx, err := Build(s)
		if err != nil {
			t.Fatal(err)
		}
		d, err := idx.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	a, b := digest(s), digest(s)
	if a != b {
		t.Errorf("same inputs, digests %s and %s", a, b)
	}
	s2 := s
	s2.Created = s.Created.Add(time.Second)
	if digest(s2) == a {
		t.Error("another time, same digest")
	}
	s3 := s
	s3.Version = "v1.2.4"
	if digest(s3) == a {
		t.Error("another version, same digest")
	}
}

func TestBuildErrors(t *testing.T) {
	s := testSpec(t)
	for name, mutate := range map[string]func(*Spec){
		"name":     func(s *Spec) { s.Name = "../x" },
		"binaries": func(s *Spec) { s.Binaries = nil },
		"ca":       func(s *Spec) { s.CACertificates = nil },
		"platform": func(s *Spec) { s.Binaries = map[string]string{"amd64": s.Binaries["linux/amd64"]} },
		"missing":  func(s *Spec) { s.Binaries = map[string]string{"linux/amd64": "/nonexistent/bin"} },
	} {
		c := s
		mutate(&c)
		if _, err := Build(c); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestPushPull pushes an index to an in-process registry, pulls each platform back and unpacks it.
func TestPushPull(t *testing.T) {
	s := testSpec(t)
	idx, err := Build(s)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0))), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	reg := Registry{Insecure: true, Keychain: authn.NewMultiKeychain()}
	ref := l.Addr().String() + "/proxy:v1.2.3"
	ctx := context.Background()
	pushed, err := reg.Push(ctx, ref, idx)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := idx.Digest(); pushed != want {
		t.Errorf("pushed digest %s, want %s", pushed, want)
	}
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		plat, _ := v1.ParsePlatform(p)
		img, err := reg.Pull(ctx, ref, *plat)
		if err != nil {
			t.Fatal(err)
		}
		root := t.TempDir()
		if err := Unpack(img, root, Limits{}); err != nil {
			t.Fatal(err)
		}
		bin, err := Resolve(root, "/usr/local/bin/strait-proxy")
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(bin)
		if err != nil || string(b) != "#!binary for "+p+"\n" {
			t.Errorf("%s: binary %q, %v", p, b, err)
		}
		for f, mode := range map[string]os.FileMode{"tmp": os.ModeDir | os.ModeSticky | 0o777, "usr/local/bin/strait-proxy": 0o755, "root": os.ModeDir | 0o700} {
			fi, err := os.Lstat(filepath.Join(root, f))
			if err != nil || fi.Mode() != mode {
				t.Errorf("%s: %s mode %v, want %v (%v)", p, f, fi.Mode(), mode, err)
			}
		}
	}
	plat := v1.Platform{OS: "linux", Architecture: "s390x"}
	if _, err := reg.Pull(ctx, ref, plat); err == nil || !strings.Contains(err.Error(), "no image for linux/s390x") {
		t.Errorf("pull of a missing platform: %v", err)
	}
}

func TestWriteLayout(t *testing.T) {
	s := testSpec(t)
	idx, err := Build(s)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "proxy")
	for range 2 { // the second write replaces the first
		if err := WriteLayout(dir, "v1.2.3", idx); err != nil {
			t.Fatal(err)
		}
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := idx.Digest()
	if len(im.Manifests) != 1 || im.Manifests[0].Digest != want || im.Manifests[0].Annotations[RefNameAnnotation] != "v1.2.3" {
		t.Errorf("layout index: %+v", im.Manifests)
	}
}

// TestBuildRefusesDynamicBinaries checks that an ELF binary that needs a dynamic loader (which a
// FROM-scratch image does not have) is refused, and a static one accepted.
func TestBuildRefusesDynamicBinaries(t *testing.T) {
	s := testSpec(t)
	if _, err := os.Stat("/bin/sh"); err == nil { // Debian's: dynamically linked
		s.Binaries = map[string]string{"linux/amd64": "/bin/sh"}
		if _, err := Build(s); err == nil || !strings.Contains(err.Error(), "CGO_ENABLED=0") {
			t.Errorf("/bin/sh: %v", err)
		}
	}
	// A static ELF executable: a header and no program header (no interpreter).
	var hdr bytes.Buffer
	h := elf.Header64{Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT), Ehsize: 64}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS], h.Ident[elf.EI_DATA], h.Ident[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)
	if err := binary.Write(&hdr, binary.LittleEndian, h); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "static")
	if err := os.WriteFile(bin, hdr.Bytes(), 0o755); err != nil {
		t.Fatal(err)
	}
	s.Binaries = map[string]string{"linux/amd64": bin}
	if _, err := Build(s); err != nil {
		t.Errorf("a static ELF: %v", err)
	}
}
