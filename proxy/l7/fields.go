package l7

import (
	"slices"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/strait-mesh/strait/proxy/route"
)

// checkFields returns an error naming the first populated field of m not listed in allowed.
func checkFields(path string, m proto.Message, allowed ...string) error {
	if m == nil || !m.ProtoReflect().IsValid() {
		return nil
	}
	var err error
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if !slices.Contains(allowed, string(fd.Name())) {
			err = &route.UnsupportedError{Field: path + "." + string(fd.Name())}
			return false
		}
		return true
	})
	return err
}
