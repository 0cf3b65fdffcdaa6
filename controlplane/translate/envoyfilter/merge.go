package envoyfilter

import (
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// typeHCM is the type URL of the HTTP connection manager's config.
const typeHCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"

// merge merges src into dst with protobuf merge semantics (set scalars replace, lists append,
// map entries replace, messages merge), except that a google.protobuf.Any set in both with the
// same type URL is merged as the message it holds, as Istio merges a filter's typed_config:
// MERGE then changes fields of a typed config rather than replacing all of it.
func merge(dst, src proto.Message) {
	mergeMessage(dst.ProtoReflect(), src.ProtoReflect())
}

func mergeMessage(dst, src protoreflect.Message) {
	if dst.Descriptor().FullName() == "google.protobuf.Any" {
		if mergeAny(dst, src) {
			return
		}
	}
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList():
			dl := dst.Mutable(fd).List()
			sl := v.List()
			for i := 0; i < sl.Len(); i++ {
				e := sl.Get(i)
				if fd.Message() != nil {
					e = protoreflect.ValueOfMessage(proto.Clone(e.Message().Interface()).ProtoReflect())
				}
				dl.Append(e)
			}
		case fd.IsMap():
			dm := dst.Mutable(fd).Map()
			v.Map().Range(func(k protoreflect.MapKey, e protoreflect.Value) bool {
				if fd.MapValue().Message() != nil {
					e = protoreflect.ValueOfMessage(proto.Clone(e.Message().Interface()).ProtoReflect())
				}
				dm.Set(k, e)
				return true
			})
		case fd.Message() != nil:
			if dst.Has(fd) {
				mergeMessage(dst.Mutable(fd).Message(), v.Message())
			} else {
				dst.Set(fd, protoreflect.ValueOfMessage(proto.Clone(v.Message().Interface()).ProtoReflect()))
			}
		default:
			dst.Set(fd, v)
		}
		return true
	})
}

// mergeAny merges two Anys of the same, known type as their messages; false when it cannot
// (different or unknown types), and the Anys are then merged as plain messages.
func mergeAny(dst, src protoreflect.Message) bool {
	da, ok1 := dst.Interface().(*anypb.Any)
	sa, ok2 := src.Interface().(*anypb.Any)
	if !ok1 || !ok2 || da.GetTypeUrl() == "" || da.GetTypeUrl() != sa.GetTypeUrl() {
		return false
	}
	dm, err := da.UnmarshalNew()
	if err != nil {
		return false
	}
	sm, err := sa.UnmarshalNew()
	if err != nil {
		return false
	}
	merge(dm, sm)
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(dm)
	if err != nil {
		return false
	}
	da.Value = b
	return true
}

// decodeHCM returns the HTTP connection manager config of network filter f, or nil when f is
// not one.
func decodeHCM(f *listenerv3.Filter) *hcmv3.HttpConnectionManager {
	tc := f.GetTypedConfig()
	if tc.GetTypeUrl() != typeHCM {
		return nil
	}
	hcm := &hcmv3.HttpConnectionManager{}
	if err := tc.UnmarshalTo(hcm); err != nil {
		return nil
	}
	return hcm
}

// encodeHCM stores hcm back into network filter f's typed_config.
func encodeHCM(f *listenerv3.Filter, hcm *hcmv3.HttpConnectionManager) error {
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, hcm, proto.MarshalOptions{Deterministic: true}); err != nil {
		return err
	}
	f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
	return nil
}
