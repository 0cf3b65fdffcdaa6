// Package config holds Strait's model of Istio configuration: the kinds it understands, the Object
// envelope around an istio.io/api spec, strict decoding from YAML, semantic validation, and the
// Source interface that config providers (files, the embedded store, Kubernetes) implement.
package config

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
)

// Kind is an Istio config kind, e.g. "VirtualService".
type Kind string

// Kinds of config handled by the control plane core: the networking.istio.io kinds, of
// security.istio.io PeerAuthentication, AuthorizationPolicy and RequestAuthentication,
// telemetry.istio.io Telemetry, and of
// Kubernetes' core/v1 Secret.
const (
	VirtualService  Kind = "VirtualService"
	DestinationRule Kind = "DestinationRule"
	ServiceEntry    Kind = "ServiceEntry"
	WorkloadEntry   Kind = "WorkloadEntry"
	WorkloadGroup   Kind = "WorkloadGroup"
	Sidecar         Kind = "Sidecar"
	Gateway         Kind = "Gateway"

	// EnvoyFilter (networking.istio.io/v1alpha3) has a *networkingv1alpha3.EnvoyFilter spec:
	// patches to the generated Envoy configuration (see validate_ef.go and DecodeEnvoyPatch).
	EnvoyFilter Kind = "EnvoyFilter"

	// PeerAuthentication (security.istio.io) has a *securityv1beta1.PeerAuthentication spec
	// (istio.io/api/security/v1beta1).
	PeerAuthentication Kind = "PeerAuthentication"

	// AuthorizationPolicy (security.istio.io) has a *securityv1beta1.AuthorizationPolicy spec;
	// see also DryRun and the other helpers of authz.go.
	AuthorizationPolicy Kind = "AuthorizationPolicy"

	// RequestAuthentication (security.istio.io) has a *securityv1beta1.RequestAuthentication
	// spec.
	RequestAuthentication Kind = "RequestAuthentication"

	// Telemetry (telemetry.istio.io) has a *telemetryv1alpha1.Telemetry spec
	// (istio.io/api/telemetry/v1alpha1); see telemetry.go for what its fields mean.
	Telemetry Kind = "Telemetry"

	// Secret (Kubernetes core "v1") has a *corev1.Secret spec (controlplane/config/corev1): the
	// TLS credentials that Gateway servers name with credentialName. Its data is never rendered
	// or logged (see MarshalJSON).
	Secret Kind = "Secret"
)

// Meta is the subset of Kubernetes ObjectMeta Strait keeps.
type Meta struct {
	Name              string            `json:"name"`
	Namespace         string            `json:"namespace,omitempty"`
	Labels            map[string]string `json:"labels,omitempty"`
	Annotations       map[string]string `json:"annotations,omitempty"`
	ResourceVersion   string            `json:"resourceVersion,omitempty"`
	Generation        int64             `json:"generation,omitempty"`
	CreationTimestamp time.Time         `json:"creationTimestamp,omitempty"`
}

// Object is one config object: its kind, metadata and typed spec (an istio.io/api message such as
// *networkingv1alpha3.VirtualService or *securityv1beta1.PeerAuthentication, or a
// *corev1.Secret). Objects are
// immutable once handed to a Source's consumers: never modify one in place, make a copy.
type Object struct {
	Kind       Kind
	APIVersion string // as written, e.g. "networking.istio.io/v1" or "security.istio.io/v1"
	Meta
	Spec proto.Message
	// Origin says where the object came from: a file path, "store" or "kubernetes".
	Origin string
	// Warnings are what Decode accepted but the user should hear about, such as a field Istio
	// removed from its API that was dropped (HTTPRoute's websocketUpgrade). `strait apply` and
	// `strait analyze` print them. They are not part of the object's content.
	Warnings []*Error
}

// Key identifies an object within a kind.
type Key struct {
	Kind      Kind
	Namespace string
	Name      string
}

func (k Key) String() string { return fmt.Sprintf("%s/%s/%s", k.Kind, k.Namespace, k.Name) }

// Key returns the object's key.
func (o *Object) Key() Key { return Key{Kind: o.Kind, Namespace: o.Namespace, Name: o.Name} }

// Source provides config objects. Implementations: the watched directory (config/file), the
// embedded bbolt store (config/embedded), Kubernetes informers (config/kube).
type Source interface {
	// List returns the accepted objects: for each object, the last version that passed validation.
	// The returned slice and objects must not be modified.
	List() []*Object
	// Errors returns the current errors for rejected documents (empty when all config is good).
	Errors() []error
	// Run watches for changes until ctx is done, calling onChange after each accepted or rejected
	// change. It returns nil when ctx is cancelled.
	Run(ctx context.Context, onChange func()) error
}
