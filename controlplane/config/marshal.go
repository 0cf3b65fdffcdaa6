package config

import (
	"encoding/json"
	"fmt"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"
)

// marshalOptions renders specs as Istio and kubectl do: camelCase names, enums by name, zero
// values omitted.
var marshalOptions = protojson.MarshalOptions{UseEnumNumbers: false, UseProtoNames: false}

// envelope is the rendered form of an Object. Field order follows kubectl.
type envelope struct {
	APIVersion string          `json:"apiVersion"`
	Kind       Kind            `json:"kind"`
	Metadata   metaOut         `json:"metadata"`
	Spec       json.RawMessage `json:"spec"`
}

type metaOut struct {
	Name              string            `json:"name"`
	Namespace         string            `json:"namespace,omitempty"`
	Labels            map[string]string `json:"labels,omitempty"`
	Annotations       map[string]string `json:"annotations,omitempty"`
	ResourceVersion   string            `json:"resourceVersion,omitempty"`
	Generation        int64             `json:"generation,omitempty"`
	CreationTimestamp string            `json:"creationTimestamp,omitempty"`
}

// MarshalJSON renders o as an Istio-shaped Kubernetes object (apiVersion, kind, metadata, spec),
// indented, as `strait get -o json` prints it. The output decodes back to an equal object.
func MarshalJSON(o *Object) ([]byte, error) {
	env, err := toEnvelope(o)
	if err != nil {
		return nil, err
	}
	out, err := json.MarshalIndent(env, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", o.Key(), err)
	}
	return append(out, '\n'), nil
}

// MarshalYAML renders o as Istio-shaped YAML, as `strait get -o yaml` prints it.
func MarshalYAML(o *Object) ([]byte, error) {
	env, err := toEnvelope(o)
	if err != nil {
		return nil, err
	}
	js, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", o.Key(), err)
	}
	out, err := yaml.JSONToYAML(js)
	if err != nil {
		return nil, fmt.Errorf("converting %s to YAML: %w", o.Key(), err)
	}
	return out, nil
}

func toEnvelope(o *Object) (*envelope, error) {
	if o == nil {
		return nil, fmt.Errorf("encoding object: nil object")
	}
	if o.Spec == nil {
		return nil, fmt.Errorf("encoding %s: nil spec", o.Key())
	}
	spec, err := marshalOptions.Marshal(o.Spec)
	if err != nil {
		return nil, fmt.Errorf("encoding spec of %s: %w", o.Key(), err)
	}
	// protojson output is randomly spaced; re-encode it compactly for stable output.
	var compact any
	if err := json.Unmarshal(spec, &compact); err != nil {
		return nil, fmt.Errorf("encoding spec of %s: %w", o.Key(), err)
	}
	spec, err = json.Marshal(compact)
	if err != nil {
		return nil, fmt.Errorf("encoding spec of %s: %w", o.Key(), err)
	}
	apiVersion := o.APIVersion
	if apiVersion == "" {
		apiVersion = DefaultAPIVersionFor(o.Kind)
	}
	if apiVersion == "" {
		apiVersion = DefaultAPIVersion
	}
	m := metaOut{
		Name: o.Name, Namespace: o.Namespace, Labels: o.Labels, Annotations: o.Annotations,
		ResourceVersion: o.ResourceVersion, Generation: o.Generation,
	}
	if !o.CreationTimestamp.IsZero() {
		m.CreationTimestamp = o.CreationTimestamp.UTC().Format(time.RFC3339)
	}
	return &envelope{APIVersion: apiVersion, Kind: o.Kind, Metadata: m, Spec: spec}, nil
}
