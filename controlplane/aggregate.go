package controlplane

import (
	"fmt"
	"sort"

	"github.com/strait-mesh/strait/controlplane/config"
)

// namedSource is a config source with the name it is reported under.
type namedSource struct {
	name string
	src  config.Source
}

// merge combines the objects of all sources. When two sources hold the same object (same kind,
// namespace and name), the earlier source wins and the conflict is reported as an error, so that
// what serves is predictable. The result is sorted by kind, creation time, namespace and name.
func merge(sources []namedSource) ([]*config.Object, []error) {
	seen := map[config.Key]string{}
	var out []*config.Object
	var errs []error
	for _, s := range sources {
		for _, o := range s.src.List() {
			k := o.Key()
			if first, dup := seen[k]; dup {
				errs = append(errs, fmt.Errorf("%s from %s (%s) ignored: already defined by %s", k, s.name, o.Origin, first))
				continue
			}
			seen[k] = s.name
			out = append(out, o)
		}
		errs = append(errs, s.src.Errors()...)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if !a.CreationTimestamp.Equal(b.CreationTimestamp) {
			return a.CreationTimestamp.Before(b.CreationTimestamp)
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	return out, errs
}
