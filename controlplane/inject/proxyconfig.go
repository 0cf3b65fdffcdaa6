package inject

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	meshconfig "istio.io/api/mesh/v1alpha1"
	"sigs.k8s.io/yaml"

	"github.com/strait-mesh/strait/controlplane/config"
)

// annotationProxyConfigFields are the ProxyConfig fields a pod's proxy.istio.io/config may set:
// the ones the injected pod spec carries out. Any other field is refused, since Istio would
// apply it to this pod's proxy and Strait would not.
var annotationProxyConfigFields = map[protoreflect.Name]bool{
	"hold_application_until_proxy_starts": true,
	"termination_drain_duration":          true,
	"proxy_metadata":                      true,
	"concurrency":                         true,
}

// maxProxyConfigAnnotation bounds the annotation's size (the API server bounds all annotations
// to 256 KiB together).
const maxProxyConfigAnnotation = 64 << 10

// proxyConfig is the pod's ProxyConfig: the mesh's defaultConfig with the pod's
// proxy.istio.io/config annotation (YAML or JSON) merged over it.
func proxyConfig(mesh *meshconfig.MeshConfig, annotation string) (*meshconfig.ProxyConfig, error) {
	pc := config.DefaultProxyConfig()
	if d := mesh.GetDefaultConfig(); d != nil {
		pc = proto.Clone(d).(*meshconfig.ProxyConfig)
	}
	if strings.TrimSpace(annotation) == "" {
		return pc, nil
	}
	const key = "proxy.istio.io/config"
	if len(annotation) > maxProxyConfigAnnotation {
		return nil, &annotationError{key, fmt.Sprintf("%d bytes, more than %d", len(annotation), maxProxyConfigAnnotation)}
	}
	js, err := yaml.YAMLToJSONStrict([]byte(annotation))
	if err != nil {
		return nil, &annotationError{key, fmt.Sprintf("parsing YAML: %v", err)}
	}
	user := &meshconfig.ProxyConfig{}
	if err := protojson.Unmarshal(js, user); err != nil {
		return nil, &annotationError{key, fmt.Sprintf("decoding ProxyConfig: %v", err)}
	}
	var bad []string
	user.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if !annotationProxyConfigFields[fd.Name()] {
			bad = append(bad, fd.JSONName())
		}
		return true
	})
	if len(bad) > 0 {
		return nil, &annotationError{key, fmt.Sprintf("field %s is not supported per pod by Strait yet (only holdApplicationUntilProxyStarts, terminationDrainDuration, proxyMetadata, concurrency)", strings.Join(bad, ", "))}
	}
	if d := user.GetTerminationDrainDuration(); d != nil && (d.CheckValid() != nil || d.AsDuration() < 0) {
		return nil, &annotationError{key, "terminationDrainDuration: not a valid non-negative duration"}
	}
	if n := user.GetConcurrency(); n != nil && n.GetValue() < 0 {
		return nil, &annotationError{key, "concurrency: negative"}
	}
	for k := range user.GetProxyMetadata() {
		if !envName(k) {
			return nil, &annotationError{key, fmt.Sprintf("proxyMetadata: %q is not an environment variable name", k)}
		}
	}
	proto.Merge(pc, user)
	return pc, nil
}

func envName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		if !(c == '_' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}
