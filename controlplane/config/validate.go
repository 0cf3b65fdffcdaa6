package config

import (
	"fmt"
	"regexp/syntax"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
	telemetry "istio.io/api/telemetry/v1alpha1"

	"github.com/strait-mesh/strait/controlplane/config/corev1"
	"github.com/strait-mesh/strait/controlplane/config/extensionsv1alpha1"
)

// Validate checks o semantically, with rules at least as strict as Istio's validation for its
// kind. It returns nil, or an error joining one *Error per problem (use Errors to list them);
// each names o's origin, kind, namespace, name and the field path. It does not modify o and
// never panics.
func Validate(o *Object) (err error) {
	if o == nil {
		return &Error{Msg: "nil object"}
	}
	defer func() {
		if r := recover(); r != nil {
			err = errFor(o, "", fmt.Sprintf("internal error validating: %v", r))
		}
	}()
	var fe fieldErrs
	if o.Name == "" {
		fe.add("metadata.name", "name is required")
	} else if !isDNS1123Subdomain(o.Name) {
		fe.add("metadata.name", "invalid name %s: %s", quoteShort(o.Name), dns1123SubdomainMsg)
	}
	if !isDNS1123Label(o.Namespace) {
		fe.add("metadata.namespace", "invalid namespace %s: %s", quoteShort(o.Namespace), dns1123LabelMsg)
	}
	validateLabels(&fe, "metadata.labels", o.Labels)
	validateAnnotations(&fe, "metadata.annotations", o.Annotations)
	if !knownKind(o.Kind) {
		if o.APIVersion != "" && !validAPIVersion(o.APIVersion) {
			fe.add("apiVersion", "unsupported apiVersion %s", quoteShort(o.APIVersion))
		}
		fe.add("kind", "unsupported kind %s", quoteShort(string(o.Kind)))
		return fe.join(o)
	}
	if o.APIVersion != "" && !validAPIVersionFor(o.Kind, o.APIVersion) {
		fe.add("apiVersion", "unsupported apiVersion %s", quoteShort(o.APIVersion))
	}
	if o.Spec == nil || !o.Spec.ProtoReflect().IsValid() {
		fe.add("spec", "spec is required")
		return fe.join(o)
	}
	switch spec := o.Spec.(type) {
	case *networking.VirtualService:
		if o.Kind == VirtualService {
			validateVirtualService(&fe, spec)
		}
	case *networking.DestinationRule:
		if o.Kind == DestinationRule {
			validateDestinationRule(&fe, spec)
		}
	case *networking.ServiceEntry:
		if o.Kind == ServiceEntry {
			validateServiceEntry(&fe, spec)
		}
	case *networking.WorkloadEntry:
		if o.Kind == WorkloadEntry {
			validateWorkloadEntry(&fe, "spec", spec, false)
		}
	case *networking.WorkloadGroup:
		if o.Kind == WorkloadGroup {
			validateWorkloadGroup(&fe, spec)
		}
	case *networking.Sidecar:
		if o.Kind == Sidecar {
			validateSidecar(&fe, spec)
		}
	case *networking.Gateway:
		if o.Kind == Gateway {
			validateGateway(&fe, spec)
		}
	case *networking.EnvoyFilter:
		if o.Kind == EnvoyFilter {
			validateEnvoyFilter(&fe, o.Namespace, spec)
		}
	case *security.PeerAuthentication:
		if o.Kind == PeerAuthentication {
			validatePeerAuthentication(&fe, spec)
		}
	case *security.AuthorizationPolicy:
		if o.Kind == AuthorizationPolicy {
			validateAuthorizationPolicy(&fe, spec)
		}
	case *security.RequestAuthentication:
		if o.Kind == RequestAuthentication {
			validateRequestAuthentication(&fe, spec)
		}
	case *telemetry.Telemetry:
		if o.Kind == Telemetry {
			validateTelemetry(&fe, spec)
		}
	case *extensionsv1alpha1.RateLimit:
		if o.Kind == RateLimit {
			validateRateLimit(&fe, spec)
		}
	case *corev1.Secret:
		if o.Kind == Secret {
			validateSecret(&fe, spec)
		}
	}
	if o.Spec.ProtoReflect().Descriptor() != NewSpec(o.Kind).ProtoReflect().Descriptor() {
		fe.add("spec", "spec is %T, not a %s", o.Spec, o.Kind)
	}
	validateDryRunAnnotation(&fe, o)
	return fe.join(o)
}

// validateDuration checks that d is at least 1ms and has millisecond precision, as Istio requires
// of timeouts and intervals.
func validateDuration(fe *fieldErrs, path string, d *durationpb.Duration) {
	if d == nil {
		return
	}
	if err := d.CheckValid(); err != nil {
		fe.add(path, "invalid duration: %v", err)
		return
	}
	dur := d.AsDuration()
	if dur < time.Millisecond {
		fe.add(path, "duration %s must be at least 1ms", dur)
		return
	}
	if dur%time.Millisecond != 0 {
		fe.add(path, "duration %s: only millisecond precision is supported", dur)
	}
}

// validateDurationOrZero is validateDuration, but also accepts 0 (which disables the feature, as
// for a route timeout of "0s").
func validateDurationOrZero(fe *fieldErrs, path string, d *durationpb.Duration) {
	if d == nil || (d.Seconds == 0 && d.Nanos == 0) {
		return
	}
	validateDuration(fe, path, d)
}

// Regex limits. Envoy compiles regexes with RE2 and rejects programs larger than its
// re2.max_program_size.error_level runtime value, which Istio's bootstrap sets to 32768; Go's
// regexp/syntax compiles to a comparable instruction count. Patterns are also limited in length.
const (
	MaxRegexProgramSize = 32768
	MaxRegexLength      = 10 << 10
)

// validateRegex checks that re is a valid RE2 expression of bounded size.
func validateRegex(fe *fieldErrs, path, re string) {
	if len(re) > MaxRegexLength {
		fe.add(path, "regex is %d bytes, more than the limit of %d", len(re), MaxRegexLength)
		return
	}
	if msg := regexErr(re); msg != "" {
		fe.add(path, "%s", msg)
	}
}

// regexErr returns why re is not an acceptable RE2 expression, or "".
func regexErr(re string) string {
	parsed, err := syntax.Parse(re, syntax.Perl)
	if err != nil {
		return fmt.Sprintf("invalid regex %s: %v", quoteShort(re), err)
	}
	prog, err := syntax.Compile(parsed.Simplify())
	if err != nil {
		return fmt.Sprintf("invalid regex %s: %v", quoteShort(re), err)
	}
	if n := len(prog.Inst); n > MaxRegexProgramSize {
		return fmt.Sprintf("regex %s is too large (program size %d, limit %d)", quoteShort(re), n, MaxRegexProgramSize)
	}
	return ""
}

// validateStringMatch checks a StringMatch: one match type set; a regex must compile.
func validateStringMatch(fe *fieldErrs, path string, m *networking.StringMatch) {
	if m == nil {
		return
	}
	switch t := m.MatchType.(type) {
	case nil:
		fe.add(path, "one of exact, prefix or regex must be set")
	case *networking.StringMatch_Regex:
		if t.Regex == "" {
			fe.add(path+".regex", "regex must not be empty")
			return
		}
		validateRegex(fe, path+".regex", t.Regex)
	}
}

// validatePercent checks a Percent in [0, 100].
func validatePercent(fe *fieldErrs, path string, p *networking.Percent) {
	if p == nil {
		return
	}
	if p.Value < 0 || p.Value > 100 || p.Value != p.Value {
		fe.add(path+".value", "percentage %v must be in 0-100", p.Value)
	}
}

// validateWorkloadSelector checks a workloadSelector's labels: at least one, all valid.
func validateWorkloadSelector(fe *fieldErrs, path string, labels map[string]string) {
	if len(labels) == 0 {
		fe.add(path+".labels", "a workloadSelector needs at least one label")
		return
	}
	for k, v := range labels {
		if k == "" {
			fe.add(path+".labels", "empty label key")
		}
		if strings.Contains(v, "*") {
			fe.add(path+".labels["+quoteShort(k)+"]", "wildcards are not supported in label values")
		}
	}
	validateLabels(fe, path+".labels", labels)
}

// validateBind checks a listener bind address: an IP or a unix:// path.
func validateBind(fe *fieldErrs, path, bind string) {
	if bind == "" {
		return
	}
	if strings.HasPrefix(bind, "unix://") {
		if len(bind) == len("unix://") {
			fe.add(path, "unix socket path must not be empty")
		}
		return
	}
	if !isIP(bind) {
		fe.add(path, "bind %s must be an IP address or a unix:// path", quoteShort(bind))
	}
}

// validateGatewayRef checks a gateway reference in a VirtualService: "mesh", "name",
// "namespace/name", or a gateway's FQDN.
func validateGatewayRef(fe *fieldErrs, path, gw string) {
	if gw == "mesh" {
		return
	}
	ns, name, found := strings.Cut(gw, "/")
	if found {
		if !isDNS1123Label(ns) {
			fe.add(path, "invalid gateway %s: namespace %s", quoteShort(gw), dns1123LabelMsg)
		}
		if !isDNS1123Subdomain(name) {
			fe.add(path, "invalid gateway %s: name %s", quoteShort(gw), dns1123SubdomainMsg)
		}
		return
	}
	if msg := fqdnErr(gw); msg != "" {
		fe.add(path, "invalid gateway %s: %s", quoteShort(gw), msg)
	}
}
