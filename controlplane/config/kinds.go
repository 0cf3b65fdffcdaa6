package config

import (
	"strings"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
	telemetry "istio.io/api/telemetry/v1alpha1"

	"github.com/strait-mesh/strait/controlplane/config/corev1"
	"github.com/strait-mesh/strait/controlplane/config/extensionsv1alpha1"
)

// API groups of the kinds this package decodes.
const (
	// Group is the API group of the networking kinds (VirtualService, DestinationRule, ...).
	Group = "networking.istio.io"
	// SecurityGroup is the API group of the security kinds (PeerAuthentication,
	// AuthorizationPolicy, RequestAuthentication).
	SecurityGroup = "security.istio.io"
	// TelemetryGroup is the API group of Telemetry.
	TelemetryGroup = "telemetry.istio.io"
	// ExtensionsGroup is the API group of Strait's own kinds (RateLimit).
	ExtensionsGroup = "extensions.strait.io"
)

// networkingVersions are the apiVersions of the networking kinds. v1 and v1beta1 are aliases of
// v1alpha3: all three decode into the istio.io/api networking/v1alpha3 messages.
var networkingVersions = []string{Group + "/v1", Group + "/v1beta1", Group + "/v1alpha3"}

// envoyFilterVersions are the apiVersions of EnvoyFilter: Istio serves it only as v1alpha3.
var envoyFilterVersions = []string{Group + "/v1alpha3"}

// securityVersions are the apiVersions of the security kinds. v1 is an alias of v1beta1: both
// decode into the istio.io/api security/v1beta1 messages.
var securityVersions = []string{SecurityGroup + "/v1", SecurityGroup + "/v1beta1"}

// telemetryVersions are the apiVersions of Telemetry. v1 is an alias of v1alpha1: both decode
// into the istio.io/api telemetry/v1alpha1 message.
var telemetryVersions = []string{TelemetryGroup + "/v1", TelemetryGroup + "/v1alpha1"}

// extensionsVersions are the apiVersions of Strait's own kinds (RateLimit).
var extensionsVersions = []string{ExtensionsGroup + "/v1alpha1"}

// coreVersions are the apiVersions of the Kubernetes core kinds (Secret): the core group has no
// name, so its apiVersion is the bare version.
var coreVersions = []string{"v1"}

// APIVersions lists every accepted apiVersion value, of any kind. Which of them a document may
// use depends on its kind: see APIVersionsFor.
var APIVersions = append(append(append(append(append([]string(nil), networkingVersions...), securityVersions...), telemetryVersions...), extensionsVersions...), coreVersions...)

// DefaultAPIVersion is the apiVersion of the networking kinds used when rendering objects that
// do not record one. DefaultAPIVersionFor gives it for any kind.
const DefaultAPIVersion = Group + "/v1"

// Kinds lists every kind this package decodes, in a stable order.
var Kinds = []Kind{VirtualService, DestinationRule, ServiceEntry, WorkloadEntry, WorkloadGroup, Sidecar, Gateway, EnvoyFilter, PeerAuthentication, AuthorizationPolicy, RequestAuthentication, Telemetry, RateLimit, Secret}

// kindInfo describes one kind of Kinds.
type kindInfo struct {
	group    string
	versions []string // accepted apiVersions; the first is the default
	newSpec  func() proto.Message
}

var kindInfos = map[Kind]kindInfo{
	VirtualService:        {Group, networkingVersions, func() proto.Message { return &networking.VirtualService{} }},
	DestinationRule:       {Group, networkingVersions, func() proto.Message { return &networking.DestinationRule{} }},
	ServiceEntry:          {Group, networkingVersions, func() proto.Message { return &networking.ServiceEntry{} }},
	WorkloadEntry:         {Group, networkingVersions, func() proto.Message { return &networking.WorkloadEntry{} }},
	WorkloadGroup:         {Group, networkingVersions, func() proto.Message { return &networking.WorkloadGroup{} }},
	Sidecar:               {Group, networkingVersions, func() proto.Message { return &networking.Sidecar{} }},
	Gateway:               {Group, networkingVersions, func() proto.Message { return &networking.Gateway{} }},
	EnvoyFilter:           {Group, envoyFilterVersions, func() proto.Message { return &networking.EnvoyFilter{} }},
	PeerAuthentication:    {SecurityGroup, securityVersions, func() proto.Message { return &security.PeerAuthentication{} }},
	AuthorizationPolicy:   {SecurityGroup, securityVersions, func() proto.Message { return &security.AuthorizationPolicy{} }},
	RequestAuthentication: {SecurityGroup, securityVersions, func() proto.Message { return &security.RequestAuthentication{} }},
	Telemetry:             {TelemetryGroup, telemetryVersions, func() proto.Message { return &telemetry.Telemetry{} }},
	RateLimit:             {ExtensionsGroup, extensionsVersions, func() proto.Message { return &extensionsv1alpha1.RateLimit{} }},
	Secret:                {"", coreVersions, func() proto.Message { return &corev1.Secret{} }},
}

// kindNames maps lower-case names, plurals and Istio's short names to kinds.
var kindNames = map[string]Kind{
	"virtualservice": VirtualService, "virtualservices": VirtualService, "vs": VirtualService,
	"destinationrule": DestinationRule, "destinationrules": DestinationRule, "dr": DestinationRule,
	"serviceentry": ServiceEntry, "serviceentries": ServiceEntry, "se": ServiceEntry,
	"workloadentry": WorkloadEntry, "workloadentries": WorkloadEntry, "we": WorkloadEntry,
	"workloadgroup": WorkloadGroup, "workloadgroups": WorkloadGroup, "wg": WorkloadGroup,
	"sidecar": Sidecar, "sidecars": Sidecar,
	"gateway": Gateway, "gateways": Gateway, "gw": Gateway,
	"envoyfilter": EnvoyFilter, "envoyfilters": EnvoyFilter,
	"peerauthentication": PeerAuthentication, "peerauthentications": PeerAuthentication, "pa": PeerAuthentication,
	"authorizationpolicy": AuthorizationPolicy, "authorizationpolicies": AuthorizationPolicy, "ap": AuthorizationPolicy,
	"requestauthentication": RequestAuthentication, "requestauthentications": RequestAuthentication, "ra": RequestAuthentication,
	"telemetry": Telemetry, "telemetries": Telemetry,
	"ratelimit": RateLimit, "ratelimits": RateLimit, "rl": RateLimit,
	"secret": Secret, "secrets": Secret,
}

// KindFor resolves a user-typed kind name as kubectl and istioctl do: case-insensitive, singular
// or plural, or a short name ("vs", "dr", "se", "we", "wg", "gw", "pa", "ap", "ra", "rl"). A trailing API group
// is accepted too when it is the kind's own (".networking.istio.io" for VirtualService,
// ".security.istio.io" for PeerAuthentication, ".telemetry.istio.io" for Telemetry,
// ".extensions.strait.io" for RateLimit).
func KindFor(name string) (Kind, bool) {
	n := strings.ToLower(strings.TrimSpace(name))
	if k, ok := kindNames[n]; ok {
		return k, true
	}
	for _, g := range []string{Group, SecurityGroup, TelemetryGroup, ExtensionsGroup} {
		if base, found := strings.CutSuffix(n, "."+g); found {
			if k, ok := kindNames[base]; ok && GroupFor(k) == g {
				return k, true
			}
		}
	}
	return "", false
}

// NewSpec returns a new, empty spec message for kind, or nil when the kind is unknown.
func NewSpec(k Kind) proto.Message {
	if info, ok := kindInfos[k]; ok {
		return info.newSpec()
	}
	return nil
}

// GroupFor returns the API group of kind k ("networking.istio.io", "security.istio.io",
// "telemetry.istio.io"), or ""
// when k is not one of Kinds or is of Kubernetes' core group (Secret).
func GroupFor(k Kind) string { return kindInfos[k].group }

// APIVersionsFor returns the apiVersions a document of kind k may use, or nil when k is not one
// of Kinds. The slice must not be modified.
func APIVersionsFor(k Kind) []string { return kindInfos[k].versions }

// DefaultAPIVersionFor returns the apiVersion used when rendering an object of kind k that does
// not record one ("networking.istio.io/v1", "security.istio.io/v1", "telemetry.istio.io/v1",
// "v1"), or "" for an unknown
// kind.
func DefaultAPIVersionFor(k Kind) string {
	if v := kindInfos[k].versions; len(v) > 0 {
		return v[0]
	}
	return ""
}

// validAPIVersionFor reports whether v is one of the apiVersions of kind k.
func validAPIVersionFor(k Kind, v string) bool {
	for _, a := range kindInfos[k].versions {
		if v == a {
			return true
		}
	}
	return false
}

// validAPIVersion reports whether v is one of APIVersions (the apiVersion of some kind).
func validAPIVersion(v string) bool {
	for _, a := range APIVersions {
		if v == a {
			return true
		}
	}
	return false
}

// knownKind reports whether k is one of Kinds (exact spelling).
func knownKind(k Kind) bool {
	_, ok := kindInfos[k]
	return ok
}

// apiGroup returns the group part of an apiVersion: "networking.istio.io" for
// "networking.istio.io/v1", "" for the core group ("v1").
func apiGroup(apiVersion string) string {
	g, _, found := strings.Cut(apiVersion, "/")
	if !found {
		return ""
	}
	return g
}
