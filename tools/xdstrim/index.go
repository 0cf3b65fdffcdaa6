package main

import (
	"reflect"
	"strconv"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/runtime/protoimpl"
)

// goMessage is a generated message's Go type: its descriptor and, per Go member name (a field,
// a oneof member's getter name or a oneof), the proto field numbers it reads.
type goMessage struct {
	desc    protoreflect.MessageDescriptor
	members map[string][]protoreflect.FieldNumber
	oneofs  map[string]bool // Go names of the oneof interface fields
}

// wrapper is a oneof wrapper type (Listener_InternalListener): the message and field it sets.
type wrapper struct {
	parent protoreflect.FullName
	number protoreflect.FieldNumber
	field  string // the wrapper's Go field name
}

// goIndex maps the Go types linked into this program ("importpath.Name") to their protos.
type goIndex struct {
	messages map[string]*goMessage
	byName   map[protoreflect.FullName]*goMessage
	enums    map[string]protoreflect.EnumDescriptor
	wrappers map[string]wrapper
	packages map[string]bool // Go import paths with a message or enum in the index
}

func goKey(t reflect.Type) string { return t.PkgPath() + "." + t.Name() }

// buildIndex indexes every message and enum type in protoregistry.GlobalTypes.
func buildIndex() *goIndex {
	ix := &goIndex{messages: map[string]*goMessage{}, byName: map[protoreflect.FullName]*goMessage{},
		enums: map[string]protoreflect.EnumDescriptor{}, wrappers: map[string]wrapper{}, packages: map[string]bool{}}
	protoregistry.GlobalTypes.RangeMessages(func(mt protoreflect.MessageType) bool {
		t := reflect.TypeOf(mt.Zero().Interface())
		if t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
			return true
		}
		md := mt.Descriptor()
		gm := &goMessage{desc: md, members: map[string][]protoreflect.FieldNumber{}, oneofs: map[string]bool{}}
		st := t.Elem()
		oneofGoName := map[protoreflect.Name]string{}
		for i := 0; i < st.NumField(); i++ {
			f := st.Field(i)
			if n, ok := tagNumber(f.Tag.Get("protobuf")); ok {
				gm.members[f.Name] = append(gm.members[f.Name], n)
			}
			if o := f.Tag.Get("protobuf_oneof"); o != "" {
				oneofGoName[protoreflect.Name(o)] = f.Name
				gm.oneofs[f.Name] = true
			}
		}
		if mi, ok := mt.(*protoimpl.MessageInfo); ok {
			for _, w := range mi.OneofWrappers {
				wt := reflect.TypeOf(w).Elem()
				if wt.NumField() != 1 {
					continue
				}
				f := wt.Field(0)
				n, ok := tagNumber(f.Tag.Get("protobuf"))
				if !ok {
					continue
				}
				gm.members[f.Name] = append(gm.members[f.Name], n)
				if fd := md.Fields().ByNumber(n); fd != nil && fd.ContainingOneof() != nil {
					if g := oneofGoName[fd.ContainingOneof().Name()]; g != "" {
						gm.members[g] = append(gm.members[g], n)
					}
				}
				ix.wrappers[goKey(wt)] = wrapper{parent: md.FullName(), number: n, field: f.Name}
			}
		}
		ix.messages[goKey(st)] = gm
		ix.packages[st.PkgPath()] = true
		ix.byName[md.FullName()] = gm
		return true
	})
	protoregistry.GlobalTypes.RangeEnums(func(et protoreflect.EnumType) bool {
		t := reflect.TypeOf(et.New(0))
		ix.enums[goKey(t)] = et.Descriptor()
		ix.packages[t.PkgPath()] = true
		return true
	})
	return ix
}

// tagNumber returns the field number of a `protobuf:"bytes,3,opt,name=..."` tag.
func tagNumber(tag string) (protoreflect.FieldNumber, bool) {
	parts := strings.Split(tag, ",")
	if len(parts) < 2 {
		return 0, false
	}
	n, err := strconv.Atoi(parts[1])
	if err != nil {
		return 0, false
	}
	return protoreflect.FieldNumber(n), true
}
