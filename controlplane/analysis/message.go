// Package analysis runs Istio's configuration analyzers over a mesh snapshot: references to hosts,
// subsets and gateways that do not exist, VirtualServices and DestinationRules that conflict,
// Gateways that select no workload, port names without a protocol, Sidecars that select the same
// workload, and deprecated fields. Each finding is a Message with Istio's code, name and level,
// printed in the line shape of `istioctl analyze`:
//
//	Error [IST0101] (VirtualService default/reviews file.yaml:12) Referenced host+subset in destinationrule not found: "reviews+v9"
//
// `strait analyze` runs it offline on files and straitd runs it on every snapshot it serves (see
// /debug/configz), over the same mesh.Snapshot, so that both agree.
package analysis

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/strait-mesh/strait/controlplane/config"
)

// Level is how severe a Message is: Error, Warning or Info, as Istio's analyzers say.
type Level int

// Levels, most severe first.
const (
	Error Level = iota + 1
	Warning
	Info
)

// String returns Istio's name of the level: "Error", "Warning" or "Info".
func (l Level) String() string {
	switch l {
	case Error:
		return "Error"
	case Warning:
		return "Warning"
	case Info:
		return "Info"
	}
	return "Unknown"
}

// ParseLevel parses a level name, case-insensitively.
func ParseLevel(s string) (Level, error) {
	switch strings.ToLower(s) {
	case "error":
		return Error, nil
	case "warning", "warn":
		return Warning, nil
	case "info":
		return Info, nil
	}
	return 0, fmt.Errorf("unknown level %q (want Error, Warning or Info)", s)
}

// MarshalJSON renders the level as its name.
func (l Level) MarshalJSON() ([]byte, error) { return json.Marshal(l.String()) }

// UnmarshalJSON parses a level name.
func (l *Level) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("decoding level: %w", err)
	}
	v, err := ParseLevel(s)
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// Type is one kind of message: Istio's code ("IST0101"), name ("ReferencedResourceNotFound"),
// level and message template (a fmt format).
type Type struct {
	Code     string
	Name     string
	Level    Level
	Template string
}

// The message types the analyzers report. The IST codes, names, levels and templates are Istio's
// (https://istio.io/latest/docs/reference/config/analysis/); STR codes are Strait's own, for
// findings Istio has no code for.
var (
	// Deprecated (IST0002): a field that Istio's API marks deprecated is set.
	Deprecated = Type{"IST0002", "Deprecated", Warning, "Deprecated: %s"}
	// ReferencedResourceNotFound (IST0101): a host, subset, gateway or selector that is
	// referenced does not exist.
	ReferencedResourceNotFound = Type{"IST0101", "ReferencedResourceNotFound", Error, "Referenced %s not found: %q"}
	// ConflictingMeshGatewayVirtualServiceHosts (IST0109): several VirtualServices bound to the
	// mesh gateway define one host.
	ConflictingMeshGatewayVirtualServiceHosts = Type{"IST0109", "ConflictingMeshGatewayVirtualServiceHosts", Error,
		"The VirtualServices %s associated with mesh gateway define the same host %s which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource."}
	// ConflictingSidecarWorkloadSelectors (IST0110): several Sidecars select one workload.
	ConflictingSidecarWorkloadSelectors = Type{"IST0110", "ConflictingSidecarWorkloadSelectors", Error,
		"The Sidecars %v in namespace %q select the same workload pod %q, which can lead to undefined behavior."}
	// MultipleSidecarsWithoutWorkloadSelectors (IST0111): several Sidecars of one namespace
	// have no workload selector.
	MultipleSidecarsWithoutWorkloadSelectors = Type{"IST0111", "MultipleSidecarsWithoutWorkloadSelectors", Error,
		"The Sidecars %v in namespace %q have no workload selector, which can lead to undefined behavior."}
	// VirtualServiceDestinationPortSelectorRequired (IST0112): a gateway VirtualService routes
	// to a service with several ports without naming one.
	VirtualServiceDestinationPortSelectorRequired = Type{"IST0112", "VirtualServiceDestinationPortSelectorRequired", Error,
		"This VirtualService routes to a service %q that exposes multiple ports %v. Specifying a port in the destination is required to disambiguate."}
	// PortNameIsNotUnderNamingConvention (IST0118): a port without a protocol whose name does
	// not say one, so that the protocol is detected at run time.
	PortNameIsNotUnderNamingConvention = Type{"IST0118", "PortNameIsNotUnderNamingConvention", Info,
		"Port name %s (port: %d, targetPort: %s) doesn't follow the naming convention of Istio port."}
	// InvalidTelemetryProvider (IST0157): a Telemetry accessLogging entry names no provider and
	// MeshConfig has no default access log provider, so the entry is ignored. Istio's code, name
	// and level; the text adds what that means and the fix.
	InvalidTelemetryProvider = Type{"IST0157", "InvalidTelemetryProvider", Warning,
		"The Telemetry %s in namespace %q with empty providers will be ignored: MeshConfig defaultProviders.accessLogging is empty, so it selects no access log provider (MeshConfig accessLogFile, if set, keeps logging). Name a provider, such as \"envoy\"."}
	// UnknownDestinationRuleHost (IST0174): a DestinationRule's host matches no service.
	UnknownDestinationRuleHost = Type{"IST0174", "UnknownDestinationRuleHost", Warning,
		"The host %s defined in the DestinationRule does not match any services in the mesh."}
	// ConflictingDestinationRules (STR0001, Strait's own: Istio has no code for it): several
	// DestinationRules for one host in one namespace are merged, and what the newer ones repeat
	// (a traffic policy, a subset name) is ignored.
	ConflictingDestinationRules = Type{"STR0001", "ConflictingDestinationRules", Warning,
		"The DestinationRules %v in namespace %q define the same host %s; they are merged and this rule's %s ignored, as the oldest rule's win. This can be fixed by merging them into a single resource."}
)

// Types lists every message type the analyzers report, by code.
var Types = []Type{
	Deprecated, ReferencedResourceNotFound, ConflictingMeshGatewayVirtualServiceHosts,
	ConflictingSidecarWorkloadSelectors, MultipleSidecarsWithoutWorkloadSelectors,
	VirtualServiceDestinationPortSelectorRequired, PortNameIsNotUnderNamingConvention,
	InvalidTelemetryProvider, UnknownDestinationRuleHost, ConflictingDestinationRules,
}

// DocumentationURL returns the page that explains the message type (Istio's, for IST codes), or
// "" for Strait's own codes.
func (t Type) DocumentationURL() string {
	if !strings.HasPrefix(t.Code, "IST") {
		return ""
	}
	return "https://istio.io/latest/docs/reference/config/analysis/" + strings.ToLower(t.Code) + "/"
}

// Resource names the object a message is about.
type Resource struct {
	Kind      config.Kind `json:"kind"`
	Namespace string      `json:"namespace"`
	Name      string      `json:"name"`
}

// String returns "Kind namespace/name".
func (r Resource) String() string { return fmt.Sprintf("%s %s/%s", r.Kind, r.Namespace, r.Name) }

// Message is one finding of an analyzer about one config object.
type Message struct {
	// Code, Name and Level are those of the message's Type.
	Code  string `json:"code"`
	Name  string `json:"name"`
	Level Level  `json:"level"`
	// Resource is the object the message is about.
	Resource Resource `json:"resource"`
	// Origin is where the object came from (a file path, "store", "kubernetes"); Line is the
	// 1-based line of Field in Origin when it is a file that could be read, else 0.
	Origin string `json:"origin,omitempty"`
	Line   int    `json:"line,omitempty"`
	// Field is the path of the offending field, e.g. "spec.http[0].route[0].destination.subset".
	Field string `json:"field,omitempty"`
	// Text is the message proper, from the type's template.
	Text string `json:"message"`
	// DocumentationURL is the page that explains the message type, when there is one.
	DocumentationURL string `json:"documentationUrl,omitempty"`
}

// newMessage builds a message of type t about o at field, formatting t's template with args.
func newMessage(t Type, o *config.Object, field string, args ...any) Message {
	return Message{
		Code: t.Code, Name: t.Name, Level: t.Level,
		Resource: Resource{Kind: o.Kind, Namespace: o.Namespace, Name: o.Name},
		Origin:   o.Origin, Field: field,
		Text:             fmt.Sprintf(t.Template, args...),
		DocumentationURL: t.DocumentationURL(),
	}
}

// Reference returns where the object is: "file.yaml:12" when the line is known, else "".
func (m Message) Reference() string {
	if m.Line <= 0 || m.Origin == "" {
		return ""
	}
	return m.Origin + ":" + strconv.Itoa(m.Line)
}

// String formats the message as istioctl analyze prints it:
// "Error [IST0101] (VirtualService default/reviews file.yaml:12) Referenced ...".
func (m Message) String() string {
	res := m.Resource.String()
	if ref := m.Reference(); ref != "" {
		res += " " + ref
	}
	return fmt.Sprintf("%s [%s] (%s) %s", m.Level, m.Code, res, m.Text)
}

// Sort orders messages by resource (kind, namespace, name), then line, code and text, and drops
// exact duplicates. It returns the sorted slice.
func Sort(msgs []Message) []Message {
	sort.SliceStable(msgs, func(i, j int) bool {
		a, b := msgs[i], msgs[j]
		if a.Resource.Kind != b.Resource.Kind {
			return a.Resource.Kind < b.Resource.Kind
		}
		if a.Resource.Namespace != b.Resource.Namespace {
			return a.Resource.Namespace < b.Resource.Namespace
		}
		if a.Resource.Name != b.Resource.Name {
			return a.Resource.Name < b.Resource.Name
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		if a.Code != b.Code {
			return a.Code < b.Code
		}
		return a.Text < b.Text
	})
	out := msgs[:0]
	for _, m := range msgs {
		if len(out) > 0 && m == out[len(out)-1] {
			continue
		}
		out = append(out, m)
	}
	return out
}

// Count returns how many messages have level l.
func Count(msgs []Message, l Level) int {
	n := 0
	for _, m := range msgs {
		if m.Level == l {
			n++
		}
	}
	return n
}
