package config

import (
	"strings"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
)

// Group is the API group of every kind in this package.
const Group = "networking.istio.io"

// APIVersions lists the accepted apiVersion values. v1 and v1beta1 are aliases of v1alpha3: all
// three decode into the istio.io/api networking/v1alpha3 messages.
var APIVersions = []string{Group + "/v1", Group + "/v1beta1", Group + "/v1alpha3"}

// DefaultAPIVersion is the apiVersion used when rendering objects that do not record one.
const DefaultAPIVersion = Group + "/v1"

// Kinds lists every kind this package decodes, in a stable order.
var Kinds = []Kind{VirtualService, DestinationRule, ServiceEntry, WorkloadEntry, WorkloadGroup, Sidecar, Gateway}

// kindNames maps lower-case names, plurals and Istio's short names to kinds.
var kindNames = map[string]Kind{
	"virtualservice": VirtualService, "virtualservices": VirtualService, "vs": VirtualService,
	"destinationrule": DestinationRule, "destinationrules": DestinationRule, "dr": DestinationRule,
	"serviceentry": ServiceEntry, "serviceentries": ServiceEntry, "se": ServiceEntry,
	"workloadentry": WorkloadEntry, "workloadentries": WorkloadEntry, "we": WorkloadEntry,
	"workloadgroup": WorkloadGroup, "workloadgroups": WorkloadGroup, "wg": WorkloadGroup,
	"sidecar": Sidecar, "sidecars": Sidecar,
	"gateway": Gateway, "gateways": Gateway, "gw": Gateway,
}

// KindFor resolves a user-typed kind name as kubectl and istioctl do: case-insensitive, singular
// or plural, or a short name ("vs", "dr", "se", "we", "wg", "gw"). A trailing API group
// (".networking.istio.io") is accepted too.
func KindFor(name string) (Kind, bool) {
	n := strings.ToLower(strings.TrimSpace(name))
	n = strings.TrimSuffix(n, "."+Group)
	k, ok := kindNames[n]
	return k, ok
}

// NewSpec returns a new, empty spec message for kind, or nil when the kind is unknown.
func NewSpec(k Kind) proto.Message {
	switch k {
	case VirtualService:
		return &networking.VirtualService{}
	case DestinationRule:
		return &networking.DestinationRule{}
	case ServiceEntry:
		return &networking.ServiceEntry{}
	case WorkloadEntry:
		return &networking.WorkloadEntry{}
	case WorkloadGroup:
		return &networking.WorkloadGroup{}
	case Sidecar:
		return &networking.Sidecar{}
	case Gateway:
		return &networking.Gateway{}
	}
	return nil
}

// validAPIVersion reports whether v is one of APIVersions.
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
	return NewSpec(k) != nil
}
