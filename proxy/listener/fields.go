package listener

import (
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// checkFields returns an error naming the first populated field of m that is not in allowed.
// path prefixes the field name in the error (e.g. "common_tls_context"). It is how this package
// refuses configuration it does not implement instead of silently ignoring it.
func checkFields(m proto.Message, path string, allowed ...string) error {
	var bad string
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if !slices.Contains(allowed, string(fd.Name())) {
			bad = string(fd.Name())
			return false
		}
		return true
	})
	if bad != "" {
		if path != "" {
			bad = path + "." + bad
		}
		return fmt.Errorf("field %s is not supported", bad)
	}
	return nil
}
