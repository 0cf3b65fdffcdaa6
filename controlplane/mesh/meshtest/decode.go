// Package meshtest decodes Istio YAML into config objects for tests of the mesh and translation
// packages. It stands in for config.Decode (strictness aside) so those tests do not depend on the
// decoder's progress; switch Decode to config.Decode once it exists.
package meshtest

import (
	"encoding/json"
	"fmt"
	"regexp"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	"sigs.k8s.io/yaml"

	"github.com/strait-mesh/strait/controlplane/config"
)

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// Documents splits multi-document YAML into documents, dropping empty ones.
func Documents(data []byte) [][]byte {
	var out [][]byte
	for _, d := range docSep.Split(string(data), -1) {
		if j, err := yaml.YAMLToJSON([]byte(d)); err == nil && string(j) == "null" {
			continue
		}
		out = append(out, []byte(d))
	}
	return out
}

type envelope struct {
	APIVersion string          `json:"apiVersion"`
	Kind       string          `json:"kind"`
	Metadata   config.Meta     `json:"metadata"`
	Spec       json.RawMessage `json:"spec"`
}

// Decode decodes Istio networking objects from multi-document YAML. Objects without a creation
// timestamp get increasing timestamps in document order, so "oldest first" is document order.
func Decode(origin string, data []byte) ([]*config.Object, error) {
	var out []*config.Object
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, d := range Documents(data) {
		j, err := yaml.YAMLToJSON(d)
		if err != nil {
			return nil, fmt.Errorf("decoding %s document %d: %w", origin, i, err)
		}
		var env envelope
		if err := json.Unmarshal(j, &env); err != nil {
			return nil, fmt.Errorf("decoding %s document %d: %w", origin, i, err)
		}
		spec, err := newSpec(config.Kind(env.Kind))
		if err != nil {
			return nil, fmt.Errorf("decoding %s document %d: %w", origin, i, err)
		}
		if len(env.Spec) > 0 {
			if err := protojson.Unmarshal(env.Spec, spec); err != nil {
				return nil, fmt.Errorf("decoding %s document %d (%s %s): %w", origin, i, env.Kind, env.Metadata.Name, err)
			}
		}
		if env.Metadata.Namespace == "" {
			env.Metadata.Namespace = "default"
		}
		if env.Metadata.CreationTimestamp.IsZero() {
			env.Metadata.CreationTimestamp = base.Add(time.Duration(i) * time.Second)
		}
		out = append(out, &config.Object{Kind: config.Kind(env.Kind), APIVersion: env.APIVersion,
			Meta: env.Metadata, Spec: spec, Origin: origin})
	}
	return out, nil
}

func newSpec(k config.Kind) (proto.Message, error) {
	switch k {
	case config.VirtualService:
		return &networking.VirtualService{}, nil
	case config.DestinationRule:
		return &networking.DestinationRule{}, nil
	case config.ServiceEntry:
		return &networking.ServiceEntry{}, nil
	case config.WorkloadEntry:
		return &networking.WorkloadEntry{}, nil
	case config.WorkloadGroup:
		return &networking.WorkloadGroup{}, nil
	case config.Sidecar:
		return &networking.Sidecar{}, nil
	case config.Gateway:
		return &networking.Gateway{}, nil
	}
	return nil, fmt.Errorf("unknown kind %q", k)
}
