package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/tools/go/packages"
)

// typeErrors type-checks roots with overlay and returns the type errors.
func typeErrors(root string, overlay map[string][]byte, roots []string) ([]string, error) {
	// Syntax and type info make every package type-check from source (not from export data,
	// which stops at the first package with errors).
	cfg := &packages.Config{Dir: root, Overlay: overlay, Mode: packages.NeedName | packages.NeedTypes |
		packages.NeedImports | packages.NeedSyntax | packages.NeedTypesInfo}
	pkgs, err := packages.Load(cfg, roots...)
	if err != nil {
		return nil, fmt.Errorf("loading %d packages: %w", len(roots), err)
	}
	var errs []string
	for _, p := range pkgs {
		for _, e := range p.Errors {
			if e.Kind == packages.TypeError {
				errs = append(errs, shortPath(e.Error()))
			}
		}
	}
	sort.Strings(errs)
	return errs, nil
}

// switchOverlay returns the switched sources of the module files that patterns link (keyed by
// absolute path; only files with a switched import) and the module packages linked.
func switchOverlay(root string, patterns ...string) (map[string][]byte, []string, error) {
	args := append([]string{"list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}\t{{.Dir}}\t{{join .GoFiles \" \"}}{{end}}"}, patterns...)
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return nil, nil, fmt.Errorf("go list -deps %v: %w", patterns, err)
	}
	overlay := map[string][]byte{}
	var roots []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		parts := strings.SplitN(line, "\t", 3)
		if len(parts) != 3 || !strings.HasPrefix(parts[0], moduleImport+"/") {
			continue
		}
		roots = append(roots, parts[0])
		for _, f := range strings.Fields(parts[2]) {
			path := filepath.Join(parts[1], f)
			src, changed, err := switchImports(path)
			if err != nil {
				return nil, nil, err
			}
			if changed {
				overlay[path] = src
			}
		}
	}
	return overlay, roots, nil
}

// switchImports returns the source of file path with its proto imports of go-control-plane and
// cncf/xds rewritten into proxy/xdspb, and whether any was.
func switchImports(path string) ([]byte, bool, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, false, err
	}
	f, err := parser.ParseFile(token.NewFileSet(), path, src, parser.ImportsOnly)
	if err != nil {
		return nil, false, fmt.Errorf("parsing %s: %w", path, err)
	}
	out := []byte{}
	last := 0
	for _, imp := range f.Imports {
		p, err := strconv.Unquote(imp.Path.Value)
		if err != nil {
			return nil, false, fmt.Errorf("%s: import %s: %w", path, imp.Path.Value, err)
		}
		if strings.Contains(p, "go-control-plane/pkg/") {
			continue // non-proto helpers stay
		}
		np, ok := rewriteGoPackage(p)
		if !ok {
			continue
		}
		start := int(imp.Path.Pos()) - 1 // token.Pos of a single-file FileSet is offset+1
		out = append(out, src[last:start]...)
		out = append(out, strconv.Quote(np)...)
		last = int(imp.Path.End()) - 1
	}
	if last == 0 {
		return nil, false, nil
	}
	return append(out, src[last:]...), true, nil
}

// resourceImport is go-control-plane's package of resource type URL constants, which links its
// resource packages; the measurement overlay replaces it with resourceStub.
const resourceImport = "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

// resourceStub is the measurement overlay's stand-in for resourceImport: the constants the
// proxy uses.
const resourceStub = `// Package resource stands in for go-control-plane's pkg/resource/v3 in xdstrim's measurement
// overlay.
package resource

// Type is an xDS type URL.
type Type = string

// Type URLs of the resources strait-proxy subscribes to.
const (
	APITypePrefix       = "type.googleapis.com/"
	ClusterType         = APITypePrefix + "envoy.config.cluster.v3.Cluster"
	EndpointType        = APITypePrefix + "envoy.config.endpoint.v3.ClusterLoadAssignment"
	ListenerType        = APITypePrefix + "envoy.config.listener.v3.Listener"
	RouteType           = APITypePrefix + "envoy.config.route.v3.RouteConfiguration"
	VirtualHostType     = APITypePrefix + "envoy.config.route.v3.VirtualHost"
	SecretType          = APITypePrefix + "envoy.extensions.transport_sockets.tls.v3.Secret"
	ExtensionConfigType = APITypePrefix + "envoy.config.core.v3.TypedExtensionConfig"
)
`

// validateCall matches the PGV Validate call a type error points at.
var validateCall = regexp.MustCompile(`[A-Za-z_][A-Za-z_0-9.]*\.Validate\(\)`)

// writeMeasurementOverlay writes into dir a `go build -overlay` file (dir/overlay.json) that
// builds strait-proxy on the trimmed tree, as phase 2 will: proto imports switched, the
// resource constants package stubbed, and the PGV Validate calls the trimmed types lack
// replaced by nil (so the build measures size and RSS, it is not a proxy to ship).
func writeMeasurementOverlay(root, dir string) error {
	overlay, roots, err := switchOverlay(root, "./cmd/strait-proxy")
	if err != nil {
		return err
	}
	stubPath := filepath.Join(root, generatedDir, "resourcestub", "resource.go")
	stubImport := xdspbImport + "/resourcestub"
	for p, src := range overlay {
		overlay[p] = bytes.ReplaceAll(src, []byte(strconv.Quote(resourceImport)), []byte(strconv.Quote(stubImport)))
	}
	overlay[stubPath] = []byte(resourceStub)
	errs, err := typeErrors(root, overlay, roots)
	if err != nil {
		return err
	}
	for _, e := range errs {
		// "proxy/authz/engine.go:114:18: rules.Validate undefined ..."
		parts := strings.SplitN(e, ":", 4)
		if len(parts) < 4 || !strings.Contains(parts[3], ".Validate undefined") {
			return fmt.Errorf("cannot stub: %s", e)
		}
		line, err := strconv.Atoi(parts[1])
		if err != nil {
			return fmt.Errorf("cannot stub: %s", e)
		}
		path := filepath.Join(root, parts[0])
		src, ok := overlay[path]
		if !ok {
			return fmt.Errorf("cannot stub: %s: file not switched", e)
		}
		lines := bytes.Split(src, []byte("\n"))
		lines[line-1] = validateCall.ReplaceAll(lines[line-1], []byte("error(nil)"))
		overlay[path] = bytes.Join(lines, []byte("\n"))
	}
	replace := map[string]string{}
	for p, src := range overlay {
		name := strings.ReplaceAll(strings.TrimPrefix(p, root+string(filepath.Separator)), string(filepath.Separator), "__")
		dst := filepath.Join(dir, name)
		if err := os.WriteFile(dst, src, 0o644); err != nil {
			return fmt.Errorf("writing overlay: %w", err)
		}
		replace[p] = dst
	}
	j, err := json.MarshalIndent(map[string]any{"Replace": replace}, "", "\t")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "overlay.json"), j, 0o644)
}
