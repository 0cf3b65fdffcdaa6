package analysis

import (
	"fmt"
	"sort"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/strait-mesh/strait/controlplane/config"
)

// replacements names the field that replaces a deprecated one, by the deprecated field's full
// proto name, where Istio's API documents one.
var replacements = map[protoreflect.FullName]string{
	"istio.networking.v1alpha3.HTTPRoute.mirror_percent":                                "mirrorPercentage",
	"istio.networking.v1alpha3.CorsPolicy.allow_origin":                                 "allowOrigins",
	"istio.networking.v1alpha3.HTTPFaultInjection.Delay.percent":                        "percentage",
	"istio.networking.v1alpha3.OutlierDetection.consecutive_errors":                     "consecutive5xxErrors",
	"istio.networking.v1alpha3.LoadBalancerSettings.ConsistentHashLB.minimum_ring_size": "ringHash.minimumRingSize",
}

// analyzeDeprecatedFields reports (IST0002) every field set in a spec that Istio's API marks
// deprecated (the deprecated option of istio.io/api's protos).
func analyzeDeprecatedFields(c *context) {
	kinds := make([]config.Kind, 0, len(c.snap.Configs))
	for k := range c.snap.Configs {
		kinds = append(kinds, k)
	}
	sort.Slice(kinds, func(i, j int) bool { return kinds[i] < kinds[j] })
	for _, k := range kinds {
		for _, o := range c.snap.Configs[k] {
			if o.Spec == nil {
				continue
			}
			walkDeprecated(o.Spec.ProtoReflect(), "spec", 0, func(fd protoreflect.FieldDescriptor, path string) {
				detail := fmt.Sprintf("%q is deprecated", path)
				if r, ok := replacements[fd.FullName()]; ok {
					detail += fmt.Sprintf("; use %q", r)
				}
				c.report(newMessage(Deprecated, o, path, detail))
			})
		}
	}
}

// maxWalkDepth bounds the recursion of walkDeprecated (Istio's specs are far shallower).
const maxWalkDepth = 64

// walkDeprecated calls found for every populated field of m, at any depth, whose descriptor is
// marked deprecated, with its path ("spec.http[0].mirrorPercent").
func walkDeprecated(m protoreflect.Message, path string, depth int, found func(protoreflect.FieldDescriptor, string)) {
	if depth > maxWalkDepth || !m.IsValid() {
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := path + "." + fd.JSONName()
		if opts, ok := fd.Options().(*descriptorpb.FieldOptions); ok && opts.GetDeprecated() {
			found(fd, p)
		}
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				walkDeprecated(l.Get(i).Message(), fmt.Sprintf("%s[%d]", p, i), depth+1, found)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				walkDeprecated(mv.Message(), p+"."+k.String(), depth+1, found)
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			walkDeprecated(v.Message(), p, depth+1, found)
		}
		return true
	})
}
