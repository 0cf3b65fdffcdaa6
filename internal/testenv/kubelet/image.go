package kubelet

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/strait-mesh/strait/internal/images"
)

// PullOptions let a node pull the images that Options.Images does not map from their registries,
// as a kubelet with a container runtime does: the image for linux/GOARCH, digests checked,
// layers unpacked into a root file system of its own. Every pull policy behaves as IfNotPresent:
// an image is pulled once for the node's life.
type PullOptions struct {
	// Insecure allows registries that speak plain HTTP (an in-test registry).
	Insecure bool
	// Keychain authenticates to registries (default anonymous; a pod's imagePullSecrets are
	// refused).
	Keychain authn.Keychain
	// Timeout bounds one pull (default 2 minutes).
	Timeout time.Duration
}

// pulledImage is an image unpacked on the node.
type pulledImage struct {
	ref    string
	digest v1.Hash
	root   string // its root file system
	config v1.Config
}

// imageStore holds the node's pulled images.
type imageStore struct {
	opts PullOptions
	dir  string

	mu     sync.Mutex
	images map[string]*pullEntry
	seq    int // names the images' directories
}

// pullEntry is one image's pull: done is closed when img or err is set.
type pullEntry struct {
	done chan struct{}
	img  *pulledImage
	err  error
}

// newImageStore makes the store. Its directory is outside the test's temporary directory, whose
// mode (0700) would keep containers that run as another user than root from their binaries.
func newImageStore(opts PullOptions) (*imageStore, error) {
	if opts.Keychain == nil {
		opts.Keychain = authn.NewMultiKeychain() // anonymous
	}
	if opts.Timeout == 0 {
		opts.Timeout = 2 * time.Minute
	}
	dir, err := os.MkdirTemp("", "strait-kubelet-images-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &imageStore{opts: opts, dir: dir, images: map[string]*pullEntry{}}, nil
}

// remove deletes the unpacked images.
func (s *imageStore) remove() error { return os.RemoveAll(s.dir) }

// pull returns the image ref, pulling it unless the node has it.
func (s *imageStore) pull(ctx context.Context, ref string) (*pulledImage, error) {
	s.mu.Lock()
	e, ok := s.images[ref]
	if !ok || (isClosed(e.done) && e.err != nil) { // a failed pull is tried again
		e = &pullEntry{done: make(chan struct{})}
		s.images[ref] = e
		s.seq++
		n := s.seq
		s.mu.Unlock()
		e.img, e.err = s.fetch(ctx, ref, filepath.Join(s.dir, strconv.Itoa(n)))
		close(e.done)
		return e.img, e.err
	}
	s.mu.Unlock()
	select {
	case <-e.done:
		return e.img, e.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// lookup returns the pulled image ref, or nil.
func (s *imageStore) lookup(ref string) *pulledImage {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	e := s.images[ref]
	s.mu.Unlock()
	if e == nil || !isClosed(e.done) {
		return nil
	}
	return e.img
}

// fetch pulls ref and unpacks it into root.
func (s *imageStore) fetch(ctx context.Context, ref, root string) (*pulledImage, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	reg := images.Registry{Insecure: s.opts.Insecure, Keychain: s.opts.Keychain}
	img, err := reg.Pull(ctx, ref, v1.Platform{OS: "linux", Architecture: runtime.GOARCH})
	if err != nil {
		return nil, err
	}
	digest, err := img.Digest()
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image %s: config: %w", ref, err)
	}
	os.RemoveAll(root) // a failed earlier try
	if err := os.Mkdir(root, 0o755); err != nil {
		return nil, err
	}
	if err := images.Unpack(img, root, images.Limits{}); err != nil {
		return nil, fmt.Errorf("image %s: %w", ref, err)
	}
	return &pulledImage{ref: ref, digest: digest, root: root, config: cf.Config}, nil
}

// pullImages pulls the images of the pod's containers that the node does not map to binaries.
func (k *Kubelet) pullImages(ctx context.Context, pod *corev1.Pod) error {
	for _, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		if _, mapped := k.opts.Images[c.Image]; mapped || k.images == nil {
			continue
		}
		if len(pod.Spec.ImagePullSecrets) > 0 {
			return errors.New("spec.imagePullSecrets: not supported by the test kubelet")
		}
		had := k.images.lookup(c.Image) != nil
		start := time.Now()
		img, err := k.images.pull(ctx, c.Image)
		if err != nil {
			return fmt.Errorf("container %s: %w", c.Name, err)
		}
		if !had {
			k.event(pod, corev1.EventTypeNormal, "Pulled", fmt.Sprintf("Image %q (%s) ready in %v", c.Image, img.digest, time.Since(start).Round(time.Millisecond)))
		}
	}
	return nil
}

// launch is how a container runs: its argv (the executable's path on this machine first), the
// image's environment (nil for a mapped image: the node's default PATH applies) and the working
// directory.
type launch struct {
	argv []string
	env  []string
	dir  string
	// root is a pulled image's root file system, which the process is chrooted to: argv[0] and
	// dir are then paths inside it. Empty for a mapped image.
	root string
}

// launch returns how c runs: a mapped image's binary (command), or a pulled image's entrypoint.
func (k *Kubelet) launch(c corev1.Container) (launch, error) {
	img := k.images.lookup(c.Image)
	if _, mapped := k.opts.Images[c.Image]; mapped || img == nil {
		argv, err := k.command(c)
		return launch{argv: argv, dir: "/"}, err
	}
	return img.launch(c)
}

// launch composes c's argv with the image's config by Kubernetes' rules: the container's command
// replaces the entrypoint (and then the image's Cmd is dropped), its args replace Cmd. The
// executable is looked up in the image's root file system, which the process is chrooted to: as
// given when it has a slash, else on the PATH (the container's env, else the image's).
func (img *pulledImage) launch(c corev1.Container) (launch, error) {
	argv := append([]string{}, img.config.Entrypoint...)
	args := img.config.Cmd
	if len(c.Command) > 0 {
		argv = append([]string{}, c.Command...)
		args = nil
	}
	if len(c.Args) > 0 {
		args = c.Args
	}
	argv = append(argv, args...)
	if len(argv) == 0 {
		return launch{}, fmt.Errorf("image %q: no command: the image has no entrypoint or cmd and the container gives none", c.Image)
	}
	workDir := img.config.WorkingDir
	if c.WorkingDir != "" {
		workDir = c.WorkingDir
	}
	if workDir == "" {
		workDir = "/"
	}
	if !path.IsAbs(workDir) {
		return launch{}, fmt.Errorf("workingDir %q: not an absolute path", workDir)
	}
	dir, err := images.Resolve(img.root, workDir)
	if err != nil {
		return launch{}, fmt.Errorf("image %q: workingDir: %w", c.Image, err)
	}
	exe, err := img.executable(argv[0], workDir, pathOf(c, img.config.Env))
	if err != nil {
		return launch{}, fmt.Errorf("image %q: command %q: %w", c.Image, argv[0], err)
	}
	argv[0], dir = img.inside(exe), img.inside(dir)
	env := img.config.Env
	if envValue(env, "PATH") == "" {
		env = append([]string{"PATH=" + images.DefaultPath}, env...)
	}
	return launch{argv: argv, env: env, dir: dir, root: img.root}, nil
}

// inside is the path inside the image's root file system of hostPath, a path under it.
func (img *pulledImage) inside(hostPath string) string {
	rel, err := filepath.Rel(img.root, hostPath)
	if err != nil || rel == "." {
		return "/"
	}
	return "/" + filepath.ToSlash(rel)
}

// chrootMountPoint makes the mount point of target (a path inside root) for a mount of src with
// mode, creating missing directories (and an empty file when src is a file), refusing a symbolic
// link on the way; it returns the mount point's path on this machine.
func chrootMountPoint(root, target, src, mode string) (string, error) {
	if !path.IsAbs(target) {
		return "", fmt.Errorf("mount path %q is not absolute", target)
	}
	isFile := false
	if mode != "proc" {
		fi, err := os.Stat(src)
		if err != nil {
			return "", fmt.Errorf("mount source: %w", err)
		}
		isFile = !fi.IsDir()
	}
	parts := strings.Split(strings.Trim(path.Clean(target), "/"), "/")
	p := root
	for i, part := range parts {
		p = filepath.Join(p, part)
		last := i == len(parts)-1
		fi, err := os.Lstat(p)
		switch {
		case err == nil && fi.Mode()&fs.ModeSymlink != 0:
			return "", fmt.Errorf("mount point %s: %s is a symbolic link in the image", target, p)
		case err == nil:
			continue
		case !errors.Is(err, fs.ErrNotExist):
			return "", err
		case last && isFile:
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|syscall.O_NOFOLLOW, 0o644)
			if err != nil {
				return "", err
			}
			f.Close()
		default:
			if err := os.Mkdir(p, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return "", err
			}
		}
	}
	return p, nil
}

// pathOf is the PATH the container's command is looked up in: the container's literal PATH,
// else the image's.
func pathOf(c corev1.Container, imageEnv []string) string {
	for i := len(c.Env) - 1; i >= 0; i-- {
		if c.Env[i].Name == "PATH" && c.Env[i].ValueFrom == nil {
			return c.Env[i].Value
		}
	}
	if p := envValue(imageEnv, "PATH"); p != "" {
		return p
	}
	return images.DefaultPath
}

// envValue is the last value of name in env (NAME=VALUE entries), or "".
func envValue(env []string, name string) string {
	v := ""
	for _, e := range env {
		if k, val, ok := strings.Cut(e, "="); ok && k == name {
			v = val
		}
	}
	return v
}

// executable resolves cmd inside the image's root file system to a path on this machine.
func (img *pulledImage) executable(cmd, workDir, pathList string) (string, error) {
	var candidates []string
	switch {
	case path.IsAbs(cmd):
		candidates = []string{cmd}
	case strings.Contains(cmd, "/"):
		candidates = []string{path.Join(workDir, cmd)}
	default:
		for _, d := range strings.Split(pathList, ":") {
			if path.IsAbs(d) {
				candidates = append(candidates, path.Join(d, cmd))
			}
		}
	}
	for _, p := range candidates {
		host, err := images.Resolve(img.root, p)
		if err != nil {
			continue
		}
		if fi, err := os.Stat(host); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return host, nil
		}
	}
	if len(candidates) == 1 {
		return "", fmt.Errorf("no executable file %s in the image: %w", candidates[0], fs.ErrNotExist)
	}
	return "", fmt.Errorf("not found in the image on PATH %s", pathList)
}

// imageID is the status imageID of a container's image: the pulled digest, or the mapped name.
func (k *Kubelet) imageID(image string) string {
	if img := k.images.lookup(image); img != nil {
		repo := image
		if i := strings.LastIndexAny(image, ":@"); i > strings.LastIndex(image, "/") {
			repo = image[:i]
		}
		return repo + "@" + img.digest.String()
	}
	return "strait-kubelet://" + image
}
