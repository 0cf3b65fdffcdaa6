// Package xdsfield is how strait-proxy refuses xDS configuration it does not implement instead of
// silently ignoring it: a compiler lists the fields of a message it handles, and any other
// populated field, or a field this build's protos do not know, is an error that names it (the
// update is then NACKed). Every compiler of the proxy (route, l7, upstream, listener, l4, tlsx)
// checks with Check, so whether a field is refused does not depend on which package compiles it.
package xdsfield

import (
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/strait-mesh/strait/proxy/xdspb"
)

// Check returns an *UnsupportedError naming the first populated field of m that is not in
// allowed. strait-proxy's trimmed xDS types (proxy/xdspb) leave out the fields it does not read,
// which decode as unknown fields: those are named too (xdspb.UnknownField), as when m is a
// go-control-plane type; a field unknown to this build's protos altogether (a newer control
// plane's) is "<unknown field>". path prefixes the field name (e.g. "common_tls_context"); ""
// names the field alone. A nil or invalid (typed nil) m has no fields.
func Check(m proto.Message, path string, allowed ...string) error {
	if m == nil {
		return nil
	}
	r := m.ProtoReflect()
	if !r.IsValid() {
		return nil
	}
	bad := ""
	r.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if !slices.Contains(allowed, string(fd.Name())) {
			bad = string(fd.Name())
			return false
		}
		return true
	})
	if bad == "" {
		if name, _, ok := xdspb.UnknownField(r); ok {
			bad = name
			if name == "" {
				bad = "<unknown field>"
			}
		}
	}
	if bad == "" {
		return nil
	}
	if path != "" {
		bad = path + "." + bad
	}
	return &UnsupportedError{Field: bad}
}

// UnsupportedError reports a configuration field (or a value of it) that strait-proxy does not
// implement. Callers NACK the update that carried it.
type UnsupportedError struct {
	// Field is the dotted path of the field, e.g. "virtual_hosts[0].routes[2].route.hedge_policy".
	Field string
	// Detail optionally explains the unsupported value.
	Detail string
}

// Error implements error.
func (e *UnsupportedError) Error() string {
	if e.Detail != "" {
		return e.Field + ": not supported by strait-proxy: " + e.Detail
	}
	return e.Field + ": not supported by strait-proxy"
}

// Unsupported returns an *UnsupportedError for field with a formatted detail.
func Unsupported(field, format string, args ...any) error {
	return &UnsupportedError{Field: field, Detail: fmt.Sprintf(format, args...)}
}
