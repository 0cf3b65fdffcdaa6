package xdsclient

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
)

// SameBytes reports whether r and o are both present and hold byte-identical resources, so that
// what was compiled from one serves for the other.
func (r *Resource) SameBytes(o *Resource) bool {
	return r != nil && o != nil && r.Any != nil && o.Any != nil && bytes.Equal(r.Any.GetValue(), o.Any.GetValue())
}

// CompileSet is the one compile step of every type's update (Handler.Apply): it compiles the
// resources of set in name order, as kind (e.g. "cluster" in errors). A resource byte-identical
// to the accepted one of its name keeps its compiled form from compiled; any other must hold an
// M and is compiled. It returns the compiled set, the values compiled by this call (for the
// caller to release when it rejects the update), and every failure joined, each naming kind and
// resource once. The caller rejects the update on an error.
func CompileSet[M proto.Message, V any](kind string, set, accepted map[string]*Resource, compiled map[string]V,
	compile func(name string, m M) (V, error)) (next map[string]V, fresh []V, err error) {
	next = make(map[string]V, len(set))
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(set)) {
		res := set[name]
		if prev, ok := compiled[name]; ok && res.SameBytes(accepted[name]) {
			next[name] = prev
			continue
		}
		m, ok := res.Message.(M)
		if !ok {
			var zero M
			errs = append(errs, fmt.Errorf("%s %q: not a %s", kind, name, zero.ProtoReflect().Descriptor().Name()))
			continue
		}
		v, err := compile(name, m)
		if err != nil {
			errs = append(errs, named(kind, name, err))
			continue
		}
		fresh = append(fresh, v)
		next[name] = v
	}
	return next, fresh, errors.Join(errs...)
}

// named wraps a compile error with the resource's kind and name, unless the compiler already
// named it (so a NACK reads `listener "http": ...` once).
func named(kind, name string, err error) error {
	if strings.Contains(err.Error(), kind+" "+strconv.Quote(name)) {
		return err
	}
	return fmt.Errorf("%s %q: %w", kind, name, err)
}
