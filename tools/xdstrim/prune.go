package main

import (
	"fmt"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// keepSet is what the trimmed tree keeps: messages with the fields read, and enums.
type keepSet struct {
	fields map[protoreflect.FullName]map[protoreflect.FieldNumber]bool
	enums  map[protoreflect.FullName]bool
}

func (k *keepSet) keepField(m protoreflect.FullName, n protoreflect.FieldNumber) {
	if k.fields[m] == nil {
		k.fields[m] = map[protoreflect.FieldNumber]bool{}
	}
	k.fields[m][n] = true
}

func (k *keepSet) keepMessage(m protoreflect.FullName) bool {
	if k.fields[m] != nil {
		return false
	}
	k.fields[m] = map[protoreflect.FieldNumber]bool{}
	return true
}

// resolve turns the Go-level usage into the proto messages, fields and enums kept, closing over
// the types of kept fields. It returns an error naming an xDS type it cannot map to a proto.
func resolve(u *usage, ix *goIndex) (*keepSet, []string, error) {
	k := &keepSet{fields: map[protoreflect.FullName]map[protoreflect.FieldNumber]bool{},
		enums: map[protoreflect.FullName]bool{}}
	var warnings []string
	keys := sortedKeys(u.named)
	for _, key := range keys {
		if gm := ix.messages[key]; gm != nil {
			name := gm.desc.FullName()
			k.keepMessage(name)
			for _, m := range sortedKeys(u.members[key]) {
				nums, ok := gm.members[m]
				if !ok {
					warnings = append(warnings, fmt.Sprintf("%s: member %s is no proto field", key, m))
				}
				for _, n := range nums {
					k.keepField(name, n)
				}
			}
			// A literal setting a oneof names its wrapper type, which keeps the member set.
			for _, m := range sortedKeys(u.written[key]) {
				if gm.oneofs[m] {
					continue
				}
				for _, n := range gm.members[m] {
					k.keepField(name, n)
				}
			}
			for _, a := range sortedKeys(u.allowed[key]) {
				fd := gm.desc.Fields().ByName(protoreflect.Name(a))
				if fd == nil {
					warnings = append(warnings, fmt.Sprintf("%s: allowed field %q does not exist", name, a))
					continue
				}
				k.keepField(name, fd.Number())
			}
			continue
		}
		if ed, ok := ix.enums[key]; ok {
			k.enums[ed.FullName()] = true
			continue
		}
		if w, ok := ix.wrappers[key]; ok {
			k.keepMessage(w.parent)
			k.keepField(w.parent, w.number)
			continue
		}
		if strings.Contains(key, "/pkg/") {
			continue // go-control-plane's non-proto helpers (resource type URLs and the like)
		}
		if !ix.packages[key[:strings.LastIndex(key, ".")]] {
			return nil, nil, fmt.Errorf("xDS type %s is not in the linked registry: add its package to tools/xdstrim/gcpset/gcpset.go", key)
		}
		if _, isOneofIface := isOneofInterface(key); !isOneofIface && !handWritten[key] {
			warnings = append(warnings, "not a message, enum or oneof wrapper (not generated): "+key)
		}
	}
	// Close over the types of kept fields; getters called through interfaces keep the field
	// in every kept message that has it.
	queue := make([]protoreflect.FullName, 0, len(k.fields))
	for m := range k.fields {
		queue = append(queue, m)
	}
	sort.Slice(queue, func(i, j int) bool { return queue[i] < queue[j] })
	for len(queue) > 0 {
		name := queue[0]
		queue = queue[1:]
		md, err := findMessage(name)
		if err != nil {
			return nil, nil, err
		}
		if gm := ix.byName[name]; gm != nil {
			for g := range u.ifaceGetters {
				for _, n := range gm.members[g] {
					k.keepField(name, n)
				}
			}
		}
		for n := range u.anyAllowed {
			if fd := md.Fields().ByName(protoreflect.Name(n)); fd != nil {
				k.keepField(name, fd.Number())
			}
		}
		if md.IsMapEntry() {
			for i := 0; i < md.Fields().Len(); i++ {
				k.keepField(name, md.Fields().Get(i).Number())
			}
		}
		for n := range k.fields[name] {
			fd := md.Fields().ByNumber(n)
			if fd == nil {
				return nil, nil, fmt.Errorf("%s: no field %d", name, n)
			}
			if fd.Message() != nil && trimmedFile(fd.Message().ParentFile()) && k.keepMessage(fd.Message().FullName()) {
				queue = append(queue, fd.Message().FullName())
			}
			if fd.Enum() != nil && trimmedFile(fd.Enum().ParentFile()) {
				k.enums[fd.Enum().FullName()] = true
			}
		}
		// A kept nested message needs its parent as a container.
		if p, ok := md.Parent().(protoreflect.MessageDescriptor); ok && k.keepMessage(p.FullName()) {
			queue = append(queue, p.FullName())
		}
	}
	for e := range k.enums {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(e)
		if err != nil {
			return nil, nil, fmt.Errorf("enum %s: %w", e, err)
		}
		if p, ok := d.Parent().(protoreflect.MessageDescriptor); ok && k.keepMessage(p.FullName()) {
			// Its parent's own parents are added by the next pass below.
			for q := p; q != nil; {
				pp, ok := q.Parent().(protoreflect.MessageDescriptor)
				if !ok {
					break
				}
				k.keepMessage(pp.FullName())
				q = pp
			}
		}
	}
	return k, warnings, nil
}

// handWritten are the non-proto xDS types strait-proxy uses that proxy/xdspb provides by hand
// (strait-proxy, built on proxy/xdspb, checks they are there).
var handWritten = map[string]bool{
	"github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3.AggregatedDiscoveryServiceClient": true,
}

// trimmedFile reports whether fd belongs to the trimmed tree (a go-control-plane or cncf/xds
// file), as opposed to a dependency used unchanged (well-known types, google.rpc).
func trimmedFile(fd protoreflect.FileDescriptor) bool {
	_, ok := rewriteGoPackage(fd.Options().(*descriptorpb.FileOptions).GetGoPackage())
	return ok
}

// isOneofInterface reports whether key names a generated oneof interface (isListener_Foo).
func isOneofInterface(key string) (string, bool) {
	i := strings.LastIndex(key, ".")
	return key[i+1:], strings.HasPrefix(key[i+1:], "is")
}

func findMessage(name protoreflect.FullName) (protoreflect.MessageDescriptor, error) {
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(name)
	if err != nil {
		return nil, fmt.Errorf("message %s: %w", name, err)
	}
	md, ok := d.(protoreflect.MessageDescriptor)
	if !ok {
		return nil, fmt.Errorf("%s is not a message", name)
	}
	return md, nil
}

// prunedField is one field of a kept message that the trimmed tree leaves out.
type prunedField struct {
	Message protoreflect.FullName
	Number  protoreflect.FieldNumber
	Name    protoreflect.Name
}

// trimmed is the result of pruning: the files to generate, the files they depend on unchanged
// (well-known types and the like), in dependency order, and the pruned fields.
type trimmed struct {
	generate []*descriptorpb.FileDescriptorProto
	external []*descriptorpb.FileDescriptorProto
	pruned   []prunedField
}

// trim builds the pruned descriptors of the kept set. goPackage rewrites a trimmed file's Go
// import path.
func trim(k *keepSet, goPackage func(string) (string, bool)) (*trimmed, error) {
	files := map[string]protoreflect.FileDescriptor{}
	for m := range k.fields {
		md, err := findMessage(m)
		if err != nil {
			return nil, err
		}
		files[md.ParentFile().Path()] = md.ParentFile()
	}
	for e := range k.enums {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(e)
		if err != nil {
			return nil, err
		}
		files[d.ParentFile().Path()] = d.ParentFile()
	}
	t := &trimmed{}
	external := map[string]protoreflect.FileDescriptor{}
	var paths []string
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		fd := files[p]
		goPkg, ok := goPackage(fd.Options().(*descriptorpb.FileOptions).GetGoPackage())
		if !ok {
			return nil, fmt.Errorf("%s: go_package %q is not a go-control-plane or cncf/xds package", p,
				fd.Options().(*descriptorpb.FileOptions).GetGoPackage())
		}
		full := protodesc.ToFileDescriptorProto(fd)
		out := &descriptorpb.FileDescriptorProto{
			Name: full.Name, Package: full.Package, Syntax: full.Syntax, Edition: full.Edition,
			Options: &descriptorpb.FileOptions{GoPackage: proto.String(goPkg)},
		}
		deps := map[string]bool{}
		pf := &pruner{keep: k, deps: deps, self: p}
		for i, m := range full.MessageType {
			if pm := pf.message(m, fd.Messages().Get(i)); pm != nil {
				out.MessageType = append(out.MessageType, pm)
			}
		}
		for i, e := range full.EnumType {
			if k.enums[fd.Enums().Get(i).FullName()] {
				out.EnumType = append(out.EnumType, pf.enum(e))
			}
		}
		t.pruned = append(t.pruned, pf.pruned...)
		for d := range deps {
			out.Dependency = append(out.Dependency, d)
			if files[d] == nil {
				dfd, err := protoregistry.GlobalFiles.FindFileByPath(d)
				if err != nil {
					return nil, fmt.Errorf("%s: dependency %s: %w", p, d, err)
				}
				addExternal(external, dfd)
			}
		}
		sort.Strings(out.Dependency)
		t.generate = append(t.generate, out)
	}
	for _, p := range sortedKeys(external) {
		t.external = append(t.external, protodesc.ToFileDescriptorProto(external[p]))
	}
	sort.Slice(t.pruned, func(i, j int) bool {
		a, b := t.pruned[i], t.pruned[j]
		return a.Message < b.Message || a.Message == b.Message && a.Number < b.Number
	})
	return t, nil
}

func addExternal(m map[string]protoreflect.FileDescriptor, fd protoreflect.FileDescriptor) {
	if m[fd.Path()] != nil {
		return
	}
	m[fd.Path()] = fd
	for i := 0; i < fd.Imports().Len(); i++ {
		addExternal(m, fd.Imports().Get(i).FileDescriptor)
	}
}

// pruner prunes the messages of one file.
type pruner struct {
	keep   *keepSet
	deps   map[string]bool
	self   string
	pruned []prunedField
}

// message returns m pruned to its kept fields, nested types and enums, or nil when neither m
// nor anything nested in it is kept. Options are dropped except map_entry.
func (p *pruner) message(m *descriptorpb.DescriptorProto, md protoreflect.MessageDescriptor) *descriptorpb.DescriptorProto {
	kept, ok := p.keep.fields[md.FullName()]
	if !ok {
		return nil
	}
	out := &descriptorpb.DescriptorProto{Name: m.Name}
	if m.GetOptions().GetMapEntry() {
		out.Options = &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)}
	}
	oneofIndex := map[int32]int32{}
	for _, f := range m.Field {
		if !kept[protoreflect.FieldNumber(f.GetNumber())] {
			p.pruned = append(p.pruned, prunedField{md.FullName(), protoreflect.FieldNumber(f.GetNumber()), protoreflect.Name(f.GetName())})
			continue
		}
		nf := proto.Clone(f).(*descriptorpb.FieldDescriptorProto)
		nf.Options = nil
		if f.GetOptions() != nil && f.GetOptions().Packed != nil {
			nf.Options = &descriptorpb.FieldOptions{Packed: f.GetOptions().Packed}
		}
		if f.OneofIndex != nil {
			i, seen := oneofIndex[f.GetOneofIndex()]
			if !seen {
				i = int32(len(out.OneofDecl))
				oneofIndex[f.GetOneofIndex()] = i
				out.OneofDecl = append(out.OneofDecl, &descriptorpb.OneofDescriptorProto{Name: m.OneofDecl[f.GetOneofIndex()].Name})
			}
			nf.OneofIndex = proto.Int32(i)
		}
		fd := md.Fields().ByNumber(protoreflect.FieldNumber(f.GetNumber()))
		if fd.Message() != nil {
			p.dep(fd.Message().ParentFile().Path())
		}
		if fd.Enum() != nil {
			p.dep(fd.Enum().ParentFile().Path())
		}
		out.Field = append(out.Field, nf)
	}
	// Oneof declarations must keep their relative order (synthetic ones last): renumber in
	// declaration order.
	sortOneofs(out, oneofIndex)
	for i, n := range m.NestedType {
		if pm := p.message(n, md.Messages().Get(i)); pm != nil {
			out.NestedType = append(out.NestedType, pm)
		}
	}
	for i, e := range m.EnumType {
		if p.keep.enums[md.Enums().Get(i).FullName()] {
			out.EnumType = append(out.EnumType, p.enum(e))
		}
	}
	return out
}

// sortOneofs renumbers out's oneofs in the order of the original declarations.
func sortOneofs(out *descriptorpb.DescriptorProto, oneofIndex map[int32]int32) {
	var orig []int32
	for o := range oneofIndex {
		orig = append(orig, o)
	}
	sort.Slice(orig, func(i, j int) bool { return orig[i] < orig[j] })
	renum := map[int32]int32{} // first-seen index -> declaration-order index
	decls := make([]*descriptorpb.OneofDescriptorProto, len(orig))
	for i, o := range orig {
		renum[oneofIndex[o]] = int32(i)
		decls[i] = out.OneofDecl[oneofIndex[o]]
	}
	out.OneofDecl = decls
	for _, f := range out.Field {
		if f.OneofIndex != nil {
			f.OneofIndex = proto.Int32(renum[f.GetOneofIndex()])
		}
	}
}

func (p *pruner) dep(path string) {
	if path != p.self {
		p.deps[path] = true
	}
}

// enum returns e without options other than allow_alias.
func (p *pruner) enum(e *descriptorpb.EnumDescriptorProto) *descriptorpb.EnumDescriptorProto {
	out := &descriptorpb.EnumDescriptorProto{Name: e.Name, ReservedName: e.ReservedName, ReservedRange: e.ReservedRange}
	if e.GetOptions().GetAllowAlias() {
		out.Options = &descriptorpb.EnumOptions{AllowAlias: proto.Bool(true)}
	}
	for _, v := range e.Value {
		out.Value = append(out.Value, &descriptorpb.EnumValueDescriptorProto{Name: v.Name, Number: v.Number})
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func countMessages(ms []*descriptorpb.DescriptorProto) int {
	n := len(ms)
	for _, m := range ms {
		n += countMessages(m.GetNestedType())
	}
	return n
}
