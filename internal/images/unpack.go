package images

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Pull fetches the image ref for platform (through its index when ref names one) and checks the
// manifest's and the config's digests. Layers are checked as Unpack reads them.
func (r Registry) Pull(ctx context.Context, ref string, platform v1.Platform) (v1.Image, error) {
	parsed, err := r.Reference(ref)
	if err != nil {
		return nil, err
	}
	opts := append(r.options(ctx), remote.WithPlatform(platform))
	desc, err := remote.Get(parsed, opts...)
	if err != nil {
		return nil, fmt.Errorf("pulling %s: %w", ref, err)
	}
	want := desc.Digest
	var img v1.Image
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, fmt.Errorf("pulling %s: %w", ref, err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, fmt.Errorf("pulling %s: index: %w", ref, err)
		}
		found := false
		for _, m := range im.Manifests {
			if m.Platform != nil && m.MediaType.IsImage() && m.Platform.OS == platform.OS && m.Platform.Architecture == platform.Architecture &&
				(platform.Variant == "" || m.Platform.Variant == platform.Variant) {
				want, found = m.Digest, true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("pulling %s: no image for %s in its index", ref, platform.String())
		}
		if img, err = idx.Image(want); err != nil {
			return nil, fmt.Errorf("pulling %s for %s: %w", ref, platform.String(), err)
		}
	} else if img, err = desc.Image(); err != nil {
		return nil, fmt.Errorf("pulling %s: %w", ref, err)
	}
	if err := verifyImage(img, want); err != nil {
		return nil, fmt.Errorf("pulling %s: %w", ref, err)
	}
	return img, nil
}

// verifyImage checks that the image's manifest has digest want and its config the digest the
// manifest names.
func verifyImage(img v1.Image, want v1.Hash) error {
	raw, err := img.RawManifest()
	if err != nil {
		return err
	}
	if got := sha256Hash(raw); got != want {
		return fmt.Errorf("manifest digest %s, want %s", got, want)
	}
	m, err := img.Manifest()
	if err != nil {
		return err
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	if got := sha256Hash(cfg); got != m.Config.Digest {
		return fmt.Errorf("config digest %s, want %s", got, m.Config.Digest)
	}
	return nil
}

func sha256Hash(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

// Limits bound what Unpack accepts from an image (its bytes are untrusted).
type Limits struct {
	// MaxBytes caps the uncompressed size of all layers (default 1 GiB).
	MaxBytes int64
	// MaxEntries caps the number of tar entries of all layers (default 100,000).
	MaxEntries int
}

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = 1 << 30
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = 100_000
	}
	return l
}

// Unpack lays img's layers out in dir (which must exist, empty), as a container runtime makes a
// root file system: layers in order, each checked against its digest and its config's diff ID,
// whiteouts (.wh.NAME, .wh..wh..opq) applied. It refuses, naming the entry, anything that could
// write outside dir: an absolute name or one with "..", a write through a symbolic link, an
// absolute symbolic link or one that leaves dir, a hard link to outside; and device files. Modes
// keep their permission and sticky bits, never setuid or setgid; owners are kept when running as
// root.
func Unpack(img v1.Image, dir string, lim Limits) error {
	lim = lim.withDefaults()
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	if len(cf.RootFS.DiffIDs) != len(layers) {
		return fmt.Errorf("image config has %d diff IDs for %d layers", len(cf.RootFS.DiffIDs), len(layers))
	}
	u := &unpacker{root: dir, lim: lim}
	for i, l := range layers {
		if err := u.layer(l, cf.RootFS.DiffIDs[i]); err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
	}
	return nil
}

type unpacker struct {
	root    string
	lim     Limits
	bytes   int64
	entries int
}

// countingReader adds what it reads to *n and fails once *n passes max.
type countingReader struct {
	r   io.Reader
	n   *int64
	max int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if *c.n += int64(n); *c.n > c.max {
		return n, fmt.Errorf("more than %d bytes uncompressed", c.max)
	}
	return n, err
}

// hashingReader hashes what is read through it.
type hashingReader struct {
	r io.Reader
	h hash.Hash
}

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	return n, err
}

func (h *hashingReader) sum() v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.h.Sum(nil))}
}

// layer unpacks one layer and checks its digest and diff ID.
func (u *unpacker) layer(l v1.Layer, diffID v1.Hash) error {
	digest, err := l.Digest()
	if err != nil {
		return err
	}
	mt, err := l.MediaType()
	if err != nil {
		return err
	}
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	compressed := &hashingReader{r: rc, h: sha256.New()}
	var stream io.Reader = compressed
	switch mt {
	case types.OCILayer, types.DockerLayer:
		zr, err := gzip.NewReader(bufio.NewReader(compressed))
		if err != nil {
			return fmt.Errorf("gzip: %w", err)
		}
		defer zr.Close()
		stream = zr
	case types.OCIUncompressedLayer, types.DockerUncompressedLayer:
	default:
		return fmt.Errorf("media type %s: not supported (gzip or uncompressed tar only)", mt)
	}
	uncompressed := &hashingReader{r: &countingReader{r: stream, n: &u.bytes, max: u.lim.MaxBytes}, h: sha256.New()}
	if err := u.extract(tar.NewReader(uncompressed)); err != nil {
		return err
	}
	// Read to the end so that the digests cover the whole streams (tar padding, gzip trailer).
	if _, err := io.Copy(io.Discard, uncompressed); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, compressed); err != nil {
		return err
	}
	if got := compressed.sum(); got != digest {
		return fmt.Errorf("digest %s, want %s", got, digest)
	}
	if got := uncompressed.sum(); got != diffID {
		return fmt.Errorf("diff ID %s, want %s", got, diffID)
	}
	return nil
}

const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// extract writes a layer's entries.
func (u *unpacker) extract(tr *tar.Reader) error {
	created := map[string]bool{} // this layer's entries: an opaque whiteout keeps them
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("tar: %w", err)
		}
		if u.entries++; u.entries > u.lim.MaxEntries {
			return fmt.Errorf("more than %d entries", u.lim.MaxEntries)
		}
		rel, err := entryName(h.Name)
		if err != nil {
			return err
		}
		if rel == "." {
			continue // the root itself
		}
		if err := u.entry(tr, h, rel, created); err != nil {
			return fmt.Errorf("entry %q: %w", h.Name, err)
		}
	}
}

// entryName is a tar entry's name relative to the root, refused when absolute or with "..".
func entryName(n string) (string, error) {
	if len(n) > 4096 {
		return "", fmt.Errorf("entry name of %d bytes: too long", len(n))
	}
	if strings.ContainsRune(n, 0) {
		return "", fmt.Errorf("entry %q: NUL in name", n)
	}
	if path.IsAbs(n) {
		return "", fmt.Errorf("entry %q: absolute name", n)
	}
	for _, part := range strings.Split(n, "/") {
		if part == ".." {
			return "", fmt.Errorf("entry %q: \"..\" in name", n)
		}
	}
	return path.Clean(n), nil
}

// entry writes one entry at rel.
func (u *unpacker) entry(tr *tar.Reader, h *tar.Header, rel string, created map[string]bool) error {
	dir, base := path.Split(rel)
	dir = path.Clean(dir)
	if err := u.checkParents(dir); err != nil {
		return err
	}
	target := filepath.Join(u.root, filepath.FromSlash(rel))
	if base == whiteoutOpaque {
		return u.opaque(dir, created)
	}
	if name, ok := strings.CutPrefix(base, whiteoutPrefix); ok {
		if name == "" || name == "." || name == ".." {
			return errors.New("bad whiteout")
		}
		return os.RemoveAll(filepath.Join(u.root, filepath.FromSlash(dir), name))
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	mode := fs.FileMode(h.Mode) & (fs.ModePerm)
	if h.Mode&0o1000 != 0 {
		mode |= fs.ModeSticky
	}
	// An existing entry is replaced, except a directory by a directory (its mode changes).
	if fi, err := os.Lstat(target); err == nil && !(fi.IsDir() && h.Typeflag == tar.TypeDir) {
		if err := os.RemoveAll(target); err != nil {
			return err
		}
	}
	switch h.Typeflag {
	case tar.TypeDir:
		if err := os.Mkdir(target, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	case tar.TypeReg:
		f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	case tar.TypeSymlink:
		if err := u.checkLink(dir, h.Linkname); err != nil {
			return err
		}
		if err := os.Symlink(h.Linkname, target); err != nil {
			return err
		}
		created[rel] = true
		return u.own(target, h)
	case tar.TypeLink:
		src, err := entryName(h.Linkname)
		if err != nil {
			return fmt.Errorf("hard link: %w", err)
		}
		if err := u.checkParents(path.Dir(src)); err != nil {
			return fmt.Errorf("hard link: %w", err)
		}
		srcPath := filepath.Join(u.root, filepath.FromSlash(src))
		fi, err := os.Lstat(srcPath)
		if err != nil {
			return fmt.Errorf("hard link: %w", err)
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("hard link to %q: not a regular file", h.Linkname)
		}
		created[rel] = true
		return os.Link(srcPath, target)
	default:
		return fmt.Errorf("type %q: not supported (files, directories and links only)", string(h.Typeflag))
	}
	created[rel] = true
	if err := u.own(target, h); err != nil {
		return err
	}
	return os.Chmod(target, mode)
}

// own gives target the entry's owner when running as root (others cannot).
func (u *unpacker) own(target string, h *tar.Header) error {
	if os.Geteuid() != 0 {
		return nil
	}
	return os.Lchown(target, h.Uid, h.Gid)
}

// checkParents refuses a directory (relative to the root) any of whose components is a symbolic
// link or not a directory: writing through it could leave the root.
func (u *unpacker) checkParents(dir string) error {
	if dir == "." || dir == "" {
		return nil
	}
	p := u.root
	for _, part := range strings.Split(dir, "/") {
		p = filepath.Join(p, part)
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // created as a directory
		}
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("parent %q is a symbolic link", dir)
		}
		if !fi.IsDir() {
			return fmt.Errorf("parent %q is not a directory", dir)
		}
	}
	return nil
}

// checkLink refuses a symbolic link in dir (relative to the root) whose target is absolute or
// leaves the root, read as written. Links to links can still lead out when the host's kernel
// follows them from outside a chroot: read the root file system through Resolve, which keeps ".."
// at the root, or from inside a chroot.
func (u *unpacker) checkLink(dir, target string) error {
	if target == "" || strings.ContainsRune(target, 0) {
		return errors.New("symbolic link with an empty or NUL target")
	}
	if path.IsAbs(target) {
		return fmt.Errorf("symbolic link to the absolute path %q: not supported", target)
	}
	depth := 0
	if dir != "." {
		depth = len(strings.Split(dir, "/"))
	}
	for _, part := range strings.Split(target, "/") {
		switch part {
		case "", ".":
		case "..":
			if depth--; depth < 0 {
				return fmt.Errorf("symbolic link to %q leaves the root", target)
			}
		default:
			depth++
		}
	}
	return nil
}

// opaque empties dir of what earlier layers put there.
func (u *unpacker) opaque(dir string, created map[string]bool) error {
	abs := filepath.Join(u.root, filepath.FromSlash(dir))
	ents, err := os.ReadDir(abs)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		if created[path.Join(dir, e.Name())] {
			continue
		}
		if err := os.RemoveAll(filepath.Join(abs, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// Resolve returns the path on this machine of file, a path inside the root file system root,
// following symbolic links inside root (at most 40) and never out of it.
func Resolve(root, file string) (string, error) {
	if !path.IsAbs(file) {
		return "", fmt.Errorf("%q: not an absolute path", file)
	}
	parts := strings.Split(strings.TrimPrefix(path.Clean(file), "/"), "/")
	var done []string
	for hops := 0; len(parts) > 0; {
		part := parts[0]
		parts = parts[1:]
		switch part {
		case "", ".":
			continue
		case "..":
			if len(done) > 0 {
				done = done[:len(done)-1]
			}
			continue
		}
		p := filepath.Join(root, filepath.FromSlash(path.Join(append(done, part)...)))
		fi, err := os.Lstat(p)
		if err != nil {
			return "", fmt.Errorf("%s: %w", file, err)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			done = append(done, part)
			continue
		}
		if hops++; hops > 40 {
			return "", fmt.Errorf("%s: too many symbolic links", file)
		}
		link, err := os.Readlink(p)
		if err != nil {
			return "", err
		}
		if path.IsAbs(link) {
			done = nil
		}
		parts = append(strings.Split(link, "/"), parts...)
	}
	return filepath.Join(root, filepath.FromSlash(path.Join(done...))), nil
}
