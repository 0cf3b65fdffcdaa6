// Command images builds Strait's container images — REGISTRY/straitd:TAG and REGISTRY/proxy:TAG,
// the names `strait install --registry REGISTRY` puts in its manifests — and pushes them, or
// writes them to OCI image layout directories. It is a release and development step, run from a
// checkout (`make images REGISTRY=...` or `go run ./tools/images -registry ...`), which is why it
// is a tool of this module rather than a command of the released `strait` CLI, which has no
// sources to build from.
//
// For each platform (default linux/amd64 and linux/arm64) it cross-compiles ./cmd/straitd and
// ./cmd/strait-proxy with CGO_ENABLED=0 and -trimpath, then builds one multi-platform image index
// per binary with internal/images: FROM scratch, the binary, users root and 1337, the CA bundle,
// /tmp. The tag defaults to the version the built binaries report (internal/version), which is
// the tag `strait install` from the same checkout names.
//
// Reproducible: the same checkout, toolchain and CA bundle give the same digests. Image and file
// times are SOURCE_DATE_EPOCH when set, else the commit time Go stamped into the binary, else the
// Unix epoch.
package main

import (
	"context"
	"debug/buildinfo"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/strait-mesh/strait/internal/images"
	"github.com/strait-mesh/strait/internal/version"
)

// image is one image the tool builds.
type image struct {
	repo   string // the repository under the registry, as `strait install` names it
	binary string // the command under ./cmd
}

// Images are the images `strait install` names: REGISTRY/straitd:TAG and REGISTRY/proxy:TAG.
var Images = []image{{repo: "straitd", binary: "straitd"}, {repo: "proxy", binary: "strait-proxy"}}

// source is the org.opencontainers.image.source label.
const source = "https://github.com/strait-mesh/strait"

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("images", flag.ContinueOnError)
	registry := fs.String("registry", "", "push to this registry: REGISTRY/straitd:TAG and REGISTRY/proxy:TAG")
	layoutDir := fs.String("oci-layout", "", "write OCI image layouts DIR/straitd and DIR/proxy instead of pushing")
	tag := fs.String("tag", "", "the images' tag (default: the version the built binaries report, as `strait install` names it)")
	platforms := fs.String("platforms", "linux/amd64,linux/arm64", "comma-separated platforms to build for")
	insecure := fs.Bool("insecure", false, "allow a plain-HTTP registry")
	caFile := fs.String("ca-certificates", "/etc/ssl/certs/ca-certificates.crt", "PEM CA bundle installed in the images (Debian package ca-certificates)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if (*registry == "") == (*layoutDir == "") {
		return errors.New("give one of -registry or -oci-layout")
	}
	ca, err := os.ReadFile(*caFile)
	if err != nil {
		return fmt.Errorf("-ca-certificates: %w", err)
	}
	work, err := os.MkdirTemp("", "strait-images-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	plats := strings.Split(*platforms, ",")
	bins := map[string]map[string]string{} // binary → platform → path
	var info version.Info
	var stamped *buildinfo.BuildInfo
	for _, img := range Images {
		bins[img.binary] = map[string]string{}
		for _, p := range plats {
			out, err := crossCompile(ctx, work, img.binary, p)
			if err != nil {
				return err
			}
			bins[img.binary][p] = out
			bi, err := buildinfo.ReadFile(out)
			if err != nil {
				return fmt.Errorf("%s: %w", out, err)
			}
			i := version.FromBuildInfo(bi)
			if stamped == nil {
				info, stamped = i, bi
			} else if i.Version != info.Version || i.Revision != info.Revision {
				return fmt.Errorf("%s for %s reports version %s, not %s like the others", img.binary, p, i, info)
			}
		}
	}
	if *tag == "" {
		*tag = info.Version
	}
	if _, err := name.NewTag("example.invalid/strait:" + *tag); err != nil {
		return fmt.Errorf("tag %q is not a valid image tag (give one with -tag): %w", *tag, err)
	}
	revision := info.Revision
	if revision == "" {
		revision = gitRevision(ctx)
	}
	created, err := creationTime(stamped)
	if err != nil {
		return err
	}
	reg := images.Registry{Insecure: *insecure}
	for _, img := range Images {
		idx, err := images.Build(images.Spec{Name: img.binary, Binaries: bins[img.binary], CACertificates: ca,
			User:   strconv.Itoa(images.ProxyUID) + ":" + strconv.Itoa(images.ProxyUID),
			Source: source, Version: *tag, Revision: revision, Created: created})
		if err != nil {
			return err
		}
		digest, err := idx.Digest()
		if err != nil {
			return err
		}
		if *layoutDir != "" {
			dir := filepath.Join(*layoutDir, img.repo)
			if err := images.WriteLayout(dir, *tag, idx); err != nil {
				return err
			}
			fmt.Printf("%s:%s %s (OCI layout %s)\n", img.repo, *tag, digest, dir)
			continue
		}
		ref := strings.TrimSuffix(*registry, "/") + "/" + img.repo + ":" + *tag
		if _, err := reg.Push(ctx, ref, idx); err != nil {
			return err
		}
		fmt.Printf("%s@%s\n", ref, digest)
	}
	return nil
}

// crossCompile builds ./cmd/NAME for platform (OS/ARCH) as a static binary and returns its path.
func crossCompile(ctx context.Context, work, binary, platform string) (string, error) {
	goos, goarch, ok := strings.Cut(platform, "/")
	if !ok || goos == "" || goarch == "" || strings.Contains(goarch, "/") {
		return "", fmt.Errorf("platform %q: want OS/ARCH", platform)
	}
	out := filepath.Join(work, goos+"_"+goarch, binary)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, "./cmd/"+binary)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building %s for %s: %v\n%s", binary, platform, err, b)
	}
	return out, nil
}

// creationTime is SOURCE_DATE_EPOCH, else the commit time stamped in bi, else zero (the epoch).
func creationTime(bi *buildinfo.BuildInfo) (time.Time, error) {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", s, err)
		}
		return time.Unix(sec, 0).UTC(), nil
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.time" {
			t, err := time.Parse(time.RFC3339, s.Value)
			if err != nil {
				return time.Time{}, fmt.Errorf("vcs.time %q: %w", s.Value, err)
			}
			return t, nil
		}
	}
	return time.Time{}, nil
}

// gitRevision is the checkout's commit when Go did not stamp one (-buildvcs=false), or "".
func gitRevision(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "git", "rev-parse", "HEAD").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
