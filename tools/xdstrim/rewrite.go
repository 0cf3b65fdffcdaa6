package main

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/format"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// importMap maps an import path to its replacement, reporting whether it has one.
type importMap func(string) (string, bool)

// toTrimmed maps a go-control-plane or cncf/xds proto package to its trimmed counterpart under
// proxy/xdspb; go-control-plane's non-proto helpers (pkg/...) have none.
func toTrimmed(p string) (string, bool) {
	if strings.Contains(p, "go-control-plane/pkg/") {
		return "", false
	}
	return rewriteGoPackage(p)
}

// fromTrimmed is toTrimmed's inverse: it maps a package of the trimmed tree back to the
// go-control-plane or cncf/xds package it was generated from (one of those linked into this
// program, ix.packages).
func fromTrimmed(ix *goIndex) importMap {
	return func(p string) (string, bool) {
		rest, ok := strings.CutPrefix(p, xdspbImport+"/")
		if !ok {
			return "", false
		}
		for _, prefix := range xdsPkgPrefixes {
			if ix.packages[prefix+rest] {
				return prefix + rest, true
			}
		}
		return "", false
	}
}

// linkedFiles lists the packages of this module that patterns link, except the generated
// packages under proxy/xdspb (their root package stays): import paths and Go files (with their
// test files when tests is set).
func linkedFiles(root string, tests bool, patterns ...string) (pkgs []string, files []string, err error) {
	format := "{{if not .Standard}}{{.ImportPath}}\t{{.Dir}}\t{{join .GoFiles \" \"}}"
	if tests {
		format += " {{join .TestGoFiles \" \"}} {{join .XTestGoFiles \" \"}}"
	}
	args := append([]string{"list", "-deps", "-f", format + "{{end}}"}, patterns...)
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return nil, nil, fmt.Errorf("go list -deps %v: %w", patterns, err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		parts := strings.SplitN(line, "\t", 3)
		if len(parts) != 3 || !strings.HasPrefix(parts[0], moduleImport+"/") || strings.HasPrefix(parts[0], xdspbImport+"/") {
			continue
		}
		pkgs = append(pkgs, parts[0])
		for _, f := range strings.Fields(parts[2]) {
			files = append(files, filepath.Join(parts[1], f))
		}
	}
	return pkgs, files, nil
}

// switchedSources returns the files whose imports m changes, with their new source, keyed by
// path.
func switchedSources(files []string, m importMap) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, path := range files {
		src, changed, err := switchImports(path, m)
		if err != nil {
			return nil, err
		}
		if changed {
			out[path] = src
		}
	}
	return out, nil
}

// switchImports returns the source of file path with its imports mapped by m, and whether any
// was.
func switchImports(path string, m importMap) ([]byte, bool, error) {
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
		np, ok := m(p)
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

// rewriteImports switches, in place, the go-control-plane and cncf/xds proto imports of the
// module files strait-proxy links (and of their tests, with tests) to proxy/xdspb, and returns
// the files changed, relative to root. It leaves go-control-plane's pkg/... helpers alone: the
// build then fails naming them.
//
// Given files, it switches those instead (as test files: a package strait-proxy has no trimmed
// type for stays).
func rewriteImports(root string, tests bool, files ...string) ([]string, error) {
	if len(files) > 0 {
		tests = true
		for i, f := range files {
			abs, err := filepath.Abs(f)
			if err != nil {
				return nil, err
			}
			files[i] = abs
		}
	} else {
		var err error
		if _, files, err = linkedFiles(root, tests, "./cmd/strait-proxy"); err != nil {
			return nil, err
		}
	}
	// proxy/xdspb's own tests compare the trimmed types with go-control-plane's.
	files = slices.DeleteFunc(files, func(f string) bool {
		return strings.HasPrefix(f, filepath.Join(root, generatedDir)+string(filepath.Separator))
	})
	switched, err := switchedSources(files, func(p string) (string, bool) {
		np, ok := toTrimmed(p)
		if ok && tests && !isDir(filepath.Join(root, strings.TrimPrefix(np, moduleImport+"/"))) {
			// A test may build a message strait-proxy has no trimmed type for (to check that
			// it is refused): its import stays.
			return "", false
		}
		return np, ok
	})
	if err != nil {
		return nil, err
	}
	var changed []string
	for p, src := range switched {
		src, err := regroupImports(p, src)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(p, src, 0o644); err != nil {
			return nil, fmt.Errorf("rewriting %s: %w", p, err)
		}
		changed = append(changed, shortPath(p))
	}
	sort.Strings(changed)
	return changed, nil
}

// regroupImports moves the imports of the trimmed tree in src out of the third-party group they
// were switched in into this module's group (a new last group when there is none), as this
// module's files order their imports, and gofmts the result.
func regroupImports(path string, src []byte) ([]byte, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, src, parser.ImportsOnly)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", path, err)
	}
	if len(f.Decls) == 0 {
		return src, nil
	}
	var decl *ast.GenDecl
	for _, d := range f.Decls {
		if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.IMPORT && g.Lparen.IsValid() {
			decl = g
			break
		}
	}
	if decl == nil {
		return src, nil
	}
	start := fset.Position(decl.Lparen).Offset + 1
	end := fset.Position(decl.Rparen).Offset
	lines := strings.Split(strings.Trim(string(src[start:end]), "\n"), "\n")
	var groups [][]string
	var cur, moved []string
	for _, l := range append(lines, "") {
		switch t := strings.TrimSpace(l); {
		case t == "":
			if len(cur) > 0 {
				groups = append(groups, cur)
			}
			cur = nil
		case strings.Contains(t, `"`+xdspbImport+"/"):
			moved = append(moved, l)
		default:
			cur = append(cur, l)
		}
	}
	if len(moved) == 0 {
		return src, nil
	}
	own := -1
	for i, g := range groups {
		for _, l := range g {
			if strings.Contains(l, `"`+moduleImport+"/") {
				own = i
			}
		}
	}
	if own < 0 {
		groups = append(groups, nil)
		own = len(groups) - 1
	}
	groups[own] = append(groups[own], moved...)
	var b bytes.Buffer
	b.Write(src[:start])
	b.WriteString("\n")
	for i, g := range groups {
		if i > 0 {
			b.WriteString("\n")
		}
		for _, l := range g {
			b.WriteString(l + "\n")
		}
	}
	b.Write(src[end:])
	out, err := format.Source(b.Bytes())
	if err != nil {
		return nil, fmt.Errorf("formatting %s: %w", path, err)
	}
	return out, nil
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}
