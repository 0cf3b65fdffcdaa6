// Package xdsfield is how strait-proxy refuses xDS configuration it does not implement instead of
// silently ignoring it: a compiler lists the fields of a message it handles, and any other
// populated field is an error that names it (the update is then NACKed).
package xdsfield

import (
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Check returns an error naming a populated field of m that is not in allowed. path prefixes the
// field name in the error (e.g. "common_tls_context").
func Check(m proto.Message, path string, allowed ...string) error {
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
