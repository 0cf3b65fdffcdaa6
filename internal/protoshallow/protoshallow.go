// Package protoshallow copies protobuf messages shallowly: a new message whose fields share the
// original's values, for when one field is to differ and the rest need not be copied deeply.
package protoshallow

import (
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Copy returns a new message with m's fields except skip (which stays unset), sharing their
// values with m: neither may be modified in what they share. m's unknown fields are kept, so
// that a field this build does not know is still refused (xdsfield.Check) after the copy.
func Copy[M proto.Message](m M, skip protoreflect.Name) M {
	src := m.ProtoReflect()
	dst := src.New()
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Name() != skip {
			dst.Set(fd, v)
		}
		return true
	})
	if u := src.GetUnknown(); len(u) > 0 {
		dst.SetUnknown(u)
	}
	return dst.Interface().(M)
}
