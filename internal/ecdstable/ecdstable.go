// Package ecdstable is the envelope of the tables straitd sends strait-proxy beside Envoy's own
// resources (the DNS name table, internal/nametable; the workload table,
// internal/workloadtable): go-control-plane carries no type for them, so each travels as an ECDS
// resource, an envoy.config.core.v3.TypedExtensionConfig named after the table, whose
// typed_config is an xds.type.v3.TypedStruct with the table's own type_url and a
// google.protobuf.Struct value. An Envoy never asks for them: Envoy requests ECDS only for the
// names its listeners reference.
//
// The table packages own their names, type URLs, fields and limits; this package owns the
// envelope and the bounded decoding of the string lists both tables hold. It handles the
// envelope's name and typed_config, not a TypedExtensionConfig: straitd wraps them in
// go-control-plane's type, strait-proxy receives its own trimmed one (proxy/xdspb).
package ecdstable

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	xdstypev3 "github.com/strait-mesh/strait/proxy/xdspb/xds/type/v3"
)

// Encode returns the typed_config of an ECDS resource holding v: a TypedStruct with the
// type_url typeURL. The encoding is deterministic (a Struct is maps, and the xDS server pushes a
// resource whose bytes changed, so equal tables must be equal bytes).
func Encode(typeURL string, v *structpb.Struct) (*anypb.Any, error) {
	a := new(anypb.Any)
	if err := anypb.MarshalFrom(a, &xdstypev3.TypedStruct{TypeUrl: typeURL, Value: v}, proto.MarshalOptions{Deterministic: true}); err != nil {
		return nil, fmt.Errorf("encoding typed_config: %w", err)
	}
	return a, nil
}

// Decode returns the Struct of the ECDS resource name with typed_config typedConfig that Encode
// made with typeURL, when name is wantName; it refuses a resource of another name or another
// TypedStruct type_url, naming the field.
func Decode(name string, typedConfig *anypb.Any, wantName, typeURL string) (*structpb.Struct, error) {
	if name != wantName {
		return nil, fmt.Errorf("resource name %q, want %q", name, wantName)
	}
	var ts xdstypev3.TypedStruct
	if err := typedConfig.UnmarshalTo(&ts); err != nil {
		return nil, fmt.Errorf("typed_config: %w", err)
	}
	if ts.GetTypeUrl() != typeURL {
		return nil, fmt.Errorf("typed_config.type_url %q, want %q", ts.GetTypeUrl(), typeURL)
	}
	return ts.GetValue(), nil
}

// StringList decodes a list of strings of at most maxItems items, each of at most maxBytes
// bytes (0: no limit per string). An absent value (nil) is an empty list.
func StringList(v *structpb.Value, maxItems, maxBytes int) ([]string, error) {
	if v == nil {
		return nil, nil
	}
	l := v.GetListValue()
	if l == nil {
		return nil, errors.New("want a list")
	}
	if len(l.GetValues()) > maxItems {
		return nil, fmt.Errorf("%d items, at most %d", len(l.GetValues()), maxItems)
	}
	out := make([]string, 0, len(l.GetValues()))
	for _, s := range l.GetValues() {
		str, ok := s.GetKind().(*structpb.Value_StringValue)
		if !ok {
			return nil, errors.New("want strings")
		}
		if maxBytes > 0 && len(str.StringValue) > maxBytes {
			return nil, fmt.Errorf("%d bytes, at most %d", len(str.StringValue), maxBytes)
		}
		out = append(out, str.StringValue)
	}
	return out, nil
}

// StringValues returns vs as a list value.
func StringValues(vs []string) *structpb.Value {
	l := make([]*structpb.Value, len(vs))
	for i, s := range vs {
		l[i] = structpb.NewStringValue(s)
	}
	return structpb.NewListValue(&structpb.ListValue{Values: l})
}
