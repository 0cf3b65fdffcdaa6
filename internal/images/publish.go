package images

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/match"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Registry says how to reach a registry.
type Registry struct {
	// Insecure allows plain HTTP: a registry on a private network or in a test.
	Insecure bool
	// Keychain authenticates (default: the docker config keychain, ~/.docker/config.json and
	// $DOCKER_CONFIG, with its credential helpers).
	Keychain authn.Keychain
	// Transport is the HTTP transport (default http.DefaultTransport).
	Transport http.RoundTripper
}

// Reference parses an image reference, with Insecure applied.
func (r Registry) Reference(ref string) (name.Reference, error) {
	var opts []name.Option
	if r.Insecure {
		opts = append(opts, name.Insecure)
	}
	parsed, err := name.ParseReference(ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w", ref, err)
	}
	return parsed, nil
}

// options are the go-containerregistry remote options of r.
func (r Registry) options(ctx context.Context) []remote.Option {
	kc := r.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(kc)}
	if r.Transport != nil {
		opts = append(opts, remote.WithTransport(r.Transport))
	}
	return opts
}

// Push uploads idx as ref (REGISTRY/REPOSITORY:TAG) and returns its digest.
func (r Registry) Push(ctx context.Context, ref string, idx v1.ImageIndex) (v1.Hash, error) {
	parsed, err := r.Reference(ref)
	if err != nil {
		return v1.Hash{}, err
	}
	if err := remote.WriteIndex(parsed, idx, r.options(ctx)...); err != nil {
		return v1.Hash{}, fmt.Errorf("pushing %s: %w", ref, err)
	}
	return idx.Digest()
}

// RefNameAnnotation names an image in an OCI image layout's index.json.
const RefNameAnnotation = "org.opencontainers.image.ref.name"

// WriteLayout writes idx into the OCI image layout directory dir (created if needed) under the
// name tag, replacing an index of that name.
func WriteLayout(dir, tag string, idx v1.ImageIndex) error {
	p, err := layout.FromPath(dir)
	if err != nil {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("OCI layout %s: %w", dir, err)
		}
		if p, err = layout.Write(dir, empty.Index); err != nil {
			return fmt.Errorf("OCI layout %s: %w", dir, err)
		}
	}
	if err := p.ReplaceIndex(idx, match.Annotation(RefNameAnnotation, tag),
		layout.WithAnnotations(map[string]string{RefNameAnnotation: tag})); err != nil {
		return fmt.Errorf("OCI layout %s: %w", filepath.Clean(dir), err)
	}
	return nil
}
