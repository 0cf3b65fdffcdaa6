// Command xdstrim generates proxy/xdspb: Go types for the xDS messages strait-proxy reads,
// trimmed to the fields it reads, so that the proxy need not link go-control-plane's whole tree.
//
// It type-checks the packages strait-proxy links (go/packages; their imports of proxy/xdspb read
// as the go-control-plane and cncf/xds packages the trimmed tree comes from, so that a newly read
// field type-checks), records every go-control-plane or cncf/xds type they name and every field or getter they select (plus the field names they
// allow through xdsfield.Check), takes those messages' descriptors from the registry linked into
// this program (tools/xdstrim/gcpset), prunes them to the fields read and the types those reach, rewrites
// go_package into proxy/xdspb, and runs protoc-gen-go's generator over the result. The generated
// code registers in xdspb.Files and xdspb.Types, never in the global registries.
//
// Usage, from the module root:
//
//	go run ./tools/xdstrim          # rewrite proxy/xdspb
//	go run ./tools/xdstrim -check   # fail when proxy/xdspb is not up to date
//	go run ./tools/xdstrim -v       # also list what the trimmed types lack (PGV Validate, ...)
//	go run ./tools/xdstrim -rewrite # switch go-control-plane / cncf/xds imports of the files
//	                                # strait-proxy links to proxy/xdspb (-tests: their tests too;
//	                                # or of the files named after the flags)
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

func main() {
	root := flag.String("root", ".", "the module root")
	check := flag.Bool("check", false, "only report whether the generated tree is up to date")
	verbose := flag.Bool("v", false, "print what the analysis found")
	rewrite := flag.Bool("rewrite", false, "instead of generating, switch the go-control-plane and cncf/xds imports of the files strait-proxy links (or of the files named as arguments) to proxy/xdspb, in place")
	tests := flag.Bool("tests", false, "with -rewrite, switch their test files too (only to the trimmed packages that exist)")
	flag.Parse()
	if *rewrite {
		root, err := filepath.Abs(*root)
		var changed []string
		if err == nil {
			changed, err = rewriteImports(root, *tests, flag.Args()...)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "xdstrim:", err)
			os.Exit(1)
		}
		for _, c := range changed {
			fmt.Println(c)
		}
		return
	}
	res, err := run(*root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "xdstrim:", err)
		os.Exit(1)
	}
	for _, w := range res.warnings {
		fmt.Fprintln(os.Stderr, "xdstrim: warning:", w)
	}
	if *verbose {
		res.summary(os.Stderr)
	}
	if *check {
		diff, err := compare(*root, res.files)
		if err != nil {
			fmt.Fprintln(os.Stderr, "xdstrim:", err)
			os.Exit(1)
		}
		if len(diff) > 0 {
			fmt.Fprintf(os.Stderr, "xdstrim: proxy/xdspb is out of date (%s); run go run ./tools/xdstrim\n", strings.Join(diff, ", "))
			os.Exit(1)
		}
		return
	}
	if err := write(*root, res.files); err != nil {
		fmt.Fprintln(os.Stderr, "xdstrim:", err)
		os.Exit(1)
	}
}

// result is one run of the generator.
type result struct {
	files    map[string][]byte
	usage    *usage
	trimmed  *trimmed
	warnings []string
}

// run analyses the module at root and returns the generated files, keyed by path from root.
func run(root string) (*result, error) {
	u, k, warnings, err := keep(root, "./cmd/strait-proxy")
	if err != nil {
		return nil, err
	}
	t, err := trim(k, rewriteGoPackage)
	if err != nil {
		return nil, err
	}
	files, err := generate(t)
	if err != nil {
		return nil, err
	}
	return &result{files: files, usage: u, trimmed: t, warnings: append(u.warnings, warnings...)}, nil
}

// keep analyses the module packages that patterns link and returns what they read of the
// xDS types, resolved to the proto messages, fields and enums to keep.
func keep(root string, patterns ...string) (*usage, *keepSet, []string, error) {
	ix := buildIndex()
	pkgs, err := loadPackages(root, ix, patterns)
	if err != nil {
		return nil, nil, nil, err
	}
	u := analyze(pkgs)
	k, warnings, err := resolve(u, ix)
	if err != nil {
		return nil, nil, nil, err
	}
	return u, k, warnings, nil
}

func (r *result) summary(w *os.File) {
	msgs := 0
	for _, f := range r.trimmed.generate {
		msgs += countMessages(f.GetMessageType())
	}
	fmt.Fprintf(w, "xdstrim: %d files, %d messages, %d pruned fields, %d Go files\n",
		len(r.trimmed.generate), msgs, len(r.trimmed.pruned), len(r.files))
	var other []string
	for m := range r.usage.otherMethods {
		other = append(other, m)
	}
	sort.Strings(other)
	for _, m := range other {
		fmt.Fprintln(w, "xdstrim: non-getter method used (not in the trimmed types):", m)
	}
}

// generatedDir is where the generated files live, relative to the module root.
const generatedDir = "proxy/xdspb"

// existing returns the generated files now under generatedDir (those starting with a
// "Code generated" line), keyed by path from root.
func existing(root string) (map[string][]byte, error) {
	out := map[string][]byte{}
	dir := filepath.Join(root, generatedDir)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) && p == dir {
				return filepath.SkipDir
			}
			return err
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.HasPrefix(b, []byte("// Code generated")) {
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			out[filepath.ToSlash(rel)] = b
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", generatedDir, err)
	}
	return out, nil
}

// compare returns the paths where the generated tree on disk differs from files.
func compare(root string, files map[string][]byte) ([]string, error) {
	old, err := existing(root)
	if err != nil {
		return nil, err
	}
	var diff []string
	for p, b := range files {
		if !bytes.Equal(old[p], b) {
			diff = append(diff, p)
		}
	}
	for p := range old {
		if _, ok := files[p]; !ok {
			diff = append(diff, p+" (stale)")
		}
	}
	sort.Strings(diff)
	return diff, nil
}

// write replaces the generated files under root with files.
func write(root string, files map[string][]byte) error {
	old, err := existing(root)
	if err != nil {
		return err
	}
	for p := range old {
		if _, ok := files[p]; !ok {
			if err := os.Remove(filepath.Join(root, p)); err != nil {
				return fmt.Errorf("removing stale %s: %w", p, err)
			}
		}
	}
	for _, p := range sortedKeys(files) {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
		if err := os.WriteFile(full, files[p], 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
	}
	return nil
}
