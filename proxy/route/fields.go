package route

import (
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// checkFields returns an error naming the first populated field of m that is not listed in
// allowed: strait-proxy refuses configuration it would not enforce, so the update is NACKed
// instead of silently changing meaning. path is the field path of m used in the message.
func checkFields(path string, m proto.Message, allowed ...string) error {
	if m == nil {
		return nil
	}
	r := m.ProtoReflect()
	if !r.IsValid() {
		return nil
	}
	var err error
	r.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		name := string(fd.Name())
		if !slices.Contains(allowed, name) {
			err = &UnsupportedError{Field: path + "." + name}
			return false
		}
		return true
	})
	if err == nil && len(r.GetUnknown()) > 0 {
		err = &UnsupportedError{Field: path + ".<unknown field>"}
	}
	return err
}

// UnsupportedError reports a configuration field that strait-proxy does not implement. Callers
// NACK the update that carried it.
type UnsupportedError struct {
	// Field is the dotted path of the field, e.g. "virtual_hosts[0].routes[2].route.hedge_policy".
	Field string
	// Detail optionally explains the unsupported value.
	Detail string
}

// Error implements error.
func (e *UnsupportedError) Error() string {
	if e.Detail != "" {
		return fmt.Sprintf("%s: not supported by strait-proxy: %s", e.Field, e.Detail)
	}
	return e.Field + ": not supported by strait-proxy"
}

func unsupported(field, format string, args ...any) error {
	return &UnsupportedError{Field: field, Detail: fmt.Sprintf(format, args...)}
}
