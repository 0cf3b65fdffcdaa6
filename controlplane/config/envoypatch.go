package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/structpb"
	networking "istio.io/api/networking/v1alpha3"
)

// An EnvoyFilter patch's value is Envoy configuration written as a google.protobuf.Struct: the
// JSON form of the Envoy message that its applyTo names (a Listener, an HttpFilter, a Route, a
// Cluster, ...). DecodeEnvoyPatch turns it into that message as strictly as the Istio kinds are
// decoded: unknown fields, values of the wrong type and unknown typed_config types are errors
// naming their path. Typed configs written as a TypedStruct (udpa.type.v1.TypedStruct or
// xds.type.v3.TypedStruct, whose type_url names the real message and whose value is its JSON)
// become the real typed message, as Envoy would decode them.

// Type URLs of the TypedStruct wrappers.
const (
	typedStructUDPA = "type.googleapis.com/udpa.type.v1.TypedStruct"
	typedStructXDS  = "type.googleapis.com/xds.type.v3.TypedStruct"
)

// EnvoyPatchMessage returns a new, empty Envoy message of the kind a patch value of applyTo
// holds, or nil when applyTo has none that Strait decodes (EXTENSION_CONFIG, BOOTSTRAP,
// LISTENER_FILTER, INVALID).
func EnvoyPatchMessage(applyTo networking.EnvoyFilter_ApplyTo) proto.Message {
	switch applyTo {
	case networking.EnvoyFilter_LISTENER:
		return &listenerv3.Listener{}
	case networking.EnvoyFilter_FILTER_CHAIN:
		return &listenerv3.FilterChain{}
	case networking.EnvoyFilter_NETWORK_FILTER:
		return &listenerv3.Filter{}
	case networking.EnvoyFilter_HTTP_FILTER:
		return &hcmv3.HttpFilter{}
	case networking.EnvoyFilter_ROUTE_CONFIGURATION:
		return &routev3.RouteConfiguration{}
	case networking.EnvoyFilter_VIRTUAL_HOST:
		return &routev3.VirtualHost{}
	case networking.EnvoyFilter_HTTP_ROUTE:
		return &routev3.Route{}
	case networking.EnvoyFilter_CLUSTER:
		return &clusterv3.Cluster{}
	}
	return nil
}

// DecodeEnvoyPatch decodes an EnvoyFilter patch value into the Envoy message of applyTo (see
// EnvoyPatchMessage). Errors name the path inside the value ("value.typed_config.foo"); all of
// them are returned, joined. A nil value decodes to the empty message. It never panics and is
// safe for concurrent use.
func DecodeEnvoyPatch(applyTo networking.EnvoyFilter_ApplyTo, value *structpb.Struct) (proto.Message, error) {
	msg, errs := decodeEnvoyPatch(applyTo, value, "value")
	if len(errs) > 0 {
		out := make([]error, len(errs))
		for i, e := range errs {
			out[i] = fmt.Errorf("%s: %s", e.path, e.msg)
		}
		return nil, errors.Join(out...)
	}
	return msg, nil
}

// decodeEnvoyPatch is DecodeEnvoyPatch with errors as fieldErrs under path.
func decodeEnvoyPatch(applyTo networking.EnvoyFilter_ApplyTo, value *structpb.Struct, path string) (msg proto.Message, errs []fieldErr) {
	defer func() {
		if r := recover(); r != nil {
			msg, errs = nil, []fieldErr{{path: path, msg: fmt.Sprintf("internal error decoding the patch value: %v", r)}}
		}
	}()
	msg = EnvoyPatchMessage(applyTo)
	if msg == nil {
		return nil, []fieldErr{{path: path, msg: fmt.Sprintf("applyTo %s has no patch value Strait decodes", applyTo)}}
	}
	if value == nil {
		return msg, nil
	}
	js, err := protojson.Marshal(value)
	if err != nil {
		return nil, []fieldErr{{path: path, msg: fmt.Sprintf("encoding the value: %v", err)}}
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return nil, []fieldErr{{path: path, msg: fmt.Sprintf("parsing the value: %v", err)}}
	}
	tree = expandTypedStructs(integralNumbers(tree), 0)
	w := &walker{maxDepth: MaxDepth, anyTypes: true}
	tree = w.message(msg.ProtoReflect().Descriptor(), tree, path, 1)
	if len(w.errs) > 0 {
		return nil, w.errs
	}
	js, err = json.Marshal(tree)
	if err != nil {
		return nil, []fieldErr{{path: path, msg: fmt.Sprintf("encoding the value: %v", err)}}
	}
	if err := protojson.Unmarshal(js, msg); err != nil {
		// The walk should have caught everything protojson rejects.
		return nil, []fieldErr{{path: path, msg: fmt.Sprintf("decoding as %s: %v", msg.ProtoReflect().Descriptor().FullName(), err)}}
	}
	return msg, nil
}

// anyValue checks a google.protobuf.Any in its JSON form: "@type" names a message known to the
// global registry, and the other fields are that message's (or, for a well-known type with a
// special JSON form, "value" holds it).
func (w *walker) anyValue(v any, path string, depth int) any {
	obj, ok := v.(map[string]any)
	if !ok {
		w.add(path, "expected an object with \"@type\", got %s", jsonType(v))
		return v
	}
	t, _ := obj["@type"].(string)
	if t == "" {
		w.add(join(path, "@type"), "\"@type\" is required: the type URL of the typed config, like \"type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit\"")
		return v
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(t)
	if err != nil {
		w.add(join(path, "@type"), "unknown type %s: not an Envoy extension Strait knows, so strait-proxy does not implement it", quoteShort(t))
		return v
	}
	md := mt.Descriptor()
	if wkt := wellKnown(md.FullName()); wkt != nil {
		for k := range obj {
			if k != "@type" && k != "value" {
				w.add(join(path, k), "unknown field %q in %s (its JSON form is {\"@type\", \"value\"})", k, md.FullName())
			}
		}
		if val, ok := obj["value"]; ok {
			obj["value"] = wkt(w, md, val, join(path, "value"), depth+1)
		}
		return obj
	}
	delete(obj, "@type")
	w.message(md, obj, path, depth+1)
	obj["@type"] = t
	return obj
}

// expandTypedStructs replaces every TypedStruct whose type_url names a message known to the
// global registry with that message in its JSON Any form ({"@type": type_url, ...value}), as
// Envoy decodes a TypedStruct. A TypedStruct of an unknown type is left as it is (strait-proxy
// decides: it reads Istio's stats plugin config this way).
func expandTypedStructs(v any, depth int) any {
	if depth > MaxDepth {
		return v
	}
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = expandTypedStructs(e, depth+1)
		}
		if t, _ := x["@type"].(string); t != typedStructUDPA && t != typedStructXDS {
			return x
		}
		url, _ := x["type_url"].(string)
		if url == "" {
			url, _ = x["typeUrl"].(string)
		}
		if _, err := protoregistry.GlobalTypes.FindMessageByURL(url); err != nil {
			return x
		}
		for k := range x {
			if k != "@type" && k != "type_url" && k != "typeUrl" && k != "value" {
				return x // not a well-formed TypedStruct: the walk reports the field
			}
		}
		val, ok := x["value"].(map[string]any)
		if !ok && x["value"] != nil {
			return x
		}
		out := make(map[string]any, len(val)+1)
		for k, e := range val {
			out[k] = e
		}
		out["@type"] = url
		return out
	case []any:
		for i, e := range x {
			x[i] = expandTypedStructs(e, depth+1)
		}
	}
	return v
}

// integralNumbers rewrites numbers with an integral value written in exponent or fraction form
// ("1e+07", "100.0", as google.protobuf.Struct renders its doubles) as plain integers, so that
// integer fields accept them.
func integralNumbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		s := string(x)
		if !strings.ContainsAny(s, ".eE") {
			return x
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
			return x
		}
		return json.Number(strconv.FormatInt(int64(f), 10))
	case map[string]any:
		for k, e := range x {
			x[k] = integralNumbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = integralNumbers(e)
		}
	}
	return v
}
