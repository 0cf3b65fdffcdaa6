package main

import (
	"fmt"
	"go/ast"
	"go/constant"
	"go/token"
	"go/types"
	"sort"
	"strings"

	"golang.org/x/tools/go/packages"
)

// xdsPkgPrefixes are the import path prefixes of the generated xDS packages the trimmed tree
// replaces.
var xdsPkgPrefixes = []string{"github.com/envoyproxy/go-control-plane/", "github.com/cncf/xds/go/"}

// isXDSPkg reports whether path is a go-control-plane or cncf/xds package.
func isXDSPkg(path string) bool {
	for _, p := range xdsPkgPrefixes {
		if strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

// usage is what the analysed packages read of the xDS Go types. Types are keyed "importpath.Name".
type usage struct {
	// named holds every xDS named type the code names or reads from, with its go/types object.
	named map[string]*types.Named
	// members maps a type to the Go members read: field names, and getters without "Get".
	members map[string]map[string]bool
	// written maps a type to the Go fields set by composite literals.
	written map[string]map[string]bool
	// allowed maps a message type to the proto field names passed to xdsfield.Check-like
	// functions (a proto.Message and a trailing ...string of allowed field names).
	allowed map[string]map[string]bool
	// ifaceGetters holds Get* methods called through interfaces or type parameters: any kept
	// message with that getter keeps the field.
	ifaceGetters map[string]bool
	// anyAllowed holds the allowed field names of checks on a message of no static xDS type
	// (an interface): every kept message with a field of that name keeps it.
	anyAllowed map[string]bool
	// otherMethods lists non-getter, non-proto methods called on xDS types ("path.Type.Method"):
	// PGV's Validate and the like, which the trimmed types do not have.
	otherMethods map[string]bool
	// warnings are uses the analysis could not resolve.
	warnings []string
}

func newUsage() *usage {
	return &usage{named: map[string]*types.Named{}, members: map[string]map[string]bool{}, written: map[string]map[string]bool{},
		allowed: map[string]map[string]bool{}, ifaceGetters: map[string]bool{}, anyAllowed: map[string]bool{},
		otherMethods: map[string]bool{}}
}

// typeKey returns the key and named type of t (through one pointer) when it is an xDS type.
func typeKey(t types.Type) (string, *types.Named) {
	if p, ok := t.(*types.Pointer); ok {
		t = p.Elem()
	}
	n, ok := t.(*types.Named)
	if !ok || n.Obj().Pkg() == nil || !isXDSPkg(n.Obj().Pkg().Path()) {
		return "", nil
	}
	return n.Obj().Pkg().Path() + "." + n.Obj().Name(), n
}

func (u *usage) addType(t types.Type) string {
	k, n := typeKey(t)
	if n != nil {
		u.named[k] = n
	}
	return k
}

func addTo(m map[string]map[string]bool, k, v string) {
	if m[k] == nil {
		m[k] = map[string]bool{}
	}
	m[k][v] = true
}

// protoMethods are the methods every generated message has; calling them reads no particular field.
var protoMethods = map[string]bool{"ProtoReflect": true, "Reset": true, "String": true, "ProtoMessage": true,
	"Descriptor": true, "Enum": true, "EnumDescriptor": true, "Type": true, "Number": true}

// loadPackages returns the packages of this module that patterns link (their dependency
// closure, restricted to this module and leaving out the generated packages under proxy/xdspb),
// type-checked from source with their syntax. The packages are read through an overlay that
// switches their imports of the trimmed tree back to the go-control-plane and cncf/xds
// packages it was generated from (ix's): the analysis sees the full types, so code that starts
// reading a field the trimmed types leave out still type-checks, and the field is kept.
func loadPackages(dir string, ix *goIndex, patterns []string) ([]*packages.Package, error) {
	roots, files, err := linkedFiles(dir, false, patterns...)
	if err != nil {
		return nil, err
	}
	overlay, err := switchedSources(files, fromTrimmed(ix))
	if err != nil {
		return nil, err
	}
	cfg := &packages.Config{Dir: dir, Overlay: overlay, Mode: packages.NeedName | packages.NeedTypes | packages.NeedTypesInfo |
		packages.NeedSyntax | packages.NeedImports}
	pkgs, err := packages.Load(cfg, roots...)
	if err != nil {
		return nil, fmt.Errorf("loading %d packages: %w", len(roots), err)
	}
	var errs []string
	packages.Visit(pkgs, nil, func(p *packages.Package) {
		for _, e := range p.Errors {
			errs = append(errs, e.Error())
		}
	})
	if len(errs) > 0 {
		return nil, fmt.Errorf("loading packages: %s", strings.Join(errs, "; "))
	}
	sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].PkgPath < pkgs[j].PkgPath })
	return pkgs, nil
}

// analyze records what pkgs read of the xDS types.
func analyze(pkgs []*packages.Package) *usage {
	u := newUsage()
	for _, p := range pkgs {
		analyzePackage(u, p)
	}
	return u
}

func analyzePackage(u *usage, p *packages.Package) {
	info := p.TypesInfo
	// Every xDS type named (declarations, conversions, type assertions, composite literals)
	// and every enum constant.
	for _, obj := range info.Uses {
		switch o := obj.(type) {
		case *types.TypeName:
			u.addType(o.Type())
		case *types.Const:
			u.addType(o.Type())
		}
	}
	// Field and method selections.
	for _, sel := range info.Selections {
		recv := sel.Recv()
		name := sel.Obj().Name()
		if k := u.addType(recv); k != "" {
			switch sel.Kind() {
			case types.FieldVal:
				addTo(u.members, k, name)
			default:
				switch {
				case strings.HasPrefix(name, "Get") && len(name) > 3:
					addTo(u.members, k, strings.TrimPrefix(name, "Get"))
				case !protoMethods[name]:
					u.otherMethods[k+"."+name] = true
				}
			}
			continue
		}
		if _, ok := sel.Obj().(*types.Func); ok && strings.HasPrefix(name, "Get") {
			t := recv
			if pt, ok := t.(*types.Pointer); ok {
				t = pt.Elem()
			}
			if types.IsInterface(t) {
				if _, isTP := t.(*types.TypeParam); isTP || !isXDSPkg(pkgPathOf(sel.Obj())) {
					u.ifaceGetters[strings.TrimPrefix(name, "Get")] = true
				}
			}
		}
	}
	params := map[types.Object]bool{}
	for _, f := range p.Syntax {
		ast.Inspect(f, func(n ast.Node) bool {
			if ft, ok := n.(*ast.FuncType); ok && ft.Params != nil {
				for _, fl := range ft.Params.List {
					for _, id := range fl.Names {
						params[info.Defs[id]] = true
					}
				}
			}
			return true
		})
	}
	for _, f := range p.Syntax {
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CompositeLit:
				compositeKeys(u, info, n)
			case *ast.CallExpr:
				checkCall(u, p, params, n)
			}
			return true
		})
	}
}

func pkgPathOf(o types.Object) string {
	if o.Pkg() == nil {
		return ""
	}
	return o.Pkg().Path()
}

// compositeKeys records the fields set by a composite literal of an xDS type.
func compositeKeys(u *usage, info *types.Info, lit *ast.CompositeLit) {
	tv, ok := info.Types[lit]
	if !ok {
		return
	}
	k := u.addType(tv.Type)
	if k == "" {
		return
	}
	for _, e := range lit.Elts {
		if kv, ok := e.(*ast.KeyValueExpr); ok {
			if id, ok := kv.Key.(*ast.Ident); ok {
				addTo(u.written, k, id.Name)
			}
		}
	}
}

// checkCall records the allowed field names of a call to xdsfield.Check or a function of the
// same shape: a proto.Message parameter and a trailing ...string of field names.
func checkCall(u *usage, p *packages.Package, params map[types.Object]bool, call *ast.CallExpr) {
	info := p.TypesInfo
	sig, ok := info.TypeOf(call.Fun).(*types.Signature)
	if !ok || !sig.Variadic() {
		return
	}
	sigParams := sig.Params()
	last, ok := sigParams.At(sigParams.Len() - 1).Type().(*types.Slice)
	if !ok || !types.Identical(last.Elem(), types.Typ[types.String]) {
		return
	}
	msgArg := -1
	for i := 0; i < sigParams.Len()-1; i++ {
		if isProtoMessageIface(sigParams.At(i).Type()) {
			msgArg = i
		}
	}
	if msgArg < 0 || msgArg >= len(call.Args) {
		return
	}
	k := u.addType(info.TypeOf(call.Args[msgArg]))
	pos := p.Fset.Position(call.Pos())
	where := fmt.Sprintf("%s:%d", shortPath(pos.Filename), pos.Line)
	if k == "" {
		// A proto.Message forwarded from a wrapper's own parameter is resolved at the
		// wrapper's call sites; any other interface-typed message is handled below.
		if _, isIface := info.TypeOf(call.Args[msgArg]).Underlying().(*types.Interface); !isIface {
			return
		}
		if isParam(info, params, call.Args[msgArg]) {
			return
		}
	}
	names, ok := stringArgs(p, params, call, sigParams.Len()-1)
	if !ok {
		u.warnings = append(u.warnings, where+": allowed field names not constant")
		return
	}
	if k == "" {
		// A message of interface type: keep these names in every kept message.
		for _, n := range names {
			u.anyAllowed[n] = true
		}
		return
	}
	for _, n := range names {
		addTo(u.allowed, k, n)
	}
}

// isProtoMessageIface reports whether t is proto.Message (an interface with ProtoReflect).
func isProtoMessageIface(t types.Type) bool {
	it, ok := types.Unalias(t).Underlying().(*types.Interface)
	if !ok {
		return false
	}
	for i := 0; i < it.NumMethods(); i++ {
		if it.Method(i).Name() == "ProtoReflect" {
			return true
		}
	}
	return false
}

// isParam reports whether e names a parameter of the enclosing function (a wrapper such as
// l7.checkFields forwarding its message).
func isParam(info *types.Info, params map[types.Object]bool, e ast.Expr) bool {
	id, ok := e.(*ast.Ident)
	return ok && params[info.Uses[id]]
}

// stringArgs returns the constant strings passed from argument index from on: each argument a
// constant, or one "xs..." naming a package-level variable initialised with a slice literal of
// constants.
func stringArgs(p *packages.Package, params map[types.Object]bool, call *ast.CallExpr, from int) ([]string, bool) {
	info := p.TypesInfo
	var out []string
	if call.Ellipsis.IsValid() {
		if len(call.Args) != from+1 {
			return nil, false
		}
		id, ok := call.Args[from].(*ast.Ident)
		if !ok {
			return nil, false
		}
		v, ok := info.Uses[id].(*types.Var)
		if !ok {
			return nil, false
		}
		if params[v] {
			// A parameter forwarded by a wrapper: its callers are analysed instead.
			return nil, true
		}
		if v.Parent() != v.Pkg().Scope() {
			return nil, false
		}
		lit := packageVarInit(p, v)
		if lit == nil {
			return nil, false
		}
		for _, e := range lit.Elts {
			s, ok := constString(info, e)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	}
	for _, a := range call.Args[from:] {
		s, ok := constString(info, a)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

func constString(info *types.Info, e ast.Expr) (string, bool) {
	tv, ok := info.Types[e]
	if !ok || tv.Value == nil || tv.Value.Kind() != constant.String {
		return "", false
	}
	return constant.StringVal(tv.Value), true
}

// packageVarInit returns the composite literal initialising package-level variable v.
func packageVarInit(p *packages.Package, v *types.Var) *ast.CompositeLit {
	for _, f := range p.Syntax {
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.VAR {
				continue
			}
			for _, s := range g.Specs {
				vs := s.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if p.TypesInfo.Defs[n] == v && i < len(vs.Values) {
						lit, _ := vs.Values[i].(*ast.CompositeLit)
						return lit
					}
				}
			}
		}
	}
	return nil
}

func shortPath(f string) string {
	if i := strings.Index(f, "/proxy/"); i >= 0 {
		return f[i+1:]
	}
	if i := strings.Index(f, "/internal/"); i >= 0 {
		return f[i+1:]
	}
	if i := strings.Index(f, "/cmd/"); i >= 0 {
		return f[i+1:]
	}
	return f
}
