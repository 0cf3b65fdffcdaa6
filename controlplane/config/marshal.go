package config

import (
	"encoding/json"
	"fmt"
	"maps"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/strait-mesh/strait/controlplane/config/corev1"
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

// metaOut is Meta as rendered: its creation timestamp in RFC 3339 seconds, omitted when zero
// (this field hides Meta's in JSON, and keeps its place, last).
type metaOut struct {
	Meta
	CreationTimestamp string `json:"creationTimestamp,omitempty"`
}

// MarshalJSON renders o as an Istio-shaped Kubernetes object (apiVersion, kind, metadata, spec),
// indented, as `strait get -o json` prints it. The output decodes back to an equal object, except
// for a Secret: its data is redacted (see redactSecret), and so it is safe to serve on read-only
// endpoints.
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

// MarshalYAML renders o as Istio-shaped YAML, as `strait get -o yaml` prints it. A Secret's data
// is redacted, as in MarshalJSON.
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

// toEnvelope returns the rendered form of o: an *envelope, or a *secretEnvelope for a Secret.
func toEnvelope(o *Object) (any, error) {
	if o == nil {
		return nil, fmt.Errorf("encoding object: nil object")
	}
	if o.Spec == nil {
		return nil, fmt.Errorf("encoding %s: nil spec", o.Key())
	}
	if s, ok := o.Spec.(*corev1.Secret); ok {
		return redactSecret(o, s), nil
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
	return &envelope{APIVersion: renderedAPIVersion(o), Kind: o.Kind, Metadata: renderedMeta(o, o.Annotations), Spec: spec}, nil
}

func renderedAPIVersion(o *Object) string {
	apiVersion := o.APIVersion
	if apiVersion == "" {
		apiVersion = DefaultAPIVersionFor(o.Kind)
	}
	if apiVersion == "" {
		apiVersion = DefaultAPIVersion
	}
	return apiVersion
}

func renderedMeta(o *Object, annotations map[string]string) metaOut {
	m := metaOut{Meta: Meta{
		Name: o.Name, Namespace: o.Namespace, Labels: o.Labels, Annotations: annotations,
		ResourceVersion: o.ResourceVersion, Generation: o.Generation,
	}}
	if !o.CreationTimestamp.IsZero() {
		m.CreationTimestamp = o.CreationTimestamp.UTC().Format(time.RFC3339)
	}
	return m
}

// secretEnvelope is the rendered form of a Secret, Kubernetes' shape with its data redacted.
type secretEnvelope struct {
	APIVersion string            `json:"apiVersion"`
	Kind       Kind              `json:"kind"`
	Metadata   metaOut           `json:"metadata"`
	Type       string            `json:"type,omitempty"`
	Immutable  bool              `json:"immutable,omitempty"`
	Data       map[string]string `json:"data,omitempty"`
}

// lastAppliedAnnotation is where kubectl keeps the last applied object, a Secret's data
// included.
const lastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"

// redactSecret renders a Secret for people and read-only endpoints: every data key with its size
// in place of its value ("[redacted: 1164 bytes]", as `kubectl describe secret` shows it), and
// kubectl's last-applied-configuration annotation, which holds the data too, redacted. Decoding
// the output fails with a message that says why, so that it is never applied by mistake.
func redactSecret(o *Object, s *corev1.Secret) *secretEnvelope {
	annotations := o.Annotations
	if _, ok := annotations[lastAppliedAnnotation]; ok {
		annotations = maps.Clone(annotations)
		annotations[lastAppliedAnnotation] = redactedPrefix + "]"
	}
	env := &secretEnvelope{APIVersion: renderedAPIVersion(o), Kind: o.Kind, Metadata: renderedMeta(o, annotations),
		Type: s.GetType(), Immutable: s.GetImmutable()}
	if len(s.GetData()) > 0 {
		env.Data = make(map[string]string, len(s.GetData()))
		for k, v := range s.GetData() {
			env.Data[k] = fmt.Sprintf("%s: %d bytes]", redactedPrefix, len(v))
		}
	}
	return env
}
